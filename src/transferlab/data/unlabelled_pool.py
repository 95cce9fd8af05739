"""A data module's labelled batches with a batch of unlabelled images beside each training batch
(semi-supervised learning: a few labels plus the unlabelled pool, e.g. FixMatch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from transferlab.data.batching import TensorBatchDataset, keep_batch
from transferlab.data.datamodule import ImageClassificationDataModule

VIEWS = ("weak", "strong")
NO_LABEL = -1  # what the unlabelled images carry in place of a label


class WithUnlabelledPool(L.LightningDataModule):
    """The splits, loaders and augmentation of ``labelled``, whose training batches come with
    ``ratio`` x as many images of ``pool`` (drawn without replacement, a new order every pass):
    ``{"labelled": (images, labels), "unlabelled": {view: images}}``, one labelled batch a step
    as ``labelled`` alone has.

    Views: ``weak`` is a pool batch with the labelled images' augmentation (``data.augment``);
    ``strong`` is another draw of that, then ``strong`` (e.g. :class:`StrongAugment`).
    Validation and test batches are ``labelled``'s.
    """

    def __init__(
        self,
        labelled: ImageClassificationDataModule,
        pool: torch.Tensor,
        ratio: int,
        views: Sequence[str],
        strong: nn.Module | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        unknown = [v for v in views if v not in VIEWS]
        if unknown or ("strong" in views and strong is None):
            raise ValueError(f"views {list(views)}: use {VIEWS}; 'strong' needs a strong module")
        self.labelled = labelled
        self.pool = TensorBatchDataset(pool, torch.full((len(pool),), NO_LABEL))
        self.ratio = int(ratio)
        self.views = tuple(views)
        self.strong = strong
        self._generator = torch.Generator().manual_seed(int(seed) + 1)

    def setup(self, stage: str | None = None) -> None:
        self.labelled.trainer = self.trainer  # its augmentation runs only while training

    def unlabelled_loader(self, batches: int) -> DataLoader:
        """``batches`` batches of ``ratio`` x the labelled batch size from the pool."""
        size = self.ratio * self.labelled.batch_size
        sampler = RandomSampler(self.pool, num_samples=batches * size, generator=self._generator)
        return DataLoader(self.pool, batch_size=size, sampler=sampler, collate_fn=keep_batch)

    def train_dataloader(self) -> CombinedLoader:
        labelled = self.labelled.train_dataloader()
        unlabelled = self.unlabelled_loader(len(labelled))
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="min_size")

    def val_dataloader(self) -> DataLoader | list:
        return self.labelled.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.labelled.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.labelled.predict_dataloader()

    def state_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled.state_dict(), "pool": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.labelled.load_state_dict(state_dict.get("labelled", {}))
        if "pool" in state_dict:
            self._generator.set_state(state_dict["pool"])

    def _weak(self, images: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        labels = torch.full((len(images),), NO_LABEL, device=images.device)
        return self.labelled.on_after_batch_transfer((images, labels), dataloader_idx)[0]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment the labelled images as ``labelled`` does; make the unlabelled views."""
        if not isinstance(batch, dict):  # validation and test
            return self.labelled.on_after_batch_transfer(batch, dataloader_idx)
        images = batch["unlabelled"][0]
        views = {}
        for view in self.views:
            weak = self._weak(images, dataloader_idx)
            views[view] = weak if view == "weak" else self.strong(weak)
        labelled = self.labelled.on_after_batch_transfer(batch["labelled"], dataloader_idx)
        return {"labelled": labelled, "unlabelled": views}
