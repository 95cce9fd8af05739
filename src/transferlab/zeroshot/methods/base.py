"""The interface every zero-shot method implements (the trained ones are LightningModules: see
module.py for the Lightning skeleton)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from transferlab.core.registry import Registry


@dataclass
class ClassSet:
    """Classes in column order: their names and semantic vectors ``(K, a)`` (None for methods
    that read names only)."""

    names: list[str]
    semantics: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.names)


class ZeroShotMethod:
    """Fit on seen-class training inputs; score inputs against seen + unseen classes.

    ``fit`` gets the unseen classes' names and semantics (never their images): generative
    methods synthesise features from them. ``scores`` returns ``(N, S + U)`` with the seen
    classes first; ``zsl_scores`` ``(N, U)`` for classification among unseen classes only.
    """

    #: what ``fit``/``scores`` take: "features" (frozen backbone features), "images"
    #: (preprocessed images, the method owns a backbone) or "raw" (uint8 images)
    inputs = "features"
    #: whether the method needs the run's source backbone (False: it brings its own network)
    uses_source = True
    #: whether it learns from the seen classes (False: the final stage reuses the fitted one)
    trains = True
    #: whether it scores against class semantics (attributes, text embeddings)
    uses_semantics = True
    #: options whose value is one list (not a grid of values to search)
    list_options: tuple[str, ...] = ()
    #: the grid searched when the config has no ``strategy.<method>`` block (a method added
    #: after the shipped config, whose block would change every zero-shot run hash)
    default_grid: dict[str, Any] = {}

    @classmethod
    def source_info(cls, options: dict[str, Any], allow_unverified: bool) -> dict[str, Any]:
        """What stands in for ``source_info`` when the method brings its own network."""
        return {}

    def fit(
        self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet
    ) -> ZeroShotMethod:
        raise NotImplementedError

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores among the unseen classes (default: the unseen columns of ``scores``)."""
        return self.scores(x)[:, self.num_seen :]

    num_seen: int = 0


ZEROSHOT_METHODS: Registry[type[ZeroShotMethod]] = Registry("zero-shot method")


def register_method(name: str) -> Callable[[type[ZeroShotMethod]], type[ZeroShotMethod]]:
    """Class decorator: register a :class:`ZeroShotMethod` as ``strategy.method=<name>``."""
    return ZEROSHOT_METHODS.register(name)
