"""Zero-shot methods by name: ``build_method(name, params, backbone=..., device=...)``. A new
method is a module in this package with a ``@register_method(name)`` class."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from transferlab.core.discovery import import_submodules
from transferlab.core.errors import ConfigError
from transferlab.zeroshot.methods.base import (
    ZEROSHOT_METHODS,
    ClassSet,
    ZeroShotMethod,
    register_method,
)
from transferlab.zeroshot.methods.module import ZeroShotModule

import_submodules(__name__)


def method_class(name: str) -> type[ZeroShotMethod]:
    """The method registered as ``name`` (a ConfigError naming the valid ones otherwise)."""
    return ZEROSHOT_METHODS.get(name)


def available_methods() -> list[str]:
    return ZEROSHOT_METHODS.names()


def method_options(name: str) -> list[str]:
    """The hyperparameters a method accepts."""
    params = inspect.signature(method_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "backbone", "device")]


def build_method(name: str, params: Mapping[str, Any], **context: Any) -> ZeroShotMethod:
    """Method ``name`` with hyperparameters ``params``; ``context`` (backbone, device) is passed
    to the methods that take it."""
    cls = method_class(name)
    accepted = method_options(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"zero-shot method {name!r} has no option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    signature = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in context.items() if k in signature}
    return cls(**params, **extra)


__all__ = [
    "ZEROSHOT_METHODS",
    "ClassSet",
    "ZeroShotMethod",
    "ZeroShotModule",
    "available_methods",
    "build_method",
    "method_class",
    "register_method",
]
