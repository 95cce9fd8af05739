"""Data sets, the shared splitter, batch augmentation and the Lightning data module."""

from transferlab.data.augment import BatchAugment
from transferlab.data.datamodule import ImageClassificationDataModule
from transferlab.data.datasets import ImageData, available_datasets, load_dataset
from transferlab.data.splits import SplitIndices, make_splits, remap_labels, resolve_classes

__all__ = [
    "BatchAugment",
    "ImageClassificationDataModule",
    "ImageData",
    "SplitIndices",
    "available_datasets",
    "load_dataset",
    "make_splits",
    "remap_labels",
    "resolve_classes",
]
