"""Where a backbone's starting weights come from: none, ImageNet, a checkpoint, a pretraining run.

:func:`prepare_backbone` is the one entry point: it builds the configured backbone and loads the
configured source into it, building (and caching) a pretraining source when needed.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from transferlab.errors import ConfigError
from transferlab.models import Backbone, build_backbone
from transferlab.sources.cache import ENTRY_META, ENTRY_WEIGHTS
from transferlab.sources.checkpoint import apply_backbone_state, load_backbone_state
from transferlab.sources.imagenet import build_imagenet_backbone
from transferlab.sources.pretrain import pretrain_source_key

log = logging.getLogger(__name__)

# Sources built on demand and cached: kind -> "module:function" of their
# ``ensure(source_cfg, model_cfg, input_spec, backbone_kwargs) -> (entry, built_now)``; the
# entry holds ``backbone.safetensors`` and ``source.json`` (see sources/cache.py).
CACHED_SOURCES: dict[str, str] = {
    "pretrain": "transferlab.sources.pretrain:ensure_pretrain_source",
    "autoencoder": "transferlab.sources.autoencoder:ensure_autoencoder_source",
    "gan": "transferlab.sources.gan:ensure_gan_source",
}
SOURCES = ("none", "random", "imagenet", "checkpoint", *CACHED_SOURCES)
MODEL_META_KEYS = ("name", "small_input", "min_input_size")

__all__ = [
    "CACHED_SOURCES",
    "SOURCES",
    "backbone_kwargs",
    "ensure_cached_source",
    "prepare_backbone",
    "pretrain_source_key",
]


def _ensure_function(kind: str) -> Callable[..., tuple[Path, bool]]:
    module_name, func_name = CACHED_SOURCES[kind].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def ensure_cached_source(
    source_cfg: Mapping[str, Any], model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
) -> tuple[Path, bool]:
    """The cache entry of a built-on-demand source (built now if missing)."""
    kind = str(source_cfg.get("name"))
    return _ensure_function(kind)(source_cfg, model_cfg, input_spec, backbone_kwargs(model_cfg))


def backbone_kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model config's builder keyword arguments (everything but name and input options)."""
    return {k: v for k, v in model_cfg.items() if k not in MODEL_META_KEYS}


def prepare_backbone(
    source_cfg: Mapping[str, Any],
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
) -> tuple[Backbone, dict[str, Any]]:
    """Build the backbone for ``input_spec`` (channels, image_size, normalize) with its source
    weights. Returns the backbone and a record of where the weights came from."""
    kind = str(source_cfg.get("name", "none"))
    if kind not in SOURCES:
        raise ConfigError(f"unknown source '{kind}'; valid: {', '.join(SOURCES)}")
    name, kwargs = str(model_cfg["name"]), backbone_kwargs(model_cfg)
    in_chans, size = int(input_spec["channels"]), int(input_spec["image_size"])
    small_input = model_cfg.get("small_input")
    if kind == "imagenet":
        backbone = build_imagenet_backbone(name, in_chans, size, small_input, **kwargs)
        return backbone, {"source": "imagenet"}
    backbone = build_backbone(
        name, in_chans=in_chans, input_size=size, small_input=small_input, **kwargs
    )
    if kind in ("none", "random"):  # random: a randomly initialised control for a source
        return backbone, {"source": kind}
    if kind == "checkpoint":
        path = source_cfg.get("path")
        if not path or path == "???":  # "???": Hydra's marker for a value not given
            raise ConfigError("source=checkpoint needs source.path=<file.ckpt|file.safetensors>")
        apply_backbone_state(backbone, load_backbone_state(path), origin=f"checkpoint {path}")
        return backbone, {"source": "checkpoint", "source_path": str(path)}
    entry, built = ensure_cached_source(source_cfg, model_cfg, input_spec)
    meta = json.loads((entry / ENTRY_META).read_text())
    state = load_file(str(entry / ENTRY_WEIGHTS))
    apply_backbone_state(backbone, state, origin=f"source cache entry {entry}")
    log.info(
        "source %s %s (source test acc %.3f)",
        entry.name,
        "built" if built else "reused from cache",
        meta.get("source_test_acc", float("nan")),
    )
    return backbone, {
        "source": kind,
        "source_key": meta.get("key"),
        "source_dir": str(entry),
        "source_built_now": built,
        "source_classes_seen": meta.get("classes_seen"),
        "source_test_acc": meta.get("source_test_acc"),
    }
