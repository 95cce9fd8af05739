"""The target task's data module, with inputs adapted to what the backbone and its source
need (channels, normalisation, a minimum image size), and the resulting input spec."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from transferlab.core.specs import InputRequirement, InputSpec
from transferlab.data.datamodule import ImageClassificationDataModule

log = logging.getLogger(__name__)


def target_datamodule(
    data_cfg: Mapping[str, Any],
    seed: int | None,
    requirement: InputRequirement | None = None,
) -> tuple[ImageClassificationDataModule, InputSpec]:
    """The data module of ``data_cfg`` set up for fitting (split seed ``seed``, 0 if None),
    meeting ``requirement``, and its input spec."""
    requirement = requirement or InputRequirement()
    kwargs = dict(data_cfg)
    if requirement.channels is not None:
        kwargs["channels"] = requirement.channels
    if requirement.normalize is not None:
        kwargs["normalize"] = requirement.normalize
    split_seed = 0 if seed is None else seed
    datamodule = ImageClassificationDataModule(**kwargs, seed=split_seed)
    datamodule.setup("fit")
    height = datamodule.input_shape[1]
    if height < requirement.min_size:
        log.info(
            "resizing inputs from %d to %d px: the backbone needs at least %d",
            height,
            requirement.min_size,
            requirement.min_size,
        )
        kwargs["image_size"] = requirement.min_size
        datamodule = ImageClassificationDataModule(**kwargs, seed=split_seed)
        datamodule.setup("fit")
    channels, height, _ = datamodule.input_shape
    log.info(
        "data: %s, %d classes, %dx%dx%d inputs; labelled train %d, val %d, test %d images",
        datamodule.dataset_name,
        datamodule.num_classes,
        channels,
        height,
        datamodule.input_shape[2],
        datamodule.split_size("train"),
        datamodule.split_size("val"),
        datamodule.split_size("test"),
    )
    return datamodule, InputSpec(int(channels), int(height), kwargs.get("normalize", "data"))


def target_pool(
    data_cfg: Mapping[str, Any],
    seed: int | None,
    requirement: InputRequirement | None = None,
) -> ImageClassificationDataModule:
    """The data module whose training split is the target's unlabelled pool: every training
    image of the selected classes but the validation split (carved first, the same for any
    label budget), the labelled ones included; preprocessed as :func:`target_datamodule`'s.
    Its labels must not be read; its validation and test splits are the target's."""
    unlabelled = {**data_cfg, "labels_per_class": None, "label_fraction": None}
    unlabelled["min_samples_per_epoch"] = None
    datamodule, _ = target_datamodule(unlabelled, seed, requirement)
    return datamodule
