"""The Lightning data module: one data set, one split, held in memory as uint8 pixels and
prepared (resize, channels, normalisation, augmentation) per batch."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerStatus
from pydantic import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader, Dataset, RandomSampler

from transferlab.core.errors import ConfigError, DataError
from transferlab.core.schema import typed
from transferlab.data.augment import BatchAugment
from transferlab.data.batching import ImageBatchDataset, keep_batch
from transferlab.data.datasets import ImageData, dataset_options, load_dataset
from transferlab.data.file_images import take
from transferlab.data.inference import PREPROCESSING_VERSION
from transferlab.data.preprocess import (
    BatchTransform,
    imagenet_stats,
    normalize_,
    pool_stats,
    to_float,
)
from transferlab.data.shift import parse_shift
from transferlab.data.splits import (
    SplitIndices,
    format_classes,
    make_splits,
    n_classes,
    remap_labels,
    resolve_classes,
)

# val_dataloader() returns [] on purpose when there is no validation split
warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")


def _augment_module(augment: Mapping[str, Any] | None) -> BatchAugment | None:
    if not augment:
        return None
    module = BatchAugment(**{k: v for k, v in augment.items() if v is not None})
    return None if module.is_identity else module


def _stat_list(name: str, value: Any) -> list[float] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (int, float)) else list(value)
    if not items or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise ConfigError(
            f"data.{name}={value!r} is invalid; use a list of numbers, one per "
            "channel (or one for all)"
        )
    if name == "std" and min(items) <= 0:
        raise ConfigError(f"data.std={value!r} is invalid; every std must be > 0")
    return [float(v) for v in items]


class ImageClassificationDataModule(L.LightningDataModule):
    """Loads a data set, splits it with :func:`make_splits`, and serves its batches.

    Each split is held once as uint8 pixels at the data set's stored size; batches are sliced
    from memory and prepared by one :class:`BatchTransform` (to float, channels, resize,
    normalisation): on the device in ``on_after_batch_transfer`` while a Trainer runs with
    this module, on the CPU otherwise (``train_set`` etc. yield prepared inputs). With a ``shift``
    a split is prepared once, in float, when it is first read (the shift's noise is drawn per
    split, so the order does not matter; an evaluation reads only the test split).
    Augmentation (``augment``: hflip, crop_padding, noise_std) runs on the device after the
    transform, only while the trainer is training. A labelled set smaller
    than ``min_samples_per_epoch`` is drawn with replacement to that many samples per epoch,
    so tiny label budgets get several optimizer steps per validation.
    """

    @typed("data")
    def __init__(
        self,
        dataset: str = "digits",
        root: str | os.PathLike[str] | None = None,
        classes: Any = None,
        labels_per_class: Any = None,
        label_fraction: Any = None,
        val_per_class: Any = None,
        val_fraction: Any = None,
        batch_size: PositiveInt = 64,
        eval_batch_size: PositiveInt = 512,
        image_size: PositiveInt | None = None,
        channels: Literal[1, 3] | None = None,
        normalize: Literal["data", "imagenet"] | None = "data",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: Mapping[str, Any] | None = None,
        seed: NonNegativeInt = 0,
        download: bool = True,
        num_workers: NonNegativeInt = 0,
        dataset_kwargs: Mapping[str, Any] | None = None,
        min_samples_per_epoch: PositiveInt | None = None,
        shift: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.min_samples_per_epoch = min_samples_per_epoch
        # an offline domain shift (data/shift.py) applied before normalisation; off by default
        self.shift = parse_shift(shift)
        options = dataset_options(dataset)  # also rejects unknown data set names
        self.dataset = str(dataset).strip().lower().replace("-", "_")
        self.root = root
        self.classes_spec = classes
        self.budget = {
            "labels_per_class": labels_per_class,
            "label_fraction": label_fraction,
            "val_per_class": val_per_class,
            "val_fraction": val_fraction,
        }
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.image_size = image_size
        self.channels = channels
        self.normalize = normalize
        self.mean_override = _stat_list("mean", mean)
        self.std_override = _stat_list("std", std)
        self.augment = _augment_module(augment)
        self.seed = int(seed)
        self.download = bool(download)
        self.num_workers = num_workers
        self.dataset_kwargs = dict(dataset_kwargs or {})
        if image_size is not None and "image_size" in options:  # e.g. mixed-size image folders
            self.dataset_kwargs.setdefault("image_size", image_size)
        # a loader that takes ``image_size`` resizes each file as it decodes it (image folders)
        self._resize_at_decode = "image_size" in options
        self._data: ImageData | None = None
        self._ready = False
        # the config key ``classes`` came from, named in errors (a source's data module says
        # source.classes)
        self.classes_key = "data.classes"

    # ---- loading and preprocessing ------------------------------------------------------

    def _load(self) -> ImageData:
        if self._data is None:
            self._data = load_dataset(
                self.dataset, root=self.root, download=self.download, **self.dataset_kwargs
            )
        return self._data

    def prepare_data(self) -> None:
        """Fetch the data set if it must be downloaded."""
        self._load()

    def _stats(self, data: ImageData, channels: int) -> tuple[list[float], list[float]]:
        if self.normalize == "data":
            mean, std = pool_stats(data.train_images, channels)
        elif self.normalize == "imagenet":
            mean, std = imagenet_stats(channels)
        else:
            mean, std = [0.0] * channels, [1.0] * channels
        for name, override in (("mean", self.mean_override), ("std", self.std_override)):
            if override is not None:
                if len(override) not in (1, channels):
                    raise ConfigError(
                        f"data.{name} has {len(override)} values but the images "
                        f"have {channels} channel(s); give {channels} or 1"
                    )
                values = override * channels if len(override) == 1 else override
                mean, std = (values, std) if name == "mean" else (mean, values)
        return mean, std

    def _transform(self) -> BatchTransform:
        normalized = self.normalize is not None or self.mean_override or self.std_override
        return BatchTransform(
            self.image_size,
            self.channels,
            tuple(self._mean) if normalized else None,
            tuple(self._std) if normalized else None,
        )

    def _dataset(
        self, images: torch.Tensor, labels: torch.Tensor, stream: int = 0
    ) -> ImageBatchDataset:
        labels = remap_labels(labels, self._split.classes)
        if self.shift is None:
            return ImageBatchDataset(images, labels, self._batch_transform)
        x = to_float(images, self.image_size, self.channels)
        x = self.shift.apply(x, stream)  # normalised with the clean pool's statistics
        transform = self._batch_transform
        if transform.mean is not None and transform.std is not None:
            normalize_(x, transform.mean, transform.std)
        return ImageBatchDataset(x, labels)

    def setup(self, stage: str | None = None) -> None:
        """Load, split and preprocess (once; later calls do nothing)."""
        if self._ready:
            return
        data = self._load()
        classes = resolve_classes(
            self.classes_spec, data.class_names, key=self.classes_key, dataset=self.dataset
        )
        self._split: SplitIndices = make_splits(
            data.train_labels,
            data.test_labels,
            classes,
            seed=self.seed,
            class_names=data.class_names,
            **self.budget,
        )
        channels = self.channels or data.channels
        self._native_channels = data.channels
        self._mean, self._std = self._stats(data, channels)
        self._batch_transform = self._transform()
        self._input_shape = self._batch_transform.output_shape(data.train_images.shape)
        self._class_names = [data.class_names[c] for c in classes]
        self._all_class_names = list(data.class_names)
        # each split's uint8 pixels and labels, made a dataset when first read (see _split_set)
        self._pending = {
            "train": (
                take(data.train_images, self._split.train),
                data.train_labels[self._split.train],
                0,
            ),
            "val": (
                take(data.train_images, self._split.val),
                data.train_labels[self._split.val],
                1,
            ),
            "test": (
                take(data.test_images, self._split.test),
                data.test_labels[self._split.test],
                2,
            ),
        }
        self._sets: dict[str, ImageBatchDataset] = {}
        self._data = None  # the uint8 pool is no longer needed
        self._ready = True

    def _split_set(self, name: str) -> ImageBatchDataset:
        """The ``train``, ``val`` or ``test`` dataset, made on first use: a shifted split is
        held in float at the input size (1.4 GB for 29,500 images at 64 px), so a task pays
        only for the splits it reads."""
        self._ensure_setup()
        if name not in self._sets:
            images, labels, stream = self._pending.pop(name)
            self._sets[name] = self._dataset(images, labels, stream=stream)
        return self._sets[name]

    def split_size(self, name: str) -> int:
        """How many images the ``train``, ``val`` or ``test`` split holds, without making it."""
        self._ensure_setup()
        if name in self._sets:
            return len(self._sets[name])
        return len(self._pending[name][1])

    @property
    def train_set(self) -> ImageBatchDataset:
        """The labelled training split."""
        return self._split_set("train")

    @property
    def val_set(self) -> ImageBatchDataset:
        """The validation split."""
        return self._split_set("val")

    @property
    def test_set(self) -> ImageBatchDataset:
        """The test split."""
        return self._split_set("test")

    def _ensure_setup(self) -> None:
        if not self._ready:
            self.setup()

    # ---- what the rest of the framework reads ------------------------------------------

    @property
    def dataset_name(self) -> str:
        """The data set's registry name."""
        return self.dataset

    @property
    def split(self) -> SplitIndices:
        """The indices of the train/val/test split (original class ids in ``classes``)."""
        self._ensure_setup()
        return self._split

    @property
    def all_class_names(self) -> list[str]:
        """Names of every class of the data set (original class ids), selected or not."""
        self._ensure_setup()
        return list(self._all_class_names)

    def check_class_count(self, minimum: int, user: str) -> None:
        """Refuse, in one line, a selection of fewer than ``minimum`` classes: ``user`` (e.g.
        ``a classifier``) needs them."""
        count = self.num_classes
        if count >= minimum:
            return
        total = len(self.all_class_names)
        chosen = ", ".join(repr(n) for n in self.class_names)
        if total < minimum:
            raise DataError(
                f"{self.dataset} has {n_classes(total)} ({chosen}) but {user} needs at least "
                f"{minimum}"
            )
        raise ConfigError(
            f"{self.classes_key}={format_classes(self.classes_spec)} selects only "
            f"{n_classes(count)} ({chosen}) but {user} needs at least {minimum}: list "
            f"{minimum} or more of the {total} classes of {self.dataset}"
        )

    @property
    def num_classes(self) -> int:
        """Number of selected classes (labels are 0..num_classes-1)."""
        return len(self.split.classes)

    @property
    def class_names(self) -> list[str]:
        """Names of the selected classes, in label order."""
        self._ensure_setup()
        return list(self._class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's inputs."""
        self._ensure_setup()
        return self._input_shape

    @property
    def mean(self) -> list[float]:
        """Per-channel mean subtracted from the images."""
        self._ensure_setup()
        return list(self._mean)

    @property
    def std(self) -> list[float]:
        """Per-channel std the images are divided by."""
        self._ensure_setup()
        return list(self._std)

    def preprocessing(self) -> dict[str, Any]:
        """How one image file becomes a model input, as plain values (stored in checkpoints
        and exports; read by :func:`transferlab.data.inference.preprocess_file`)."""
        channels, height, _ = self.input_shape
        return {
            "version": PREPROCESSING_VERSION,
            "dataset": self.dataset_name,
            "decode_channels": int(self._native_channels),
            "channels": channels,
            "image_size": height,
            "resize": "decode" if self._resize_at_decode else "tensor",
            "mean": self.mean,
            "std": self.std,
            "class_names": self.class_names,
        }

    # ---- loaders ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The shuffling generator's state, saved in checkpoints so a resumed run draws the
        same batches as an uninterrupted one."""
        generator = getattr(self, "_train_generator", None)
        return {"train_generator": generator.get_state()} if generator is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_generator_state = state_dict.get("train_generator")

    def _train_generator_for_loader(self) -> torch.Generator:
        generator = torch.Generator().manual_seed(self.seed)
        restored = getattr(self, "_restored_generator_state", None)
        if restored is not None:
            generator.set_state(restored)
            self._restored_generator_state = None
        self._train_generator = generator
        return generator

    def loader(self, data: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        """A loader over ``data`` as this module batches its splits: shuffled by its seeded
        generator (whose state checkpoints keep), drawn with replacement up to
        ``min_samples_per_epoch`` when smaller, its collate and workers."""
        generator = self._train_generator_for_loader() if shuffle else None
        sampler = None
        if shuffle and self.min_samples_per_epoch and len(data) < self.min_samples_per_epoch:
            # a tiny labelled set: draw with replacement so an epoch has enough steps
            sampler = RandomSampler(
                data,
                replacement=True,
                num_samples=self.min_samples_per_epoch,
                generator=generator,
            )
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            generator=generator if sampler is None else None,
            collate_fn=keep_batch,
            num_workers=self.num_workers,
            drop_last=False,
            persistent_workers=self.num_workers > 0,
        )

    def _served(self, data: ImageBatchDataset) -> Dataset:
        """Raw pixels while a Trainer runs with this module (its batch hook prepares them on
        the device), else prepared inputs."""
        trainer = self.trainer
        driven = trainer is not None and trainer.datamodule is self
        return data.raw() if driven and trainer.state.status == TrainerStatus.RUNNING else data

    def prepare_batch(self, images: torch.Tensor) -> torch.Tensor:
        """Model inputs from a batch of this module's loaders (stored uint8 pixels are
        prepared on their device; prepared float inputs pass unchanged)."""
        self._ensure_setup()
        return self._batch_transform(images)

    def train_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self.loader(self._served(self.train_set), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader, or ``[]`` when there is no validation split."""
        self._ensure_setup()
        if len(self.val_set) == 0:
            return []
        return self.loader(self._served(self.val_set), self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self._ensure_setup()
        return self.loader(self._served(self.test_set), self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Prepare uint8 batches on their device (then cast as the trainer's precision casts
        inputs) and augment training batches; prepared eval batches pass unchanged."""
        trainer = self.trainer
        augment = self.augment is not None and trainer is not None and trainer.training
        if not isinstance(batch, (tuple, list)) or not isinstance(batch[0], torch.Tensor):
            return batch
        images, labels = batch
        if images.dtype != torch.uint8 and not augment:
            return batch
        if images.dtype == torch.uint8:
            images = self.prepare_batch(images)
            if trainer is not None:
                images = trainer.precision_plugin.convert_input(images)
        return (self.augment(images) if augment else images), labels
