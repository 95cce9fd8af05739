"""Zero-shot methods by name: ``build_method(name, params, backbone=..., device=...)``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from transferlab.errors import ConfigError
from transferlab.zeroshot.methods.base import ClassSet, ZeroShotMethod
from transferlab.zeroshot.methods.bilinear import Bilinear
from transferlab.zeroshot.methods.eszsl import ESZSL
from transferlab.zeroshot.methods.fclswgan import FCLSWGAN
from transferlab.zeroshot.methods.sae import SAE

METHODS: dict[str, type[ZeroShotMethod]] = {
    "eszsl": ESZSL,
    "sae": SAE,
    "bilinear": Bilinear,
    "fclswgan": FCLSWGAN,
}


def _method_class(name: str) -> type[ZeroShotMethod]:
    if name == "clip":  # imports open_clip only when asked for
        from transferlab.zeroshot.methods.clip import CLIPZeroShot

        return CLIPZeroShot
    if name not in METHODS:
        raise ConfigError(
            f"unknown zero-shot method {name!r}; valid: {', '.join(available_methods())}"
        )
    return METHODS[name]


def available_methods() -> list[str]:
    return sorted([*METHODS, "clip"])


def method_options(name: str) -> list[str]:
    """The hyperparameters a method accepts."""
    params = inspect.signature(_method_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "backbone", "device")]


def build_method(name: str, params: Mapping[str, Any], **context: Any) -> ZeroShotMethod:
    """Method ``name`` with hyperparameters ``params``; ``context`` (backbone, device) is passed
    to the methods that take it."""
    cls = _method_class(name)
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


__all__ = ["METHODS", "ClassSet", "ZeroShotMethod", "available_methods", "build_method"]
