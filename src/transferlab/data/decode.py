"""One image file to a small uint8 array: any PIL mode to 8-bit grayscale or RGB, resized
straight after decoding, so a folder of large photos is read holding one full-size image at a
time. Rules (docs/data.md): 16-bit grayscale is divided by 257 (not clipped), alpha is
composited on white, palette/CMYK/YCbCr/... go through PIL's RGB conversion."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from transferlab.core.errors import DataError

# modes that hold one channel of intensity (the alpha of LA/La is composited away)
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})  # more than 8 bits
U16_MAX = 65535
I32_MAX = 2**31 - 1
_READ_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError)


def pixel_limit(max_image_pixels: int | None) -> int | None:
    """The most pixels one image may have: ``max_image_pixels``, else the size at which PIL
    itself refuses a file as a decompression bomb (2 x ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    if max_image_pixels is not None:
        return max_image_pixels
    default = Image.MAX_IMAGE_PIXELS
    return None if default is None else 2 * int(default)


@contextlib.contextmanager
def _own_pixel_check() -> Iterator[None]:
    """Switch off PIL's bomb check (an error or a warning that names no file) while this
    module opens a file and checks the size itself."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(path: Path, size: tuple[int, int], limit: int | None) -> None:
    width, height = size
    if limit is not None and width * height > limit:
        raise DataError(
            f"image {path} has {width}x{height} = {width * height} pixels, over the limit of "
            f"{limit} that guards against decompression bombs; if the file is trusted, allow "
            f"it with +data.dataset_kwargs.max_image_pixels={width * height} (or remove it)"
        )


def _cannot_read(path: Path, err: BaseException) -> DataError:
    return DataError(f"cannot read image {path}: {err}; fix or remove the file")


def read_header(path: Path, limit: int | None) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) of an image file without decoding its pixels."""
    try:
        with _own_pixel_check(), Image.open(path) as image:
            mode, size = image.mode, image.size
    except _READ_ERRORS as err:
        raise _cannot_read(path, err) from None
    _check_pixels(path, size, limit)
    return mode, size


def decode_image(path: Path, gray: bool, size: int | None, limit: int | None) -> np.ndarray:
    """The image at ``path`` as uint8 (1 or 3, H, W), resized to ``size`` x ``size`` if set
    (JPEGs are decoded at a reduced scale first when that is still at least ``size``)."""
    try:
        with _own_pixel_check(), Image.open(path) as image:
            _check_pixels(path, image.size, limit)
            if size is not None and image.format == "JPEG":
                image.draft(image.mode, (size, size))
            image.load()
            return to_array(image, gray, size, path)
    except _READ_ERRORS as err:
        raise _cannot_read(path, err) from None


def _resize(image: Image.Image, size: int | None) -> Image.Image:
    if size is None or image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BILINEAR)


def _deep_scale(image: Image.Image, path: Path) -> float:
    """The factor that maps a 16/32-bit integer or float image onto 0..255 by its bit depth."""
    low, high = image.getextrema()
    if image.mode.startswith("I;16"):
        return 255 / U16_MAX
    if isinstance(low, float) and not (math.isfinite(low) and math.isfinite(high)):
        raise DataError(f"image {path} has non-finite pixel values; fix or remove the file")
    if low < 0:
        raise DataError(
            f"image {path} ({image.mode}) has negative pixel values ({low}); convert it to an "
            "8- or 16-bit image"
        )
    if image.mode == "I":  # 16-bit data (older PIL read 16-bit PNGs as "I"), else 32-bit
        return 255 / (U16_MAX if high <= U16_MAX else I32_MAX)
    if high <= 1:  # "F": 0..1 floats, else PIL's own 0..255 scale
        return 255.0
    if high <= 255:
        return 1.0
    raise DataError(f"image {path} has float pixel values up to {high}; expected 0..1 or 0..255")


def _eight_bit(image: Image.Image) -> Image.Image:
    """L, LA, RGB or RGBA (the modes resize handles well, alpha premultiplied)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":  # resizing "1" would use nearest neighbour
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")
    if mode in ("PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode == "P" and image.palette is not None and image.palette.mode == "RGBA":
        return image.convert("RGBA")
    return image.convert("RGB")  # P, CMYK, YCbCr, RGBX, LAB, HSV


def _on_white(array: np.ndarray) -> np.ndarray:
    """Composite H x W x (C + alpha) uint8 on a white background."""
    alpha = array[..., -1:].astype(np.float32) / 255
    colour = array[..., :-1].astype(np.float32) * alpha + 255 * (1 - alpha)
    return np.rint(colour).astype(np.uint8)


def to_array(image: Image.Image, gray: bool, size: int | None, path: Path) -> np.ndarray:
    """A decoded image of any mode as uint8 (1 or 3, H, W), resized first if ``size``."""
    if image.mode in DEEP_MODES:
        if image.mode in ("I;16B", "I;16L", "I;16N"):  # PIL resizes these wrongly: native order
            image = Image.fromarray(np.asarray(image).astype(np.uint16))
        scale = _deep_scale(image, path)
        deep = np.asarray(_resize(image, size), dtype=np.float64) * scale
        array = np.rint(np.clip(deep, 0, 255)).astype(np.uint8)
    else:
        try:
            image = _eight_bit(image)
        except ValueError as err:
            raise DataError(
                f"image {path} has mode {image.mode}, which cannot be converted to RGB ({err}); "
                "save it as 8-bit grayscale or RGB"
            ) from None
        small = _resize(image, size)
        array = np.asarray(small)
        if small.mode in ("LA", "RGBA"):
            array = _on_white(array)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
    if gray and array.ndim == 3:
        array = np.asarray(Image.fromarray(array, "RGB").convert("L"))
    if gray:
        return array[None]
    if array.ndim == 2:
        return np.repeat(array[None], 3, axis=0)
    return array.transpose(2, 0, 1)
