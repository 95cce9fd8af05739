"""Speed settings of a run (the ``perf:`` config node): threads, float32 matmul precision,
``channels_last`` and ``torch.compile``. Everything off/null leaves torch's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from transferlab.errors import ConfigError

PERF_KEYS = ("channels_last", "compile", "float32_matmul_precision", "num_threads")
MATMUL_PRECISIONS = ("highest", "high", "medium")


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
    for key in ("channels_last", "compile"):
        if not isinstance(perf.get(key, False), bool):
            raise ConfigError(f"perf.{key}={perf[key]!r} is invalid; use true or false")


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
    if module is not None and perf.get("channels_last"):
        module.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    if module is not None and perf.get("compile"):
        target = getattr(module, "backbone", module)
        target.compile()
        applied.append("compile")
    return applied
