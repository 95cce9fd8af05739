"""A data module's batches with other inputs in some epochs: e.g. a frozen backbone's cached
features in place of its images (tasks/frozen_features.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from transferlab.data.batching import TensorBatchDataset
from transferlab.data.datamodule import ImageClassificationDataModule

SPLITS = ("train", "val", "test")


class SwitchedInputsDataModule(L.LightningDataModule):
    """The batches of ``images`` (its loaders, sampler and seeded shuffling generator: the same
    examples in the same order), whose inputs are rows of ``alternates[split]`` (one per
    example, e.g. pooled features) whenever ``use_alternates(trainer)`` is true, and the
    images otherwise (augmented while training, as ``images`` does).

    Loaders yield row numbers (each split its own range); they become inputs in
    ``on_before_batch_transfer``, in the main process, so loader workers hold no state.
    """

    def __init__(
        self,
        images: ImageClassificationDataModule,
        alternates: Mapping[str, torch.Tensor],
        use_alternates: Callable[[L.Trainer], bool],
    ) -> None:
        super().__init__()
        self.images = images
        self.use_alternates = use_alternates
        self._rows: dict[str, TensorBatchDataset] = {}
        self._tables: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # first row, both inputs
        first = 0
        for split in SPLITS:
            data = getattr(images, f"{split}_set")
            if len(alternates[split]) != len(data):
                raise ValueError(
                    f"{len(alternates[split])} alternate inputs for {len(data)} {split} examples"
                )
            self._rows[split] = TensorBatchDataset(
                torch.arange(first, first + len(data)), data.labels
            )
            self._tables.append((first, data.pixels, alternates[split]))
            first += len(data)

    def setup(self, stage: str | None = None) -> None:
        self.images.trainer = self.trainer  # its augmentation runs only while training

    def train_dataloader(self) -> DataLoader:
        return self.images.loader(self._rows["train"], self.images.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader, or ``[]`` when there is no validation split."""
        if len(self._rows["val"]) == 0:
            return []
        return self.images.loader(self._rows["val"], self.images.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.images.loader(self._rows["test"], self.images.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def state_dict(self) -> dict[str, Any]:
        return self.images.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images.load_state_dict(state_dict)

    def inputs(self, rows: torch.Tensor, alternate: bool) -> torch.Tensor:
        """The inputs of ``rows`` (all of one split): alternates or images."""
        for first, images, alternates in reversed(self._tables):
            if len(rows) == 0 or int(rows[0]) >= first:
                return (alternates if alternate else images)[rows - first]
        raise IndexError(f"row {int(rows[0])} is in no split")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        rows, labels = batch
        inputs = self.inputs(rows, self.use_alternates(self.trainer))
        return self.trainer.precision_plugin.convert_input(inputs), labels

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.use_alternates(self.trainer):
            return batch
        return self.images.on_after_batch_transfer(batch, dataloader_idx)
