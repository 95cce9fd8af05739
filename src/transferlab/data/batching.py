"""Whole-batch indexing of in-memory tensors through a normal DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from transferlab.data.file_images import take


class TensorBatchDataset(Dataset):
    """Images and labels in memory; ``__getitems__`` slices a whole batch in one op."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.images[idx], self.labels[idx]


def keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """collate_fn for :class:`TensorBatchDataset`: the batch is already collated."""
    return batch


class ImageBatchDataset(Dataset):
    """One split as stored pixels (uint8 at native size, or inputs prepared up front) and
    labels. Items and batches come out as model inputs, ``transform`` run on the CPU;
    :meth:`raw` serves the stored pixels for a transform on the device instead."""

    def __init__(
        self,
        pixels: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if len(pixels) != len(labels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        self.pixels = pixels
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model inputs from a batch of stored pixels."""
        return pixels if self.transform is None else self.transform(pixels)

    def inputs(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The prepared inputs of ``rows`` (all when None): float32 at the model's size."""
        return self.prepare(self.pixels if rows is None else self.pixels[rows])

    @property
    def images(self) -> torch.Tensor:
        """Every prepared input of the split (memory: N x the model's input size, float32)."""
        return self.inputs()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prepare(self.pixels[index : index + 1])[0], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.prepare(self.pixels[idx]), self.labels[idx]

    def subset(self, rows: torch.Tensor) -> ImageBatchDataset:
        """The examples at ``rows``, stored and prepared alike."""
        return ImageBatchDataset(take(self.pixels, rows), self.labels[rows], self.transform)

    def raw(self) -> TensorBatchDataset:
        """The stored pixels and labels, batches unprepared."""
        return TensorBatchDataset(self.pixels, self.labels)
