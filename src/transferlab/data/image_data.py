"""The in-memory form every data set loader returns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ImageData:
    """A data set as uint8 image tensors (N x C x H x W) with int64 labels and class names."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    name: str

    @property
    def channels(self) -> int:
        """Number of image channels (1 or 3)."""
        return int(self.train_images.shape[1])

    @property
    def image_hw(self) -> tuple[int, int]:
        """Height and width of the stored images."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])


def data_cache_dir() -> Path:
    """Where downloaded data sets go: ``$XDG_CACHE_HOME/transferlab/data`` (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "transferlab" / "data"


def is_offline() -> bool:
    """True when the user said there is no network (``TRANSFERLAB_OFFLINE``)."""
    return os.environ.get("TRANSFERLAB_OFFLINE", "0").strip().lower() not in ("", "0", "false")
