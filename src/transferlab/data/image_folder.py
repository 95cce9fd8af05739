"""The user's own images: ``root/<class>/*.png|jpg|jpeg|bmp``, with a fixed test split.

Each file is decoded, converted to 8 bits and resized on its own (data/decode.py), so peak
memory is the stored data set plus about one full-size image; with ``stream=true`` only the
paths are held and files are decoded batch by batch (data/file_images.py); see docs/data.md."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from transferlab.core.errors import ConfigError, DataError
from transferlab.data.decode import GRAY_MODES, pixel_limit, read_header
from transferlab.data.file_images import FileImages, take
from transferlab.data.image_data import ImageData
from transferlab.data.splits import stratified_holdout

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
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


def _has_images(folder: Path) -> Path | None:
    """The first image file under ``folder`` at any depth (hidden entries skipped), if any."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(EXTENSIONS) and not name.startswith("."):
                return Path(dirpath) / name
    return None


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    if recursive:
        candidates = [
            p
            for p in folder.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ]
    else:
        candidates = list(folder.iterdir())
        for sub in sorted(p for p in candidates if p.is_dir() and not p.name.startswith(".")):
            example = _has_images(sub)
            if example is not None:
                raise DataError(
                    f"class folder {folder} has a sub-folder with images "
                    f"({example.relative_to(folder)}); only root/<class>/<image> is read: move "
                    "them up, point data.root at the right level, or set "
                    "+data.dataset_kwargs.recursive=true to count them in the class"
                )
    files = sorted(
        p
        for p in candidates
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DataError(
            f"class folder {folder} has no images ({'/'.join(EXTENSIONS)}); "
            "add images or remove the folder"
        )
    return files


def _all_gray(modes: list[str], paths: list[Path], base: Path) -> bool:
    """True if every image is grayscale; a mix of grayscale and colour files is an error
    (which to convert to is the user's choice)."""
    is_gray = [m in GRAY_MODES for m in modes]
    if all(is_gray) or not any(is_gray):
        return all(is_gray)
    example = paths[is_gray.index(True)]
    raise DataError(
        f"images in {base} mix grayscale ({sum(is_gray)}, e.g. {example.name}) and colour "
        f"({len(is_gray) - sum(is_gray)}) files; set +data.dataset_kwargs.grayscale=true to "
        "convert all to 1 channel or false to convert all to RGB"
    )


def _check_options(
    image_size: object,
    grayscale: object,
    test_fraction: object,
    max_image_pixels: object,
    recursive: object,
    stream: object,
) -> None:
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
    if max_image_pixels is not None and (
        isinstance(max_image_pixels, bool)
        or not isinstance(max_image_pixels, int)
        or max_image_pixels < 1
    ):
        raise ConfigError(
            f"max_image_pixels={max_image_pixels!r} is invalid; use a positive integer or null "
            "(PIL's decompression-bomb limit)"
        )
    for name, value in (("recursive", recursive), ("stream", stream)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is invalid; use true or false")


def load_image_folder(
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_size: int | None = None,
    grayscale: bool | None = None,
    test_fraction: float = 0.2,
    max_image_pixels: int | None = None,
    recursive: bool = False,
    stream: bool = False,
) -> ImageData:
    """Images from ``root/<class>/``; classes sorted by folder name, a fixed stratified
    ``test_fraction`` of each class held out. ``grayscale=None`` keeps 1 channel only if every
    image is grayscale. Each image is resized to ``image_size`` right after decoding. Larger
    than ``max_image_pixels`` (default: where PIL refuses, 2 x ``PIL.Image.MAX_IMAGE_PIXELS``)
    is an error; ``recursive`` also reads sub-folders of class folders (else an error).
    ``stream`` keeps only the paths (:class:`FileImages`: decoded per batch, in loader
    workers). ``download`` is ignored."""
    _check_options(image_size, grayscale, test_fraction, max_image_pixels, recursive, stream)
    if root is None:
        raise DataError("data=image_folder needs data.root=<dir> with one sub-folder per class")
    base = Path(root).expanduser()
    folders = _class_folders(base)
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = _image_files(folder, recursive)
        paths += files
        labels += [label] * len(files)
    limit = pixel_limit(max_image_pixels)
    headers = [read_header(p, limit) for p in paths]  # mode and size, pixels not decoded
    gray = grayscale if grayscale is not None else _all_gray([m for m, _ in headers], paths, base)
    if image_size is None:
        sizes = {s for _, s in headers}
        if len(sizes) > 1:
            (w1, h1), (w2, h2) = sorted(sizes)[:2]
            raise DataError(
                f"images in {base} have {len(sizes)} different sizes (e.g. {w1}x{h1} "
                f"and {w2}x{h2}); set data.image_size=<N> to resize all to N x N"
            )
        width, height = headers[0][1]
    else:
        width = height = image_size
    files = FileImages(paths, gray, height, width, image_size, limit)
    images = files if stream else files[:]
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    names = [f.name for f in folders]
    train, test = stratified_holdout(label_tensor, test_fraction, SPLIT_SEED, names)
    return ImageData(
        take(images, train),
        label_tensor[train],
        take(images, test),
        label_tensor[test],
        names,
        "image_folder",
    )
