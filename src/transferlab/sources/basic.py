"""Sources without pretrained weights: ``none`` (strategies that train from scratch) and
``random`` (a randomly initialised control for a transfer source)."""

from __future__ import annotations

from transferlab.sources.base import Source, register_source


@register_source("none")
class NoSource(Source):
    """Random initialisation, for strategies that start from scratch."""


@register_source("random")
class RandomSource(Source):
    """A randomly initialised backbone standing where a pretrained one would: the control that
    tells transfer from architecture."""
