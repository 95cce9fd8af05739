"""The frozen-feature cache (docs/frozen_features.md): in the epochs where every backbone stage
is frozen (all of a linear probe; the probe phase of ``lp_ft``; the first epochs of
``gradual``), the head trains on the backbone's pooled features, computed once per (weights,
split, preprocessing) and cached on disk (tasks/feature_cache.py), instead of running the
frozen backbone over every batch. Same module, optimizer, schedule, batches and checkpoints as
on images: only where the head's inputs come from changes.

``strategy.feature_cache``: ``auto`` (default) uses the cache when the run allows it and the
data is not augmented; ``true`` also with ``data.augment`` (the epochs fed features are then
not augmented) and fails with one line when the run cannot use it; ``false`` never.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.core.results import is_debug_trainer
from transferlab.data.datamodule import ImageClassificationDataModule
from transferlab.data.switched_inputs import SPLITS, SwitchedInputsDataModule
from transferlab.models.features import pooled_features
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.gan_features import GanFeatureModule
from transferlab.modules.perf import wants_compiled_features
from transferlab.modules.regularizers import check_regularizer
from transferlab.tasks.distributed import is_distributed
from transferlab.tasks.feature_cache import feature_entry, feature_identity, load_or_compute

log = logging.getLogger(__name__)

# the epochs searched for the end of the frozen phase when the run sets no max_epochs
LATE_EPOCH = 1 << 30
# the hooks of a classifier module that see images or the data module: a module overriding one
# does more than head(backbone(images)), so its head cannot be trained on cached features
# regularisers that run the backbone on the batch's images (the others read weights or the
# pooled features, which cached epochs have)
IMAGE_REGULARIZERS = ("delta",)
IMAGE_HOOKS = (
    "features",
    "forward",
    "training_step",
    "validation_step",
    "test_step",
    "on_fit_start",
    "on_train_epoch_start",
)


def feature_cache_setting(strategy_cfg: Mapping[str, Any]) -> str | bool:
    """``strategy.feature_cache``: ``auto``, true or false (absent or null: ``auto``); one
    ConfigError line otherwise."""
    value = strategy_cfg.get("feature_cache", "auto")
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f"strategy.feature_cache={value!r} is invalid; use auto (the cache where the backbone "
        "is frozen and the data not augmented), true (also with data.augment) or false"
    )


def all_frozen(module: ClassifierModule, epoch: int) -> bool:
    """Whether every backbone stage is frozen during ``epoch``."""
    return module.frozen_stages_at(epoch) >= len(module.backbone.stages())


def frozen_epochs(module: ClassifierModule, max_epochs: int | None) -> int | None:
    """How many leading epochs train with the whole backbone frozen: None when every epoch of
    the run does, else a count. Schedules only ever unfreeze, so the first unfrozen epoch is
    found by bisection."""
    limit = max_epochs if max_epochs is not None and max_epochs >= 0 else LATE_EPOCH
    if all_frozen(module, limit - 1):
        return None
    low, high = 0, limit - 1  # the first unfrozen epoch is in [low, high]
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if all_frozen(module, middle) else (low, middle)
    return low


def image_hook(module: ClassifierModule) -> str | None:
    """The first hook in :data:`IMAGE_HOOKS` the module's class overrides (None: it is
    head(backbone(images)) throughout). ``strategy=gan features=pooled`` is such a module."""
    for hook in IMAGE_HOOKS:
        if getattr(type(module), hook) is getattr(ClassifierModule, hook):
            continue
        if isinstance(module, GanFeatureModule) and hook == "features":
            if module.feature_kind == "pooled":
                continue
        return hook
    return None


def why_not_cached(
    plain: Mapping[str, Any],
    trainer: L.Trainer,
    module: ClassifierModule,
    datamodule: ImageClassificationDataModule,
    setting: str | bool,
) -> str | None:
    """Why this run's head cannot train on cached features (None: it can)."""
    name = plain["strategy"]["name"]
    hook = image_hook(module)
    if hook is not None:
        return f"strategy={name} reads images in {type(module).__name__}.{hook}"
    regularizer, _ = check_regularizer(plain["strategy"].get("regularizer"))
    if regularizer in IMAGE_REGULARIZERS:
        return f"strategy.regularizer={regularizer} compares feature maps of the images"
    if frozen_epochs(module, trainer.max_epochs) == 0:
        mode = f" mode={plain['strategy']['mode']}" if "mode" in plain["strategy"] else ""
        return f"strategy={name}{mode} trains the backbone from the first epoch"
    if is_distributed(trainer):
        return "the run is distributed (the cache serves one process)"
    if setting == "auto" and is_debug_trainer(plain.get("trainer") or {}):
        return "a debug run reads part of the data (the cache would featurise all of it)"
    if setting == "auto" and datamodule.augment is not None:
        return (
            "data.augment is set (cached features come from un-augmented images; "
            "strategy.feature_cache=true uses them anyway)"
        )
    return None


class FeaturePhases:
    """Whether the trainer's current stage reads cached features: the training and validation
    of frozen epochs (the first ``frozen``; None: all), and testing when the backbone is frozen
    throughout (the tested checkpoint then holds the backbone the features came from)."""

    def __init__(self, frozen: int | None) -> None:
        self.frozen = frozen

    def __call__(self, trainer: L.Trainer) -> bool:
        if trainer.testing or trainer.predicting:
            return self.frozen is None
        return self.frozen is None or trainer.current_epoch < self.frozen


def describe(phases: FeaturePhases, max_epochs: int | None) -> str:
    """Which epochs and splits read cached features, in words."""
    if phases.frozen is None:
        return "every epoch (train and validation) and the test"
    total = max_epochs if max_epochs is not None and max_epochs >= 0 else "?"
    return f"epochs 0-{phases.frozen - 1} of {total} (train and validation); images afterwards"


def compute_all(
    backbone: nn.Module,
    datamodule: ImageClassificationDataModule,
    trainer: L.Trainer,
    splits: Sequence[str] = SPLITS,
    compile: bool = False,
) -> dict[str, Any]:
    """The pooled features of the ``splits`` images (un-augmented, backbone in eval mode, on
    the trainer's device and in its precision; ``compile``: through torch.compile)."""
    return {
        split: pooled_features(
            backbone,
            getattr(datamodule, f"{split}_set").pixels,
            batch_size=int(datamodule.eval_batch_size),
            prepare=getattr(datamodule, f"{split}_set").prepare,
            device=trainer.strategy.root_device,
            context=trainer.precision_plugin.forward_context,
            compile=compile,
        )
        for split in splits
    }


def compile_features(
    perf_cfg: Mapping[str, Any] | None,
    datamodule: ImageClassificationDataModule,
    splits: Sequence[str] = SPLITS,
) -> bool:
    """Whether ``perf.compile_features`` compiles the backbone to featurise ``splits``."""
    n_images = sum(len(getattr(datamodule, f"{split}_set").pixels) for split in splits)
    return wants_compiled_features((perf_cfg or {}).get("compile_features", "auto"), n_images)


def use_feature_cache(
    plain: Mapping[str, Any],
    trainer: L.Trainer,
    module: ClassifierModule,
    datamodule: ImageClassificationDataModule,
    input_spec: Mapping[str, Any],
) -> tuple[L.LightningDataModule, dict[str, Any]]:
    """The data module to fit and test ``module`` with: ``datamodule`` itself, or one serving
    cached features in the frozen epochs; and what the results record of it."""
    setting = feature_cache_setting(plain["strategy"])
    if setting is False:
        return datamodule, {"used": False, "reason": "strategy.feature_cache=false"}
    reason = why_not_cached(plain, trainer, module, datamodule, setting)
    if reason is not None:
        if setting is True:
            raise ConfigError(f"strategy.feature_cache=true cannot be used: {reason}")
        log.info("frozen-feature cache not used: %s", reason)
        return datamodule, {"used": False, "reason": reason}
    started = time.perf_counter()
    identity = feature_identity(
        module.backbone,
        plain["model"],
        plain["data"],
        datamodule,
        input_spec,
        str(trainer.precision),
    )
    compiled = compile_features(plain.get("perf"), datamodule)
    if compiled:  # equal to eager features up to float32 rounding: an entry of its own
        identity["compiled"] = True
    entry = feature_entry(Path(plain["paths"]["cache_dir"]), module.backbone.name, identity)
    features, how = load_or_compute(
        entry, identity, lambda: compute_all(module.backbone, datamodule, trainer, compile=compiled)
    )
    seconds = time.perf_counter() - started
    phases = FeaturePhases(frozen_epochs(module, trainer.max_epochs))
    augment = "none configured" if datamodule.augment is None else "not applied to these epochs"
    if datamodule.augment is not None:
        log.warning(
            "strategy.feature_cache=true: data.augment is not applied where features are read"
        )
    log.info(
        "frozen-feature cache: the head trains on the frozen backbone's pooled features in %s; "
        "data augmentation is off there (features of un-augmented images, backbone in eval "
        "mode). Entry %s %s in %.1f s",
        describe(phases, trainer.max_epochs),
        entry,
        how,
        seconds,
    )
    info = {
        "used": True,
        "entry": how,
        "path": str(entry),
        "features_s": round(seconds, 3),
        "compiled": compiled,
        "num_features": int(features["train"].shape[1]),
        "images": {split: len(features[split]) for split in SPLITS},
        "feature_epochs": describe(phases, trainer.max_epochs),
        "augmentation": f"off where features are read ({augment})",
    }
    return SwitchedInputsDataModule(datamodule, features, phases), info
