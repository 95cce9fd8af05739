"""ImageNet weights from torchvision or timm, with one clear error when offline."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferlab.core.errors import SourceError
from transferlab.core.specs import IMAGENET_INPUTS
from transferlab.models import Backbone, backbone_kwargs, build_backbone, imagenet_weights_info
from transferlab.sources.base import Source, register_source

OFFLINE_CHOICES = (
    "offline choices: source=pretrain (pretrain on a data set here) or "
    "source=checkpoint source.path=<.ckpt|.safetensors>"
)


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
    """Build ``name`` with ImageNet weights, downloading them when online and uncached."""
    info = imagenet_weights_info(name, **kwargs)
    cached = _weights_cached(info)
    if not cached and is_offline():
        raise SourceError(
            f"ImageNet weights for {kwargs.get('model_name', name)} are {_cache_hint(info)} "
            f"and the network is off; download them once online, or use the {OFFLINE_CHOICES}"
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
    except SourceError:
        raise
    except Exception as err:  # network and hub failures come in many types
        raise SourceError(
            f"could not get ImageNet weights for {kwargs.get('model_name', name)} "
            f"({type(err).__name__}); they are {_cache_hint(info)}; {OFFLINE_CHOICES}"
        ) from None


@register_source("imagenet")
class ImageNetSource(Source):
    """torchvision's or timm's ImageNet weights for the configured model (RGB inputs with
    ImageNet statistics)."""

    requirement = IMAGENET_INPUTS

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
        return backbone, {"source": "imagenet"}
