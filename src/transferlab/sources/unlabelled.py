"""What the sources pretrained on unlabelled images (``autoencoder``, ``ssl``) share: the two
data modes, the cache identity, the pretraining pool and its held-out split.

``data: source`` pretrains on the images of a source data set / class subset; ``data:
target_pool`` on the target's training pool with its labels dropped (the classic low-label
protocol): the target's validation images (carved with the run's seed) and test images are never
used. A fraction of the pool (``holdout_fraction``, seeded by ``source.seed``) is held out: the
source's validation split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader

from transferlab.core.errors import ConfigError
from transferlab.core.store import identity_model_config
from transferlab.data.batching import TensorBatchDataset, keep_batch
from transferlab.sources.base import CachedSource
from transferlab.sources.training import source_datamodule

DATA_MODES = ("source", "target_pool")
NON_IDENTITY_KEYS = ("name", "cache_dir", "accelerator", "allow_overlap")
SOURCE_DATA_KEYS = ("dataset", "root", "download", "dataset_kwargs", "classes")
NO_LABEL = -1  # what a loader carries when the labels are not needed


def data_mode(source_cfg: Mapping[str, Any]) -> str:
    """``source`` or ``target_pool``; a ConfigError for anything else."""
    mode = str(source_cfg.get("data", "source"))
    if mode not in DATA_MODES:
        raise ConfigError(
            f"source.data={mode!r} is invalid; use source (source.dataset/classes) or "
            "target_pool (the target's training images without labels)"
        )
    return mode


def unlabelled_identity(
    source_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
    format_version: int,
    non_identity: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Everything that decides the built weights: keys of the other data mode (and
    ``non_identity``, options that do not change the weights) are left out."""
    mode = data_mode(source_cfg)
    other_mode = ("target",) if mode == "source" else SOURCE_DATA_KEYS
    dropped = (*NON_IDENTITY_KEYS, *other_mode, *non_identity)
    source = {k: v for k, v in source_cfg.items() if k not in dropped}
    return {
        "format": format_version,
        "source": source,
        "model": identity_model_config(model_cfg),
        "input": dict(input_spec),
    }


@dataclass(frozen=True)
class PretrainingPool:
    """The pretraining images (``train``) and the held-out ones (``held``), with their labels
    (read only by evaluations such as a kNN probe, never by pretraining), and ``info``: what
    they are (data mode, data set, classes, counts) for the entry's metadata."""

    train: torch.Tensor
    train_labels: torch.Tensor
    held: torch.Tensor
    held_labels: torch.Tensor
    info: dict[str, Any]


def pretraining_pool(
    source_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> PretrainingPool:
    """The configured data mode's pool, split into pretraining and held-out images."""
    mode = data_mode(source_cfg)
    seed = int(source_cfg.get("seed", 0))
    if mode == "source":
        data = {k: source_cfg[k] for k in SOURCE_DATA_KEYS if k in source_cfg}
        split_seed = seed
    else:  # the target's own split: the same validation images are carved out and skipped
        target = dict(source_cfg.get("target") or {})
        data = {k: target[k] for k in SOURCE_DATA_KEYS if k in target}
        data.update(
            val_per_class=target.get("val_per_class"), val_fraction=target.get("val_fraction")
        )
        split_seed = int(target.get("seed") or 0)
    key = "source.classes" if mode == "source" else "data.classes"
    datamodule = source_datamodule(data, input_spec, split_seed, key=key)
    pool, labels = datamodule.train_set.images, datamodule.train_set.labels
    fraction = float(source_cfg.get("holdout_fraction", 0.1))
    if not 0 < fraction < 1:
        raise ConfigError(f"source.holdout_fraction={fraction} is invalid; use a number in (0, 1)")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    held = max(1, round(fraction * len(pool)))
    if held >= len(pool):
        raise ConfigError(f"the pretraining pool has only {len(pool)} images; it needs >= 2")
    train_idx, held_idx = order[held:].sort().values, order[:held].sort().values
    info = {
        "data": mode,
        "dataset": datamodule.dataset_name,
        "classes_seen": datamodule.split.classes,
        "class_names_seen": datamodule.class_names,
        "images_train": len(pool) - held,
        "images_holdout": held,
    }
    return PretrainingPool(
        pool[train_idx], labels[train_idx], pool[held_idx], labels[held_idx], info
    )


def pretraining_images(
    source_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(training images, held-out images, what they are) for the configured data mode."""
    pool = pretraining_pool(source_cfg, input_spec)
    return pool.train, pool.held, pool.info


def image_loader(
    images: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    labels: torch.Tensor | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """Whole-batch loader of in-memory images (labels: :data:`NO_LABEL` unless given);
    ``drop_last`` only while at least one full batch remains."""
    labels = torch.full((len(images),), NO_LABEL) if labels is None else labels
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        TensorBatchDataset(images, labels),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=keep_batch,
        drop_last=drop_last and len(images) >= batch_size,
    )


class UnlabelledSource(CachedSource):
    """A cached source pretrained on unlabelled images in one of the two data modes; a
    subclass sets ``format_version`` and gives ``train``."""

    format_version: ClassVar[int] = 1
    non_identity: ClassVar[tuple[str, ...]] = ()

    def identity(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        return unlabelled_identity(
            self.cfg, model_cfg, input_spec, self.format_version, self.non_identity
        )

    def check(self, model_cfg: Mapping[str, Any]) -> None:
        data_mode(self.cfg)

    def trained_on(self) -> Mapping[str, Any] | None:
        """The source classes in ``data: source`` mode; None on the target's own pool (its
        unlabelled training images: the intended protocol, not an overlap)."""
        return super().trained_on() if data_mode(self.cfg) == "source" else None
