"""Speed settings of a run (the ``perf:`` config node): threads, float32 matmul precision,
``channels_last`` and ``torch.compile``. Off/null leaves torch's defaults; ``channels_last:
auto`` (the default) turns it on for the backbones where it was measured to pay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from transferlab.core.schema import PerfOptions, check_model

# backbones (name prefixes) that ``channels_last: auto`` converts. Measured with
# `transferlab bench --preset full` on a 2-core AMD EPYC CPU, float32 training at 28x28
# (docs/benchmarks.md): resnet8 1.38x and resnet18 1.20x the default memory format's
# images/s, small_cnn 0.98x (no gain, so it stays in the default format). EfficientNet-Lite0
# (`python -m transferlab.bench.backbone_throughput`, quiet machine, 2026-12-01, float32):
# training 1.04x / 1.36x / 1.53x / 1.29x and feature extraction 5.4x / 2.1x / 2.7x / 1.7x at
# 32 / 64 / 96 / 128 px (docs/imagenet.md).
CHANNELS_LAST_AUTO = ("resnet", "efficientnet")


# ``perf.compile_features: auto`` compiles a frozen backbone for feature extraction when at
# least this many images are featurised. EfficientNet-Lite0, 64 px, Fashion-MNIST through the
# stack on a quiet 2-core AMD EPYC (Zen 5), 2026-12-02 (docs/frozen_features.md): 35,000
# images 52.7 s eager, 44.3 s compiled including ~10 s of compiling; 5,600 images 9.0 s
# eager, 16.5 s compiled. Break-even about 19,000 images (more with inductor's cache cold).
COMPILE_FEATURES_MIN_IMAGES = 20_000


def wants_compiled_features(setting: bool | str | None, n_images: int) -> bool:
    """Whether ``perf.compile_features=setting`` compiles the backbone to featurise
    ``n_images`` images: ``auto`` from :data:`COMPILE_FEATURES_MIN_IMAGES` on."""
    if setting == "auto":
        return n_images >= COMPILE_FEATURES_MIN_IMAGES
    return bool(setting)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def emulated_bf16_warning(precision: str, on_cpu: bool) -> str | None:
    """A warning when ``precision`` is bfloat16 on a CPU without bfloat16 instructions
    (AVX512-BF16 or AMX): oneDNN then emulates it, which made a speed-run epoch about 10x
    slower than float32 on an AVX2-only AMD EPYC (docs/benchmarks.md). None otherwise."""
    if not (on_cpu and str(precision).startswith("bf16")):
        return None
    if cpu_has_native_bf16():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"precision={precision} on a CPU without bfloat16 instructions ({capability}; no "
        "AVX512-BF16/AMX): bfloat16 is emulated and runs many times slower than float32; "
        "use trainer=cpu (float32) on this machine"
    )


def wants_channels_last(setting: bool | str | None, module: nn.Module) -> bool:
    """Whether ``perf.channels_last=setting`` converts ``module``: ``auto`` does so when its
    backbone's name starts with one of :data:`CHANNELS_LAST_AUTO`."""
    if setting == "auto":
        name = str(getattr(getattr(module, "backbone", module), "name", ""))
        return name.startswith(CHANNELS_LAST_AUTO)
    return bool(setting)


def apply_perf(perf: Mapping[str, Any] | None, module: nn.Module | None = None) -> list[str]:
    """Apply ``perf`` to the process (threads, matmul precision) and to ``module``
    (``channels_last`` memory format; ``compile`` compiles its ``backbone``, or the module,
    in place so checkpoint keys do not change). Returns what was applied."""
    perf = dict(perf or {})
    check_model(PerfOptions, "perf", perf)
    applied = []
    if perf.get("num_threads") is not None:
        torch.set_num_threads(int(perf["num_threads"]))
        applied.append(f"num_threads={perf['num_threads']}")
    if perf.get("float32_matmul_precision") is not None:
        torch.set_float32_matmul_precision(perf["float32_matmul_precision"])
        applied.append(f"float32_matmul_precision={perf['float32_matmul_precision']}")
    if module is not None and wants_channels_last(perf.get("channels_last"), module):
        module.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if module is not None and perf.get("compile"):
        target = getattr(module, "backbone", module)
        target.compile()
        applied.append("compile")
    return applied
