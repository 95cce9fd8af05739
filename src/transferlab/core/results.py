"""One machine-readable results file per run: identity keys, final metrics, time, versions."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.core.store import atomic_write_text, config_hash

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
        "seed": cfg.get("seed"),
        "tags": list(cfg.get("tags") or []),
    }
    if source_info.get("shift") is not None:  # the target domain's shift
        identity["shift"] = source_info["shift"]
    return identity


def write_results(output_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``results.json`` atomically (temporary file + rename) and return its path."""
    path = Path(output_dir) / RESULTS_FILE
    payload = {"schema": SCHEMA_VERSION, **record, "versions": package_versions()}
    atomic_write_text(path, json.dumps(payload, indent=2, default=str))
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """Load one results file."""
    return json.loads(Path(path).read_text())


def run_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """The identity of a run's configuration (same hash = same computation).

    Interpolations are hashed unresolved, so paths that embed the run directory
    (``${paths.output_dir}/checkpoints``) are the same for every run of a sweep.
    """
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    return config_hash({k: v for k, v in cfg.items() if k not in RUN_LOCAL_KEYS})
