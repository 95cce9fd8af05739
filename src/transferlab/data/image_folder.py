"""The user's own images: ``root/<class>/*.png|jpg|jpeg|bmp``, with a fixed test split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from transferlab.core.errors import ConfigError, DataError
from transferlab.data.image_data import ImageData
from transferlab.data.splits import stratified_holdout

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SPLIT_SEED = 0


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist; set data.root=<dir> with one "
            "sub-folder of images per class"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(
            f"image folder {root} has no class sub-folders; put each class's "
            f"images ({'/'.join(EXTENSIONS)}) in root/<class name>/"
        )
    return folders


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DataError(
            f"class folder {folder} has no images ({'/'.join(EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return files


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}; fix or remove the file") from None


def _to_array(image: Image.Image, gray: bool, size: int | None) -> np.ndarray:
    image = image.convert("L" if gray else "RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if gray else array.transpose(2, 0, 1)


def _all_gray(images: list[Image.Image], paths: list[Path], base: Path) -> bool:
    """True if every image is grayscale; a mix of grayscale and colour files is an error
    (which to convert to is the user's choice)."""
    is_gray = [i.mode in GRAY_MODES for i in images]
    if all(is_gray) or not any(is_gray):
        return all(is_gray)
    example = paths[is_gray.index(True)]
    raise DataError(
        f"images in {base} mix grayscale ({sum(is_gray)}, e.g. {example.name}) and colour "
        f"({len(is_gray) - sum(is_gray)}) files; set data.dataset_kwargs.grayscale=true to "
        "convert all to 1 channel or false to convert all to RGB"
    )


def _check_options(image_size: object, grayscale: object, test_fraction: object) -> None:
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ConfigError(f"image_size={image_size!r} is invalid; use a positive integer or null")
    if grayscale is not None and not isinstance(grayscale, bool):
        raise ConfigError(f"grayscale={grayscale!r} is invalid; use true, false or null (auto)")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0 < test_fraction < 1
    ):
        raise ConfigError(f"test_fraction={test_fraction!r} is invalid; use a number in (0, 1)")


def load_image_folder(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_size: int | None = None,
    grayscale: bool | None = None,
    test_fraction: float = 0.2,
) -> ImageData:
    """Images from ``root/<class>/``; classes sorted by folder name, a fixed stratified
    ``test_fraction`` of each class held out. ``grayscale=None`` keeps 1 channel only if every
    image is grayscale. ``download`` is ignored."""
    _check_options(image_size, grayscale, test_fraction)
    if root is None:
        raise DataError("data=image_folder needs data.root=<dir> with one sub-folder per class")
    base = Path(root).expanduser()
    folders = _class_folders(base)
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = _image_files(folder)
        paths += files
        labels += [label] * len(files)
    images = [_open(p) for p in paths]
    gray = grayscale if grayscale is not None else _all_gray(images, paths, base)
    if image_size is None:
        sizes = {i.size for i in images}
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = sorted(sizes)[:2]
            raise DataError(
                f"images in {base} have {len(sizes)} different sizes (e.g. {w1}x{h1} "
                f"and {w2}x{h2}); set data.image_size=<N> to resize all to N x N"
            )
    stacked = torch.from_numpy(np.stack([_to_array(i, gray, image_size) for i in images]))
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    names = [f.name for f in folders]
    train, test = stratified_holdout(label_tensor, test_fraction, SPLIT_SEED, names)
    return ImageData(
        stacked[train],
        label_tensor[train],
        stacked[test],
        label_tensor[test],
        names,
        "image_folder",
    )
