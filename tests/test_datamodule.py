"""The data module (preprocessing, loaders, augmentation hook) and BatchAugment."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from test_datasets import needs_fashion, write_digit_folder

from transferlab.core.errors import ConfigError
from transferlab.data import BatchAugment, ImageClassificationDataModule, load_dataset
from transferlab.data.batching import ImageBatchDataset


def digits_dm(**kwargs) -> ImageClassificationDataModule:
    args = {
        "dataset": "digits",
        "classes": [5, 6, 7, 8, 9],
        "labels_per_class": 5,
        "val_per_class": 20,
        "batch_size": 8,
    }
    dm = ImageClassificationDataModule(**{**args, **kwargs})
    dm.setup("fit")
    return dm


def test_shapes_labels_and_names():
    dm = digits_dm()
    digits = load_dataset("digits")
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 5
    assert dm.class_names == ["5", "6", "7", "8", "9"] and dm.dataset_name == "digits"
    assert len(dm.train_set) == 25 and len(dm.val_set) == 100
    assert len(dm.test_set) == int((digits.test_labels >= 5).sum())
    assert dm.train_set.images.dtype == torch.float32
    assert sorted(dm.train_set.labels.unique().tolist()) == [0, 1, 2, 3, 4]
    assert dm.split.classes == [5, 6, 7, 8, 9]


def test_classes_by_name_and_range():
    assert digits_dm(classes="7-9").class_names == ["7", "8", "9"]
    dm = digits_dm(classes=["9", 2])
    assert dm.class_names == ["9", "2"]
    assert dm.test_set.labels.tolist().count(0) == int(
        (load_dataset("digits").test_labels == 9).sum()
    )


def test_channels_3_repeats_gray_and_resize():
    dm = digits_dm(channels=3, image_size=16)
    x = dm.train_set.images
    assert dm.input_shape == (3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert len(dm.mean) == 3 and dm.mean[0] == dm.mean[2]


def test_data_normalisation_uses_the_whole_training_pool():
    whole = digits_dm(classes=None, labels_per_class=None, val_per_class=None)
    x = whole.train_set.images
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-4
    source, target = digits_dm(classes="0-4"), digits_dm(classes="5-9")
    assert source.mean == target.mean == whole.mean and source.std == whole.std


def test_imagenet_none_and_explicit_statistics():
    rgb = digits_dm(normalize="imagenet", channels=3)
    assert rgb.mean == pytest.approx([0.485, 0.456, 0.406])
    assert rgb.std == pytest.approx([0.229, 0.224, 0.225])
    gray = digits_dm(normalize="imagenet")
    assert gray.mean == pytest.approx([0.449]) and gray.std == pytest.approx([0.226])
    raw = digits_dm(normalize=None)
    assert float(raw.train_set.images.min()) >= 0 and float(raw.train_set.images.max()) <= 1
    assert raw.mean == [0.0] and raw.std == [1.0]
    fixed = digits_dm(normalize=None, mean=[0.5], std=[0.25])
    assert torch.allclose(fixed.train_set.images, (raw.train_set.images - 0.5) / 0.25)
    with pytest.raises(ConfigError, match="2 values but the images have 1 channel"):
        digits_dm(mean=[0.1, 0.2])


def test_loader_batches_come_from_getitems(monkeypatch):
    calls = {"many": 0, "one": 0}
    original = ImageBatchDataset.__getitems__

    def counting(self, indices):
        calls["many"] += 1
        return original(self, indices)

    def single(self, index):
        calls["one"] += 1
        raise AssertionError("per-sample __getitem__ should not be used")

    monkeypatch.setattr(ImageBatchDataset, "__getitems__", counting)
    monkeypatch.setattr(ImageBatchDataset, "__getitem__", single)
    dm = digits_dm(batch_size=10)
    batches = list(dm.train_dataloader())
    assert calls == {"many": 3, "one": 0}
    assert [len(b[1]) for b in batches] == [10, 10, 5]
    images, labels = batches[0]
    assert isinstance(batches[0], tuple) and images.shape == (10, 1, 8, 8)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    evals = list(dm.val_dataloader())
    assert len(evals) == 1 and torch.equal(evals[0][0], dm.val_set.images)
    assert torch.equal(next(iter(dm.predict_dataloader()))[1], dm.test_set.labels)


def test_train_order_follows_the_seed():
    def order(seed):
        dm = digits_dm(labels_per_class=None, val_per_class=None, seed=seed)
        return torch.cat([b[1] for b in dm.train_dataloader()])

    assert torch.equal(order(4), order(4)) and not torch.equal(order(4), order(5))


def test_no_validation_split_gives_an_empty_list():
    assert digits_dm(val_per_class=None).val_dataloader() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"channels": 2},
        {"normalize": "minmax"},
        {"dataset": "mnist"},
        {"augment": {"rotate": 10}},
        {"augment": {"crop_padding": -1}},
        {"image_size": 0},
    ],
)
def test_bad_arguments_are_one_line_config_errors(kwargs):
    with pytest.raises(ConfigError) as err:
        ImageClassificationDataModule(**kwargs)
    assert "\n" not in str(err.value)


def test_augment_hook_only_while_training():
    dm = digits_dm(augment={"hflip": True, "crop_padding": 2, "noise_std": 0.1})
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    images, labels = dm.on_after_batch_transfer(batch, 0)
    assert images.shape == batch[0].shape and not torch.equal(images, batch[0])
    assert torch.equal(labels, batch[1])
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer(batch, 0) is batch
    off = digits_dm(augment={"hflip": False, "crop_padding": 0, "noise_std": 0.0})
    assert off.augment is None


class _Recorder(L.LightningModule):
    def __init__(self, shape):
        super().__init__()
        self.layer = torch.nn.Linear(int(torch.tensor(shape).prod()), 5)
        self.seen = {"train": [], "val": []}

    def _step(self, batch, kind):
        self.seen[kind].append(batch[0].clone())
        return F.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(dm):
    model = _Recorder(dm.input_shape)
    L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    ).fit(model, dm)
    return model


def test_trainer_augments_training_batches_but_not_validation():
    dm = digits_dm(augment={"crop_padding": 2, "noise_std": 0.05})
    model = _fit(dm)
    train = torch.cat(model.seen["train"])
    assert train.shape == dm.train_set.images.shape
    originals = {tuple(r) for r in dm.train_set.images.flatten(1).tolist()}
    assert not any(tuple(r) in originals for r in train.flatten(1).tolist())
    assert torch.equal(torch.cat(model.seen["val"]), dm.val_set.images)


def test_trainer_skips_validation_without_a_val_split():
    model = _fit(digits_dm(val_per_class=None))
    assert model.seen["val"] == [] and len(model.seen["train"]) == 4


def test_gray_image_folder_to_rgb_and_rgb_to_gray(tmp_path):
    gray_root = write_digit_folder(tmp_path / "gray")
    dm = ImageClassificationDataModule("image_folder", root=str(gray_root), channels=3)
    assert dm.input_shape == (3, 8, 8) and dm.class_names == ["digit0", "digit1", "digit2"]
    rgb_root = write_digit_folder(tmp_path / "rgb", rgb=True)
    rgb = ImageClassificationDataModule("image_folder", root=str(rgb_root))
    assert rgb.input_shape == (3, 8, 8)
    gray = ImageClassificationDataModule("image_folder", root=str(rgb_root), channels=1)
    assert gray.input_shape == (1, 8, 8)
    assert torch.allclose(gray.train_set.images, dm.train_set.images[:, :1], atol=1e-5)


def test_image_size_is_forwarded_to_mixed_size_folders(tmp_path):
    root = write_digit_folder(tmp_path / "imgs", classes=(0,))
    write_digit_folder(tmp_path / "imgs", classes=(1,), size=12)
    dm = ImageClassificationDataModule("image_folder", root=str(root), image_size=10)
    assert dm.input_shape == (1, 10, 10)


@needs_fashion
def test_fashion_mnist_target_task():
    dm = ImageClassificationDataModule(
        "fashion_mnist", classes="5-9", labels_per_class=20, val_per_class=100, batch_size=128
    )
    dm.setup("fit")
    assert dm.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (100, 500, 5000)
    assert dm.input_shape == (1, 28, 28) and dm.mean == pytest.approx([0.2860], abs=1e-4)


# ---- BatchAugment -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return digits_dm(normalize=None, labels_per_class=None, val_per_class=None).train_set.images


def test_batch_augment_identity_when_off(batch):
    assert BatchAugment().is_identity
    assert torch.equal(BatchAugment()(batch), batch)


def test_hflip_flips_some_samples_whole(batch):
    torch.manual_seed(0)
    out = BatchAugment(hflip=True)(batch)
    same = (out == batch).flatten(1).all(1)
    flipped = (out == batch.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 0.3 < float((flipped & ~same).float().mean()) < 0.7


def test_crop_padding_translates_each_sample_with_zeros(batch):
    pad = 2
    torch.manual_seed(1)
    out = BatchAugment(crop_padding=pad)(batch)
    padded = F.pad(batch, (pad, pad, pad, pad))
    shifts = set()
    for i in range(len(batch)):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert matches, f"sample {i} is not a translation"
        shifts.update(matches)
    assert len(shifts) == (2 * pad + 1) ** 2


def test_batch_augment_is_deterministic_under_manual_seed(batch):
    aug = BatchAugment(hflip=True, crop_padding=1, noise_std=0.1)
    torch.manual_seed(7)
    a = aug(batch)
    torch.manual_seed(7)
    b = aug(batch)
    torch.manual_seed(8)
    c = aug(batch)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_has_the_requested_std(batch):
    torch.manual_seed(0)
    out = BatchAugment(noise_std=0.2)(batch)
    assert float((out - batch).std()) == pytest.approx(0.2, rel=0.05)


def test_worker_processes_give_the_same_batches():
    dm = digits_dm(num_workers=1)
    batches = list(dm.val_dataloader())
    assert len(batches) == 1 and torch.equal(batches[0][0], dm.val_set.images)


def test_tiny_labelled_sets_are_drawn_with_replacement_per_epoch() -> None:
    dm = ImageClassificationDataModule(
        dataset="digits",
        classes=[5, 6, 7, 8, 9],
        labels_per_class=2,
        val_per_class=5,
        batch_size=64,
        min_samples_per_epoch=256,
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and sum(len(labels) for _, labels in batches) == 256
    seen = torch.cat([labels for _, labels in batches])
    assert set(seen.tolist()) == set(range(5))
    big = ImageClassificationDataModule(
        dataset="digits",
        classes=[5, 6, 7, 8, 9],
        labels_per_class=50,
        val_per_class=5,
        batch_size=64,
        min_samples_per_epoch=128,
    )
    big.setup("fit")
    assert sum(len(labels) for _, labels in big.train_dataloader()) == 250
