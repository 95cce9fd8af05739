"""The two domains of an adaptation run, built from one data config and one shift.

The source domain is the data set's clean images, the target domain the same classes under an
offline :class:`~transferlab.data.shift.DomainShift` (normalised with the clean statistics).
The labelled training split is divided, per class, into two disjoint parts: the source part
(clean, labelled) and the target part (shifted; its labels are handed only to the oracle), so
no image is seen in both domains. Validation and test splits exist in both domains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from transferlab.core.errors import ConfigError, DataError
from transferlab.core.specs import InputRequirement, InputSpec
from transferlab.data.batching import ImageBatchDataset, keep_batch
from transferlab.data.target import target_datamodule


class UnlabeledImages(Dataset):
    """Images only: what the label-free methods get from the target domain."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: Sequence[int]) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.int64)]


@dataclass
class Domains:
    """Source and target splits of one run, with what the model must match."""

    source_train: ImageBatchDataset
    source_val: ImageBatchDataset
    source_test: ImageBatchDataset
    target_train: ImageBatchDataset
    target_val: ImageBatchDataset
    target_test: ImageBatchDataset
    class_names: list[str]
    input_spec: InputSpec

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def target_unlabeled(self) -> UnlabeledImages:
        """The target training images without their labels."""
        return UnlabeledImages(self.target_train.images)


def disjoint_parts(
    labels: torch.Tensor, target_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices ``(source, target)``: per class, a seeded ``target_fraction`` of the rows go
    to the target part and the rest to the source part."""
    if not 0.0 < float(target_fraction) < 1.0:
        raise ConfigError(
            f"strategy.target_fraction={target_fraction!r} is invalid; use a number in (0, 1)"
        )
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    source, target = [], []
    for label in torch.unique(labels):
        rows = torch.nonzero(labels == label).flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        cut = int(round(float(target_fraction) * len(rows)))
        if cut == 0 or cut == len(rows):
            raise DataError(
                f"class {int(label)} has {len(rows)} labelled training image(s): too few to give "
                "both domains one; raise data.labels_per_class (or use null for all)"
            )
        target.append(rows[:cut])
        source.append(rows[cut:])
    return torch.cat(source).sort().values, torch.cat(target).sort().values


def build_domains(
    data_cfg: Mapping[str, Any],
    shift: Mapping[str, Any],
    seed: int,
    target_fraction: float,
    min_input_size: int,
) -> Domains:
    """Load the data set twice (clean and shifted, same split) and divide the training split."""
    needs = InputRequirement(min_size=min_input_size)
    clean, spec = target_datamodule(dict(data_cfg), seed, needs)
    shifted, _ = target_datamodule({**data_cfg, "shift": dict(shift)}, seed, needs)
    if not torch.equal(clean.train_set.labels, shifted.train_set.labels):
        raise DataError("the clean and shifted data modules disagree on the split")
    if len(clean.val_set) == 0:
        raise ConfigError(
            "strategy=adapt needs a validation split (to pick the source model's epoch); "
            "set data.val_per_class (e.g. 100) or data.val_fraction"
        )
    source_rows, target_rows = disjoint_parts(clean.train_set.labels, target_fraction, seed)
    return Domains(
        source_train=clean.train_set.subset(source_rows),
        source_val=clean.val_set,
        source_test=clean.test_set,
        target_train=shifted.train_set.subset(target_rows),
        target_val=shifted.val_set,
        target_test=shifted.test_set,
        class_names=clean.class_names,
        input_spec=spec,
    )


def make_loader(data: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A loader over in-memory data (whole-batch slicing); shuffled with a seeded generator."""
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        data, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=keep_batch
    )
