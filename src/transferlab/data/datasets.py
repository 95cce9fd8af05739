"""Loading a data set by name through a small registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.data.cifar10 import load_cifar10
from transferlab.data.digits import load_digits_data
from transferlab.data.fashion_mnist import load_fashion_mnist
from transferlab.data.image_data import ImageData
from transferlab.data.image_folder import load_image_folder

__all__ = ["ImageData", "available_datasets", "dataset_options", "load_dataset"]

Loader = Callable[..., ImageData]

DATASETS: Registry[Loader] = Registry("data set")
DATASETS.register("digits", load_digits_data)
DATASETS.register("fashion_mnist", load_fashion_mnist)
DATASETS.register("cifar10", load_cifar10)
DATASETS.register("image_folder", load_image_folder)


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (and ``data.dataset``)."""
    return DATASETS.names()


def _loader(name: str) -> Loader:
    return DATASETS.get(str(name).strip().lower().replace("-", "_"))


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
