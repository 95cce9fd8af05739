"""The source model of an adaptation run: a classifier (backbone + head) trained on the clean,
labelled source part, built once per (data, model, split seed, recipe) and cached.

The entry (``<cache_dir>/adapt-source-<key>``) holds ``backbone.safetensors`` and
``source.json`` like every cached source (sources/cache.py), plus ``head.safetensors``, so
source-only evaluation and Tent start from the very classifier that was trained.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file, save_file

from transferlab.core.checkpoint import cpu_state
from transferlab.core.errors import SourceError
from transferlab.core.store import config_hash, file_sha256, identity_model_config
from transferlab.data.domains import Domains, make_loader
from transferlab.models import Backbone, LinearHead
from transferlab.modules import ClassifierModule
from transferlab.sources.basic import NoSource
from transferlab.sources.cache import ENTRY_WEIGHTS, ensure_entry
from transferlab.sources.training import fit_best_and_test, quiet_trainer

log = logging.getLogger(__name__)

HEAD_WEIGHTS = "head.safetensors"
FORMAT_VERSION = 1
# data keys that do not change the trained weights
_DATA_NON_IDENTITY = ("eval_batch_size", "num_workers", "shift")


def source_identity(
    data_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    recipe: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything that decides the source model's weights."""
    return {
        "format": FORMAT_VERSION,
        "kind": "adapt_source",
        "data": {k: v for k, v in data_cfg.items() if k not in _DATA_NON_IDENTITY},
        "model": identity_model_config(model_cfg),
        "input": dict(input_spec),
        "recipe": dict(recipe),
    }


def _train(
    entry: Path, weights_path: Path, domains: Domains, model_cfg: Mapping[str, Any], recipe: Any
) -> dict[str, Any]:
    started = time.time()
    L.seed_everything(int(recipe["seed"]), workers=True, verbose=False)
    backbone = NoSource({}).build(model_cfg, domains.input_spec)
    module = ClassifierModule(
        backbone,
        domains.num_classes,
        optimizer=recipe.get("optimizer"),
        scheduler=recipe.get("scheduler"),
        class_names=domains.class_names,
    )
    batch = int(recipe["batch_size"])
    train = make_loader(domains.source_train, batch, shuffle=True, seed=int(recipe["seed"]))
    val = make_loader(domains.source_val, 1024, shuffle=False)
    test = make_loader(domains.source_test, 1024, shuffle=False)

    def make_trainer(callbacks: Sequence[Callback]) -> L.Trainer:
        return quiet_trainer(
            accelerator=recipe.get("accelerator", "cpu"),
            callbacks=callbacks,
            max_epochs=int(recipe["epochs"]),
            limit_train_batches=recipe.get("limit_train_batches") or 1.0,
            fast_dev_run=bool(recipe.get("fast_dev_run")),
        )

    scores = fit_best_and_test(module, make_trainer, [train, val], test)
    save_file(cpu_state(module.backbone), str(weights_path))
    save_file(cpu_state(module.head), str(entry / HEAD_WEIGHTS))
    return {
        "kind": "adapt_source",
        **scores,
        "head_sha256": file_sha256(entry / HEAD_WEIGHTS),
        "build_seconds": round(time.time() - started, 2),
    }


def ensure_source_model(
    domains: Domains,
    data_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    recipe: Mapping[str, Any],
    cache_dir: str | Path,
) -> tuple[Path, bool]:
    """The cache entry of the source classifier, trained first if missing."""
    identity = source_identity(data_cfg, model_cfg, domains.input_spec, recipe)
    return ensure_entry(
        cache_dir,
        "adapt-source",
        config_hash(identity),
        identity,
        lambda entry, weights: _train(entry, weights, domains, model_cfg, recipe),
    )


def load_source_model(
    entry: Path, meta: Mapping[str, Any], backbone: Backbone, head: LinearHead
) -> None:
    """Load a cached source model's weights into ``backbone`` and ``head`` (in place)."""
    head_path = entry / HEAD_WEIGHTS
    if not head_path.is_file() or file_sha256(head_path) != meta.get("head_sha256"):
        raise SourceError(
            f"source model {entry} has a missing or corrupt {HEAD_WEIGHTS}; delete the "
            "directory and run again to rebuild it"
        )
    backbone.load_state_dict(load_file(str(entry / ENTRY_WEIGHTS)))
    head.load_state_dict(load_file(str(head_path)))
