"""One machine-readable results file per run: identity keys, final metrics, time, versions."""

from __future__ import annotations

import json
import math
import numbers
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.core.store import (
    LATE_DEFAULTS,
    atomic_write_text,
    config_hash,
    without_late_defaults,
)

RESULTS_FILE = "results.json"
# top-level keys that do not change what a run computes
RUN_LOCAL_KEYS = ("paths", "hydra", "ckpt_path", "print_config", "resume", "tags")
SCHEMA_VERSION = 1
_PACKAGES = (
    "transferlab",
    "torch",
    "torchvision",
    "lightning",
    "hydra-core",
    "torchmetrics",
    "timm",
    "scikit-learn",
)


DEBUG_STATUS = "debug"
# a run whose trainer never took an optimizer step (its head is as initialised)
UNTRAINED_STATUS = "untrained"
# how a run without a seed (``seed=null``) is named in its identity, so that unseeded repeats
# are told apart from seeded ones and never pass for one seed's result
UNSEEDED = "none"
UNSEEDED_NOTE = (
    "seed=null: not seeded (initialisation and data order differ on every run; splits use "
    "seed 0); identity seed 'none'"
)
_LIMIT_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches")


def is_debug_trainer(trainer: Mapping[str, Any]) -> bool:
    """Whether trainer settings make a run a debugging run: ``fast_dev_run``,
    ``overfit_batches``, or a ``limit_*_batches`` below everything (a fraction under 1.0, or
    an int, which Lightning reads as a batch count). Such runs are recorded with
    ``"status": "debug"`` and left out of report tables."""
    if trainer.get("fast_dev_run") or trainer.get("overfit_batches"):
        return True
    for key in _LIMIT_KEYS:
        value = trainer.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, float) and value >= 1.0:
            continue
        return True
    return False


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_identity(cfg: Mapping[str, Any], source_info: Mapping[str, Any]) -> dict[str, Any]:
    """The config keys that say which configuration a run is (what a report groups by)."""
    data, strategy, model = cfg["data"], cfg["strategy"], cfg["model"]
    identity = {
        "strategy": strategy["name"],
        "mode": strategy.get("mode"),
        "method": strategy.get("method"),
        "transfer_stages": strategy.get("transfer_stages"),
        "model": model["name"] if model["name"] != "timm" else f"timm/{model.get('model_name')}",
        "source": source_info.get("source"),
        "source_key": source_info.get("source_key"),
        "dataset": data["dataset"],
        "classes": data.get("classes"),
        "labels_per_class": data.get("labels_per_class"),
        "label_fraction": data.get("label_fraction"),
        "seed": UNSEEDED if cfg.get("seed") is None else cfg.get("seed"),
        "tags": list(cfg.get("tags") or []),
    }
    if source_info.get("shift") is not None:  # the target domain's shift
        identity["shift"] = source_info["shift"]
    return identity


def finite_json(value: Any, where: str = "", found: list[str] | None = None) -> Any:
    """``value`` with every NaN or infinite float replaced by None (strict JSON has no NaN or
    Infinity); the dotted paths of the replaced values are appended to ``found``."""
    if isinstance(value, Mapping):
        return {
            k: finite_json(v, f"{where}.{k}" if where else str(k), found) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [finite_json(v, f"{where}[{i}]", found) for i, v in enumerate(value)]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)):
            if found is not None:
                found.append(where)
            return None
        return float(value)
    return value


def write_results(output_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``results.json`` atomically (temporary file + rename) and return its path.

    The file is strict JSON: a NaN or infinite value (a metric, a config value) is written as
    null and its key listed in ``"non_finite"``."""
    path = Path(output_dir) / RESULTS_FILE
    found: list[str] = []
    payload = finite_json({"schema": SCHEMA_VERSION, **record}, found=found)
    if found:
        payload["non_finite"] = sorted(set(found) | set(payload.get("non_finite") or []))
    payload["versions"] = package_versions()
    atomic_write_text(path, json.dumps(payload, indent=2, default=str, allow_nan=False))
    return path


def _no_constant(name: str) -> None:
    """Older results files may hold NaN/Infinity (not JSON): read as null, like new ones."""
    return None


def read_results(path: str | Path) -> dict[str, Any]:
    """Load one results file (a NaN or Infinity of an older file reads as None)."""
    return json.loads(Path(path).read_text(), parse_constant=_no_constant)


def flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as dotted leaves (``{"trainer.max_epochs": 3, ...}``; lists are leaves), with
    NaN/infinity as None (as results files store them) and without :data:`RUN_LOCAL_KEYS`."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if not prefix and key in RUN_LOCAL_KEYS:
            continue
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, name))
        else:
            flat[name] = finite_json(value)
    return flat


_MISSING = "<absent>"


def path_keys(cfg: DictConfig | Mapping[str, Any]) -> frozenset[str]:
    """The dotted keys whose values are paths of the run (``${paths.*}`` or ``${hydra:...}``
    interpolations, e.g. ``source.cache_dir``): like :data:`RUN_LOCAL_KEYS`, they do not
    change what a run computes, and the run hash sees them unresolved."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    keys = set()
    for key, value in flat_config(cfg).items():
        if isinstance(value, str) and ("${paths." in value or "${hydra:" in value):
            keys.add(key)
    return frozenset(keys)


def config_differences(
    stored: Mapping[str, Any], current: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two resolved configs (run-local keys and
    ``ignore`` left out): ``(key, stored value, current value)``, sorted by key."""
    a, b = flat_config(stored), flat_config(current)
    return [
        (key, a.get(key, _MISSING), b.get(key, _MISSING))
        for key in sorted((set(a) | set(b)) - ignore)
        if a.get(key, _MISSING) != b.get(key, _MISSING)
    ]


def describe_differences(differences: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    """``key=stored (this run: current)`` for the first ``limit`` differences, one line."""
    shown = [f"{k}={old!r} (this run: {new!r})" for k, old, new in differences[:limit]]
    more = len(differences) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def run_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The identity of a run's configuration (same hash = same computation).

    Interpolations are hashed unresolved, so paths that embed the run directory
    (``${paths.output_dir}/checkpoints``) are the same for every run of a sweep. ``ckpt_path``
    is a training run's resume point (run-local), but what an evaluation (``task_name: eval``)
    measures, so it is part of an evaluation's hash.
    """
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    payload = {k: v for k, v in cfg.items() if k not in RUN_LOCAL_KEYS}
    if cfg.get("task_name") == "eval":  # an evaluation is of its checkpoint: part of its identity
        payload["ckpt_path"] = cfg.get("ckpt_path")
    for section in LATE_DEFAULTS:
        if isinstance(payload.get(section), Mapping):
            payload[section] = without_late_defaults(section, payload[section])
    return config_hash(payload)
