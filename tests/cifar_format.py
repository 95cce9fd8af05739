"""A small folder in CIFAR-10's own format (torchvision's pickled ``cifar-10-batches-py``),
to run the real CIFAR-10 loader offline. Its pixels are random: for plumbing and memory
checks only, never for a test that claims learning."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
TRAIN_FILES = 5


def _dump(path: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    with path.open("wb") as handle:
        pickle.dump({"data": pixels.reshape(len(pixels), -1), "labels": labels.tolist()}, handle)


def write_cifar_folder(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` with ``train`` and ``test`` random 3x32x32 uint8 images,
    labels cycling through the ten classes; returns ``root`` (what ``data.root`` takes)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    labels = np.arange(train) % len(CLASS_NAMES)
    pixels = rng.integers(0, 256, size=(train, 3, 32, 32), dtype=np.uint8)
    for i, rows in enumerate(np.array_split(np.arange(train), TRAIN_FILES), start=1):
        _dump(base / f"data_batch_{i}", pixels[rows], labels[rows])
    test_pixels = rng.integers(0, 256, size=(test, 3, 32, 32), dtype=np.uint8)
    _dump(base / "test_batch", test_pixels, np.arange(test) % len(CLASS_NAMES))
    with (base / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": CLASS_NAMES}, handle)
    return Path(root)


def accept_unchecked_files(setattr_: Callable[[Any, str, Any], None]) -> None:
    """Let torchvision read files whose MD5s are not CIFAR-10's (``setattr_`` is e.g.
    pytest's ``monkeypatch.setattr``, so the change is undone after the test)."""
    import torchvision.datasets.cifar as cifar

    setattr_(cifar, "check_integrity", lambda *args, **kwargs: True)
    setattr_(cifar.CIFAR10, "_check_integrity", lambda self: True)
