"""Loading a data set by name through a small registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from transferlab.data.cifar10 import load_cifar10
from transferlab.data.digits import load_digits_data
from transferlab.data.fashion_mnist import load_fashion_mnist
from transferlab.data.image_data import ImageData
from transferlab.data.image_folder import load_image_folder
from transferlab.errors import ConfigError

__all__ = ["ImageData", "available_datasets", "dataset_options", "load_dataset"]

Loader = Callable[..., ImageData]

DATASETS: dict[str, Loader] = {
    "digits": load_digits_data,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "image_folder": load_image_folder,
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (and ``data.dataset``)."""
    return sorted(DATASETS)


def _loader(name: str) -> Loader:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; valid: {', '.join(available_datasets())}")
    return DATASETS[key]


def dataset_options(name: str) -> list[str]:
    """The extra keyword options a data set's loader accepts (besides root and download)."""
    params = inspect.signature(_loader(name)).parameters
    return [p for p in params if p not in ("root", "download")]


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = True, **kwargs: object
) -> ImageData:
    """Load data set ``name`` as uint8 tensors; ``kwargs`` are the loader's own options."""
    loader = _loader(name)
    options = dataset_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        accepted = ", ".join(options) or "none"
        raise ConfigError(
            f"data set {name!r} has no option(s) {', '.join(unknown)}; "
            f"accepted data.dataset_kwargs: {accepted}"
        )
    return loader(root=root, download=download, **kwargs)
