"""Fashion-MNIST from the four IDX files (Debian ``dataset-fashion-mnist``, a folder, or a
download through torchvision)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from transferlab.core.errors import DataError
from transferlab.data.idx import read_idx
from transferlab.data.image_data import ImageData, data_cache_dir, is_offline

ENV_VAR = "TRANSFERLAB_FASHION_MNIST"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist`, point data.root=<dir> "
    f"(or {ENV_VAR}=<dir>) at a folder with the four IDX files (.gz or plain), "
    "or allow the download (data.download=true, internet needed once)"
)


def _find_files(directory: Path) -> list[Path | None]:
    """Each IDX file in ``directory`` (or torchvision's ``FashionMNIST/raw`` under it)."""
    found: list[Path | None] = []
    for stem in FILES:
        hits = [
            d / name
            for d in (directory, directory / "FashionMNIST" / "raw")
            for name in (f"{stem}.gz", stem)
            if (d / name).is_file()
        ]
        found.append(hits[0] if hits else None)
    return found


def _complete(directory: Path) -> list[Path] | None:
    found = _find_files(directory)
    if all(found):
        return [p for p in found if p is not None]
    present = [p for p in found if p is not None]
    if present:
        missing = ", ".join(s for s, p in zip(FILES, found) if p is None)
        raise DataError(
            f"Fashion-MNIST in {directory} is incomplete: {missing} missing; {HOW_TO_GET}"
        )
    return None


def _download(target: Path) -> list[Path]:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(root=str(target), train=True, download=True)
    except Exception as err:  # torchvision raises many kinds on a failed download
        raise DataError(
            f"Fashion-MNIST not found and its download to {target} failed "
            f"({type(err).__name__}: {err}); {HOW_TO_GET}"
        ) from None
    files = _complete(target)
    if files is None:
        raise DataError(f"Fashion-MNIST download to {target} left no IDX files; {HOW_TO_GET}")
    return files


def locate(root: str | os.PathLike[str] | None, download: bool) -> list[Path]:
    """The four IDX files: from ``root``, else ``$TRANSFERLAB_FASHION_MNIST``, else the Debian
    folder or an earlier download; downloaded when allowed and nothing is found."""
    if root is not None:
        places = [Path(root).expanduser()]
    else:
        env = os.environ.get(ENV_VAR)
        places = [Path(env).expanduser() if env else DEFAULT_DIR, data_cache_dir()]
    for place in places:
        files = _complete(place)
        if files is not None:
            return files
    looked = " or ".join(str(p) for p in places)
    if not download or is_offline():
        why = "downloads are off" if not download else "TRANSFERLAB_OFFLINE is set"
        raise DataError(f"Fashion-MNIST not found in {looked} and {why}; {HOW_TO_GET}")
    return _download(places[0] if root is not None else data_cache_dir())


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _parse(stamps: tuple[tuple[str, int, int], ...]) -> tuple[torch.Tensor, ...]:
    paths = [Path(s[0]) for s in stamps]
    arrays = [read_idx(p, ndim=3 if "images" in p.name else 1) for p in paths]
    tensors = [torch.tensor(a) for a in arrays]
    for images, labels, split in (
        (tensors[0], tensors[1], "train"),
        (tensors[2], tensors[3], "test"),
    ):
        if len(images) != len(labels):
            raise DataError(
                f"Fashion-MNIST {split} files disagree: {len(images):,} images but "
                f"{len(labels):,} labels; fetch them again"
            )
        if labels.numel() and int(labels.max()) >= len(CLASS_NAMES):
            raise DataError(
                f"Fashion-MNIST {split} labels go up to {int(labels.max())}, "
                f"expected 0-{len(CLASS_NAMES) - 1}; fetch the files again"
            )
    return (tensors[0].unsqueeze(1), tensors[1].long(), tensors[2].unsqueeze(1), tensors[3].long())


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, download: bool = True
) -> ImageData:
    """Fashion-MNIST: 60,000 train / 10,000 test images, 1 x 28 x 28, ten classes."""
    files = locate(root, download)
    parsed = _parse(tuple(_stamp(p) for p in files))
    train_x, train_y, test_x, test_y = (t.clone() for t in parsed)
    return ImageData(train_x, train_y, test_x, test_y, list(CLASS_NAMES), "fashion_mnist")
