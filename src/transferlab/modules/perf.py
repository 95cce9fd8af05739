"""Speed settings of a run (the ``perf:`` config node): threads, float32 matmul precision,
``channels_last`` and ``torch.compile``. Off/null leaves torch's defaults; ``channels_last:
auto`` (the default) turns it on for the backbones where it was measured to pay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from transferlab.core.errors import ConfigError

PERF_KEYS = ("channels_last", "compile", "float32_matmul_precision", "num_threads")
MATMUL_PRECISIONS = ("highest", "high", "medium")
# backbones (name prefixes) that ``channels_last: auto`` converts. Measured with
# `transferlab bench --preset full` on a 2-core AMD EPYC CPU, float32 training at 28x28
# (docs/benchmarks.md): resnet8 1.38x and resnet18 1.20x the default memory format's
# images/s, small_cnn 0.98x (no gain, so it stays in the default format).
CHANNELS_LAST_AUTO = ("resnet",)


def _check(perf: Mapping[str, Any]) -> None:
    unknown = sorted(set(perf) - set(PERF_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown perf option(s) {', '.join(unknown)}; accepted: {', '.join(PERF_KEYS)}"
        )
    threads = perf.get("num_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise ConfigError(f"perf.num_threads={threads!r} is invalid; use an integer >= 1 or null")
    if threads is not None and threads < 1:
        raise ConfigError(f"perf.num_threads={threads!r} is invalid; use an integer >= 1 or null")
    precision = perf.get("float32_matmul_precision")
    if precision is not None and precision not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"perf.float32_matmul_precision={precision!r} is invalid; use "
            f"{', '.join(MATMUL_PRECISIONS)} or null"
        )
    if not isinstance(perf.get("compile", False), bool):
        raise ConfigError(f"perf.compile={perf['compile']!r} is invalid; use true or false")
    if perf.get("channels_last", False) not in (True, False, "auto"):
        raise ConfigError(
            f"perf.channels_last={perf['channels_last']!r} is invalid; use true, false or auto"
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
    _check(perf)
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
