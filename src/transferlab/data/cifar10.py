"""CIFAR-10 through torchvision (needs internet once, or an existing cifar-10-batches-py)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from transferlab.core.errors import DataError
from transferlab.data.image_data import ImageData, data_cache_dir, is_offline

BATCHES_DIR = "cifar-10-batches-py"
OFFLINE_HINT = (
    "CIFAR-10 needs internet once (data.download=true), or data.root=<dir> holding "
    f"an existing {BATCHES_DIR}; offline data sets: data=digits or data=fashion_mnist"
)


def _root_dir(root: str | os.PathLike[str] | None) -> Path:
    path = Path(root).expanduser() if root is not None else data_cache_dir()
    return path.parent if path.name == BATCHES_DIR else path  # accept the batches folder too


@functools.lru_cache(maxsize=2)
def _read(root: str, download: bool) -> tuple[torch.Tensor, ...]:
    from torchvision.datasets import CIFAR10

    arrays = []
    for train in (True, False):
        try:
            ds = CIFAR10(root=root, train=train, download=download)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError, ...
            raise DataError(
                f"CIFAR-10 is not in {root} and could not be loaded "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                f"); {OFFLINE_HINT}"
            ) from None
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        arrays += [images, torch.as_tensor(ds.targets, dtype=torch.int64)]
    return (*arrays, ds.classes)


def load_cifar10(root: str | os.PathLike[str] | None = None, download: bool = True) -> ImageData:
    """CIFAR-10: 50,000 train / 10,000 test images, 3 x 32 x 32, ten classes."""
    path = _root_dir(root)
    have_files = (path / BATCHES_DIR).is_dir()
    if download and is_offline() and not have_files:
        raise DataError(f"CIFAR-10 is not in {path} and TRANSFERLAB_OFFLINE is set; {OFFLINE_HINT}")
    train_x, train_y, test_x, test_y, names = _read(str(path), bool(download and not have_files))
    return ImageData(
        train_x.clone(), train_y.clone(), test_x.clone(), test_y.clone(), list(names), "cifar10"
    )
