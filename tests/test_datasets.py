"""Data set loaders: digits, Fashion-MNIST (IDX files), CIFAR-10 (offline) and image folders."""

from __future__ import annotations

import gzip
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from transferlab.core.errors import ConfigError, DataError
from transferlab.data import available_datasets, load_dataset
from transferlab.data.fashion_mnist import DEFAULT_DIR, FILES

needs_fashion = pytest.mark.skipif(
    not (DEFAULT_DIR / f"{FILES[0]}.gz").is_file(),
    reason="needs the Debian dataset-fashion-mnist files",
)


def _offline_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_registry_lists_and_rejects_names():
    assert available_datasets() == ["cifar10", "digits", "fashion_mnist", "image_folder"]
    with pytest.raises(ConfigError, match="valid: cifar10, digits, fashion_mnist, image_folder"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="no option.*test_fraction"):
        load_dataset("digits", test_fraction=0.5)


def test_digits_has_a_fixed_stratified_test_third():
    data = load_dataset("digits")
    assert data.name == "digits" and data.class_names == [str(d) for d in range(10)]
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape[1:] == (1, 8, 8)
    assert len(data.train_images) + len(data.test_images) == 1797
    assert int(data.train_images.max()) == 255 and int(data.train_images.min()) == 0
    labels = torch.cat([data.train_labels, data.test_labels])
    for c in range(10):
        total = int((labels == c).sum())
        assert int((data.test_labels == c).sum()) == round(total / 3)
    again = load_dataset("digits", root="/nonexistent")
    assert torch.equal(data.test_images, again.test_images)
    assert torch.equal(data.test_labels, again.test_labels)


@needs_fashion
def test_fashion_mnist_loads_the_debian_files():
    data = load_dataset("fashion_mnist", download=False)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert data.class_names[5] == "Sandal" and data.class_names[9] == "Ankle boot"


def _copy_dir(tmp_path: Path, plain: tuple[str, ...] = ()) -> Path:
    """Links to the Debian files; the files named in ``plain`` are written uncompressed."""
    target = tmp_path / "fmnist"
    target.mkdir()
    for stem in FILES:
        source = DEFAULT_DIR / f"{stem}.gz"
        if stem in plain:
            (target / stem).write_bytes(gzip.decompress(source.read_bytes()))
        else:
            (target / f"{stem}.gz").symlink_to(source)
    return target


@needs_fashion
def test_fashion_mnist_from_root_env_and_uncompressed(tmp_path, monkeypatch):
    root = _copy_dir(tmp_path, plain=("t10k-labels-idx1-ubyte",))
    data = load_dataset("fashion_mnist", root=str(root), download=False)
    assert len(data.test_labels) == 10000
    monkeypatch.setenv("TRANSFERLAB_FASHION_MNIST", str(root))
    assert len(load_dataset("fashion_mnist", download=False).train_labels) == 60000


@needs_fashion
def test_truncated_idx_file_is_named(tmp_path):
    root = _copy_dir(tmp_path)
    bad = root / "train-images-idx3-ubyte.gz"
    bad.unlink()
    bad.write_bytes((DEFAULT_DIR / bad.name).read_bytes()[:100_000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_dataset("fashion_mnist", root=str(root), download=False)


@needs_fashion
def test_short_uncompressed_idx_file_is_named(tmp_path):
    root = _copy_dir(tmp_path, plain=("t10k-labels-idx1-ubyte",))
    bad = root / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte holds 9,990 bytes .* 10,000"):
        load_dataset("fashion_mnist", root=str(root), download=False)
    bad.write_bytes(b"\x00\x00\x08\x03" + bytes(20))
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset("fashion_mnist", root=str(root), download=False)


def test_fashion_mnist_missing_without_download(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    assert "data.root=" in str(err.value) and "TRANSFERLAB_FASHION_MNIST" in str(err.value)
    assert "\n" not in str(err.value)


def test_fashion_mnist_incomplete_folder_names_the_missing_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion_mnist", root=str(tmp_path), download=False)


def test_fashion_mnist_failed_download(tmp_path, monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_OFFLINE", raising=False)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _offline_network)
    with pytest.raises(
        DataError, match="download .* failed .*URLError.*apt-get install dataset-fashion-mnist"
    ):
        load_dataset("fashion_mnist", root=str(tmp_path / "none"), download=True)


def test_cifar10_without_files_or_network(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="needs internet once.*data=digits.*data=fashion_mnist"):
        load_dataset("cifar10", root=str(tmp_path), download=False)
    monkeypatch.delenv("TRANSFERLAB_OFFLINE", raising=False)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _offline_network)
    with pytest.raises(DataError, match="URLError.*cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path), download=True)
    monkeypatch.setenv("TRANSFERLAB_OFFLINE", "1")
    with pytest.raises(DataError, match="TRANSFERLAB_OFFLINE"):
        load_dataset("cifar10", root=str(tmp_path), download=True)


# ---- image folders (PNG files written from the real digits images) ------------------------


def write_digit_folder(
    root: Path, classes=(0, 1, 2), per_class: int = 5, rgb: bool = False, size: int = 8
) -> Path:
    """``root/<digit>/<n>.png`` from scikit-learn's digits (real images)."""
    data = load_dataset("digits")
    for c in classes:
        folder = root / f"digit{c}"
        folder.mkdir(parents=True)
        images = data.train_images[data.train_labels == c][:per_class, 0].numpy()
        for i, array in enumerate(images):
            image = Image.fromarray(array, mode="L")
            image = image.convert("RGB") if rgb else image
            image.resize((size, size)).save(folder / f"{i}.png")
    return root


def test_image_folder_gray(tmp_path):
    root = write_digit_folder(tmp_path / "imgs")
    (root / "digit0" / "notes.txt").write_text("ignored")
    data = load_dataset("image_folder", root=str(root))
    assert data.class_names == ["digit0", "digit1", "digit2"]
    assert data.train_images.shape == (12, 1, 8, 8) and data.test_images.shape == (3, 1, 8, 8)
    assert data.test_labels.tolist() == [0, 1, 2]
    again = load_dataset("image_folder", root=str(root))
    assert torch.equal(data.test_images, again.test_images)


def test_image_folder_rgb_grayscale_and_resize(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", rgb=True)
    assert load_dataset("image_folder", root=str(root)).train_images.shape[1] == 3
    gray = load_dataset("image_folder", root=str(root), grayscale=True, image_size=16)
    assert gray.train_images.shape[1:] == (1, 16, 16)


def test_image_folder_mixed_sizes_need_image_size(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", classes=(0,))
    write_digit_folder(tmp_path / "imgs", classes=(1,), size=12)
    with pytest.raises(DataError, match="different sizes.*data.image_size"):
        load_dataset("image_folder", root=str(root))
    assert load_dataset("image_folder", root=str(root), image_size=10).image_hw == (10, 10)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("image_folder", root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset("image_folder")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset("image_folder", root=str(tmp_path / "empty_root"))
    root = write_digit_folder(tmp_path / "imgs", classes=(0, 1))
    (root / "digit9").mkdir()
    with pytest.raises(DataError, match="digit9 has no images"):
        load_dataset("image_folder", root=str(root))
    (root / "digit9").rmdir()
    (root / "digit1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(DataError, match=r"broken\.png"):
        load_dataset("image_folder", root=str(root))
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("image_folder", root=str(root), test_fraction=1.0)


def test_image_folder_needs_two_images_per_class(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", classes=(0, 1), per_class=1)
    with pytest.raises(DataError, match="at least 2"):
        load_dataset("image_folder", root=str(root))


def test_image_folder_keeps_exact_pixels(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", classes=(3, 4), per_class=4)
    data = load_dataset("image_folder", root=str(root), test_fraction=0.25)
    pixels = torch.cat([data.train_images, data.test_images]).flatten(1)
    digits = load_dataset("digits")
    source = digits.train_images[(digits.train_labels == 3) | (digits.train_labels == 4)]
    wanted = {tuple(r) for r in source.flatten(1).tolist()}
    assert all(tuple(r) in wanted for r in pixels.tolist())
    assert np.array_equal(np.unique(data.train_labels.numpy()), [0, 1])
