"""data=image_folder: every PIL mode to correct 8-bit pixels, resizing straight after decoding,
decompression bombs and nested folders as one-line errors."""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import transferlab.data.decode as decode
from transferlab.core.errors import ConfigError, DataError
from transferlab.data import load_dataset
from transferlab.data.decode import to_array

RNG_SEED = 0


def write_folder(root: Path, images: dict[str, list[Image.Image]], ext: str = "png") -> Path:
    """``root/<class>/<n>.<ext>`` from in-memory images."""
    for name, members in images.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(members):
            image.save(root / name / f"{i}.{ext}")
    return root


def gray_arrays(n: int = 6, size: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    return [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(n)]


def load(root: Path, **kwargs) -> torch.Tensor:
    """All images of a folder (train then test) in a fixed order: sorted by class and content."""
    data = load_dataset("image_folder", root=str(root), test_fraction=0.5, **kwargs)
    images = torch.cat([data.train_images, data.test_images])
    order = sorted(range(len(images)), key=lambda i: images[i].flatten().tolist())
    return images[order]


def pixel(image: Image.Image, gray: bool = False) -> list[int]:
    """The loaded value(s) of the top-left pixel."""
    return to_array(image, gray, None, Path("x.png"))[:, 0, 0].tolist()


# ---- modes --------------------------------------------------------------------------------


def test_16_bit_png_equals_the_8_bit_images(tmp_path):
    arrays = gray_arrays()
    eight = {
        "a": [Image.fromarray(a) for a in arrays[:3]],
        "b": [Image.fromarray(a) for a in arrays[3:]],
    }
    deep = {
        k: [Image.fromarray(np.asarray(i).astype(np.uint16) * 257) for i in v]
        for k, v in eight.items()
    }
    assert deep["a"][0].mode == "I;16"
    write_folder(tmp_path / "u8", eight)
    write_folder(tmp_path / "u16", deep)
    with Image.open(tmp_path / "u16" / "a" / "0.png") as image:
        assert image.mode == "I;16"  # really 16-bit on disk
    assert torch.equal(load(tmp_path / "u16"), load(tmp_path / "u8"))  # not clipped to white
    resized = load(tmp_path / "u16", image_size=8).int() - load(tmp_path / "u8", image_size=8).int()
    assert resized.abs().max() <= 1  # resized in 16 bits, then rounded


def test_deep_modes_scale_by_bit_depth():
    values = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    expected = [0, 100, 255, 7]
    big_endian = Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    as_int = Image.fromarray(values.astype(np.int32))
    for image in (Image.fromarray(values), big_endian, as_int):
        assert to_array(image, True, None, Path("x.png")).flatten().tolist() == expected
    smooth = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    big_endian = Image.frombytes("I;16B", (64, 64), smooth.astype(">u2").tobytes())
    native = to_array(Image.fromarray(smooth), True, 8, Path("x.png"))
    assert np.array_equal(to_array(big_endian, True, 8, Path("x.png")), native)  # resized right
    wide = Image.fromarray((values.astype(np.int64) * 32768).astype(np.int32))  # 32-bit range
    assert to_array(wide, True, None, Path("x.png")).flatten().tolist() == expected
    unit = Image.fromarray(values.astype(np.float32) / 65535)  # "F" in 0..1
    assert to_array(unit, True, None, Path("x.png")).flatten().tolist() == expected
    assert pixel(Image.fromarray(np.full((2, 2), 200.0, np.float32)), gray=True) == [200]
    with pytest.raises(DataError, match="negative"):
        to_array(Image.fromarray(np.full((2, 2), -5, np.int32)), True, None, Path("x.png"))
    with pytest.raises(DataError, match="float pixel values up to 300"):
        to_array(Image.fromarray(np.full((2, 2), 300.0, np.float32)), True, None, Path("x.png"))


def test_palette_alpha_cmyk_and_other_modes_load_to_the_expected_pixels():
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert pixel(palette) == [200, 100, 50]
    palette.info["transparency"] = 1
    assert pixel(palette) == [255, 255, 255]  # transparent: white
    assert pixel(Image.new("RGBA", (2, 2), (200, 100, 50, 255))) == [200, 100, 50]
    assert pixel(Image.new("RGBA", (2, 2), (200, 100, 50, 0))) == [255, 255, 255]
    assert pixel(Image.new("RGBA", (2, 2), (0, 0, 0, 128))) == [127, 127, 127]
    assert pixel(Image.new("LA", (2, 2), (0, 128)), gray=True) == [127]
    assert pixel(Image.new("CMYK", (2, 2), (0, 0, 0, 0))) == [255, 255, 255]
    assert pixel(Image.new("CMYK", (2, 2), (255, 0, 0, 0))) == [0, 255, 255]
    assert pixel(Image.new("RGB", (2, 2), (10, 200, 30)).convert("YCbCr")) == [8, 199, 29]
    assert pixel(Image.new("1", (2, 2), 1), gray=True) == [255]
    assert pixel(Image.new("1", (2, 2), 1)) == [255, 255, 255]
    assert pixel(Image.new("L", (2, 2), 90)) == [90, 90, 90]
    assert pixel(Image.new("RGB", (2, 2), (255, 0, 0)), gray=True) == [76]  # ITU-R 601 luma


def test_folder_of_palette_rgba_and_cmyk_files(tmp_path):
    red = (220, 20, 20)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette(list(red) + [0] * 765)
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    cmyk = Image.new("RGB", (8, 8), red).convert("CMYK")
    root = write_folder(tmp_path / "imgs", {"a": [palette, clear]})
    (root / "b").mkdir()
    cmyk.save(root / "b" / "0.jpg", quality=100)
    cmyk.save(root / "b" / "1.jpg", quality=100)
    with Image.open(root / "b" / "0.jpg") as image:
        assert image.mode == "CMYK"
    data = load_dataset("image_folder", root=str(root), test_fraction=0.5)
    images = torch.cat([data.train_images, data.test_images])
    labels = torch.cat([data.train_labels, data.test_labels])
    first = images[:, :, 0, 0].tolist()
    assert [255, 255, 255] in first and list(red) in first  # transparent -> white, palette
    for rgb in images[labels == 1][:, :, 0, 0].tolist():  # JPEG: close, not exact
        assert max(abs(v - w) for v, w in zip(rgb, red, strict=True)) <= 4


# ---- memory: each image resized straight after decoding ------------------------------------


def spy_on_decoding(monkeypatch) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """Record (decoded size, returned shape) per image, asserting that the previous decoded
    image is already freed (at most one full-size image alive at a time)."""
    real = decode.to_array
    calls: list[tuple[tuple[int, int], tuple[int, ...]]] = []
    previous: list[weakref.ref] = []

    def spy(image, gray, size, path):
        assert all(ref() is None for ref in previous), "an earlier full-size image is alive"
        previous.append(weakref.ref(image))
        out = real(image, gray, size, path)
        calls.append((image.size, out.shape))
        return out

    monkeypatch.setattr(decode, "to_array", spy)
    return calls


def test_big_images_are_resized_right_after_decoding(tmp_path, monkeypatch):
    rng = np.random.default_rng(RNG_SEED)
    big = [Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(4)]
    root = write_folder(tmp_path / "png", {"a": big[:2], "b": big[2:]})
    calls = spy_on_decoding(monkeypatch)
    data = load_dataset("image_folder", root=str(root), image_size=16, test_fraction=0.5)
    assert data.train_images.shape == (2, 3, 16, 16)
    assert calls == [((640, 480), (3, 16, 16))] * 4
    jpegs = write_folder(tmp_path / "jpg", {"a": big[:2], "b": big[2:]}, ext="jpg")
    calls.clear()
    load_dataset("image_folder", root=str(jpegs), image_size=16, test_fraction=0.5)
    assert calls == [((80, 60), (3, 16, 16))] * 4  # JPEG decoded at 1/8 scale (draft)


# ---- decompression bombs and nested folders ------------------------------------------------


def test_decompression_bomb_names_the_file_and_the_option(tmp_path, monkeypatch):
    arrays = gray_arrays(n=4, size=16)  # 256 pixels
    root = write_folder(
        tmp_path / "imgs",
        {
            "a": [Image.fromarray(a) for a in arrays[:2]],
            "b": [Image.fromarray(a) for a in arrays[2:]],
        },
    )
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses above 200
    with pytest.raises(DataError, match=r"a/0\.png has 16x16 = 256 pixels.*max_image_pixels=256"):
        load_dataset("image_folder", root=str(root))
    assert load_dataset("image_folder", root=str(root), max_image_pixels=256).image_hw == (16, 16)
    assert Image.MAX_IMAGE_PIXELS == 100  # PIL's own limit restored
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 256 is in PIL's warning zone: loads
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset("image_folder", root=str(root)).image_hw == (16, 16)
    with pytest.raises(ConfigError, match="max_image_pixels"):
        load_dataset("image_folder", root=str(root), max_image_pixels=0)


def test_nested_class_folders_are_an_error_unless_recursive(tmp_path):
    arrays = gray_arrays(n=6, size=8)
    root = write_folder(
        tmp_path / "imgs",
        {
            "a": [Image.fromarray(a) for a in arrays[:2]],
            "b": [Image.fromarray(a) for a in arrays[2:4]],
        },
    )
    (root / "a" / ".ipynb_checkpoints").mkdir()  # hidden: ignored
    Image.fromarray(arrays[4]).save(root / "a" / ".ipynb_checkpoints" / "x.png")
    (root / "b" / "notes").mkdir()  # no images: ignored
    (root / "b" / "notes" / "readme.txt").write_text("hi")
    assert load_dataset("image_folder", root=str(root), test_fraction=0.5).image_hw == (8, 8)
    (root / "b" / "more" / "deeper").mkdir(parents=True)
    Image.fromarray(arrays[5]).save(root / "b" / "more" / "deeper" / "x.png")
    with pytest.raises(DataError, match=r"class folder .*b has a sub-folder .*only root/<class>/"):
        load_dataset("image_folder", root=str(root))
    data = load_dataset("image_folder", root=str(root), recursive=True, test_fraction=0.5)
    assert torch.cat([data.train_labels, data.test_labels]).bincount().tolist() == [2, 3]
    with pytest.raises(ConfigError, match="recursive"):
        load_dataset("image_folder", root=str(root), recursive="yes")
