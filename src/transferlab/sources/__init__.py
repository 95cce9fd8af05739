"""Where a backbone's starting weights come from: one :class:`Source` per ``source=`` option
(``none``, ``random``, ``imagenet``, ``checkpoint``, and the cached pretraining runs
``pretrain``, ``autoencoder``, ``gan``, ``ssl``), registered by name.

:func:`prepare_backbone` builds the configured backbone and loads the configured source into it,
building (and caching) a pretraining source when needed. A new source is one module in this
package with a ``@register_source(kind)`` class, plus a YAML file in ``conf/source/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferlab.core.discovery import import_submodules
from transferlab.core.specs import InputRequirement
from transferlab.models import Backbone
from transferlab.sources.base import SOURCES, CachedSource, Source, register_source
from transferlab.sources.pretrain import pretrain_source_key
from transferlab.sources.target_classes import check_source_overlap

import_submodules(__name__)

__all__ = [
    "SOURCES",
    "CachedSource",
    "Source",
    "check_source_overlap",
    "ensure_cached_source",
    "make_source",
    "prepare_backbone",
    "pretrain_source_key",
    "register_source",
    "source_requirement",
]


def make_source(source_cfg: Mapping[str, Any]) -> Source:
    """The source a ``source`` config node describes (a ConfigError for an unknown name)."""
    return SOURCES.get(str(source_cfg.get("name", "none")))(source_cfg)


def source_requirement(kind: str) -> InputRequirement:
    """What ``source=<kind>``'s weights need of the inputs."""
    return SOURCES.get(kind).requirement


def prepare_backbone(
    source_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
) -> tuple[Backbone, dict[str, Any]]:
    """Build the backbone for ``input_spec`` (channels, image_size, normalize) with its source
    weights. Returns the backbone and a record of where the weights came from."""
    return make_source(source_cfg).prepare(model_cfg, input_spec)


def ensure_cached_source(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> tuple[Path, bool]:
    """The cache entry of a built-on-demand source (built now if missing)."""
    source = make_source(source_cfg)
    if not isinstance(source, CachedSource):
        raise TypeError(f"source={source.kind} is not built on demand")
    return source.ensure(model_cfg, input_spec)
