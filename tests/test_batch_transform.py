"""The uint8 data path: splits held as uint8 at native size, prepared per batch."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from cifar_format import accept_unchecked_files, write_cifar_folder
from test_datamodule import _Recorder, digits_dm
from test_datasets import write_digit_folder

from transferlab.core.errors import ConfigError
from transferlab.data import ImageClassificationDataModule, load_dataset
from transferlab.data.file_images import FileImages
from transferlab.data.preprocess import BatchTransform


def _old_float_path(pixels: torch.Tensor, size: int, channels: int, mean, std) -> torch.Tensor:
    """What setup used to hold: the whole split as float32 at the model's size, normalised."""
    x = pixels.float() / 255
    if channels == 1 and x.shape[1] == 3:
        x = x.mean(dim=1, keepdim=True)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def test_splits_are_held_as_uint8_at_native_size():
    dm = digits_dm(image_size=32, channels=3, labels_per_class=None, val_per_class=None)
    for data in (dm.train_set, dm.test_set):
        assert data.pixels.dtype == torch.uint8 and data.pixels.shape[1:] == (1, 8, 8)
        assert data.pixels.nbytes == len(data) * 64  # not len * 3 * 32 * 32 * 4
    assert dm.input_shape == (3, 32, 32)
    images, _ = next(iter(dm.train_dataloader()))  # no Trainer: prepared on the CPU
    assert images.dtype == torch.float32 and images.shape == (8, 3, 32, 32)


def test_per_batch_transform_equals_the_old_float_path():
    dm = digits_dm(image_size=20, channels=3)
    old = _old_float_path(dm.val_set.pixels, 20, 3, dm.mean, dm.std)
    batch = dm.val_set.pixels[:16]
    torch.testing.assert_close(dm.prepare_batch(batch), old[:16], atol=1e-6, rtol=0)
    torch.testing.assert_close(dm.val_set.images, old, atol=1e-6, rtol=0)


class _LoaderDtype(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.raw = next(iter(trainer.datamodule.val_dataloader()))[0]


def test_trainer_receives_uint8_batches_and_prepares_them_in_its_hook():
    dm = digits_dm(image_size=12, channels=3)
    model, probe = _Recorder(dm.input_shape), _LoaderDtype()
    L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[probe],
    ).fit(model, dm)
    assert probe.raw.dtype == torch.uint8 and probe.raw.shape[1:] == (1, 8, 8)  # while running
    seen = torch.cat(model.seen["val"])
    torch.testing.assert_close(seen, dm.val_set.images, atol=1e-6, rtol=0)
    after, _ = next(iter(dm.val_dataloader()))  # the Trainer has finished: prepared again
    assert after.dtype == torch.float32 and after.shape[1:] == (3, 12, 12)


def test_prepared_batches_take_the_trainers_precision():
    dm = digits_dm()
    model = _Recorder(dm.input_shape)
    L.Trainer(
        max_steps=1,
        accelerator="cpu",
        precision="bf16-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    ).fit(model, dm)
    assert model.seen["train"][0].dtype == torch.bfloat16


def test_channel_expansion_and_reduction():
    gray = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    rgb = BatchTransform(channels=3)(gray)
    assert rgb.shape == (4, 3, 8, 8)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])
    torch.testing.assert_close(rgb[:, :1], gray.float() / 255)
    colour = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(
        BatchTransform(channels=1)(colour), colour.float().div(255).mean(1, keepdim=True)
    )


def test_resize_and_normalisation():
    flat = torch.full((2, 1, 8, 8), 51, dtype=torch.uint8)
    out = BatchTransform(image_size=24, mean=(0.1,), std=(0.5,))(flat)
    assert out.shape == (2, 1, 24, 24)
    torch.testing.assert_close(out, torch.full_like(out, (0.2 - 0.1) / 0.5))
    assert BatchTransform().output_shape((1, 8, 8)) == (1, 8, 8)
    assert BatchTransform(24, 3).output_shape((1, 8, 8)) == (3, 24, 24)
    prepared = torch.rand(2, 1, 8, 8)
    assert BatchTransform(image_size=24)(prepared) is prepared  # float: already prepared


def test_cifar_format_folder_memory_follows_native_size(tmp_path, monkeypatch):
    accept_unchecked_files(monkeypatch.setattr)
    root = write_cifar_folder(tmp_path, train=60, test=20)
    held = {}
    for size in (32, 96):
        dm = ImageClassificationDataModule(
            "cifar10", root=str(root), download=False, val_per_class=2, image_size=size
        )
        dm.setup("fit")
        assert dm.input_shape == (3, size, size)
        sets = (dm.train_set, dm.val_set, dm.test_set)
        assert all(s.pixels.dtype == torch.uint8 for s in sets)
        held[size] = sum(s.pixels.nbytes for s in sets)
    assert held[32] == held[96] == 80 * 3 * 32 * 32


@pytest.mark.parametrize("size", [8, 16])
def test_prepare_batch_matches_items(size):
    dm = digits_dm(image_size=size)
    rows = torch.arange(5)
    items = torch.stack([dm.train_set[i][0] for i in range(5)])
    torch.testing.assert_close(items, dm.train_set.inputs(rows), atol=0, rtol=0)


@pytest.mark.parametrize("workers", [0, 1])
def test_streamed_image_folder_gives_the_in_memory_batches(tmp_path, workers):
    root = write_digit_folder(tmp_path / "imgs", per_class=6, rgb=True)
    common = {"root": str(root), "image_size": 12, "channels": 1, "batch_size": 4}
    memory = ImageClassificationDataModule("image_folder", **common)
    memory.setup("fit")
    streamed = ImageClassificationDataModule(
        "image_folder", **common, num_workers=workers, dataset_kwargs={"stream": True}
    )
    streamed.setup("fit")
    assert isinstance(streamed.train_set.pixels, FileImages)  # paths held, nothing decoded
    assert streamed.input_shape == memory.input_shape == (1, 12, 12)
    assert streamed.mean == memory.mean and streamed.std == memory.std
    for a, b in zip(memory.train_dataloader(), streamed.train_dataloader(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(streamed.test_set.images, memory.test_set.images, atol=0, rtol=0)


def test_stream_must_be_a_boolean(tmp_path):
    root = write_digit_folder(tmp_path / "imgs")
    with pytest.raises(ConfigError, match=r"stream='yes' is invalid; use true or false"):
        load_dataset("image_folder", root=str(root), stream="yes")
