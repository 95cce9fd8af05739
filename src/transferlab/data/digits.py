"""scikit-learn's 8x8 handwritten digits with a fixed, stratified test split."""

from __future__ import annotations

import functools
import os

import torch

from transferlab.data.image_data import ImageData
from transferlab.data.splits import stratified_holdout

TEST_FRACTION = 1 / 3
SPLIT_SEED = 0  # the test split is the same for every run, whatever the run's seed


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images).mul(255.0 / 16.0).round().clamp(0, 255)
    return images.to(torch.uint8).unsqueeze(1), torch.as_tensor(bunch.target, dtype=torch.int64)


def load_digits_data(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> ImageData:
    """1,797 digits (1 x 8 x 8, 0..255); a fixed third of each class is the test split.

    ``root`` and ``download`` are ignored: the data ships with scikit-learn.
    """
    images, labels = _digits()
    train, test = stratified_holdout(labels, TEST_FRACTION, seed=SPLIT_SEED)
    names = [str(d) for d in range(10)]
    return ImageData(images[train], labels[train], images[test], labels[test], names, "digits")
