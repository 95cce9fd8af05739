"""``source=checkpoint source.path=...``: the backbone weights of a file (a Lightning ``.ckpt``
of any earlier run or a ``.safetensors``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.models import Backbone
from transferlab.sources.base import Source, linear_head, register_source
from transferlab.sources.weights import (
    apply_backbone_state,
    check_finite,
    load_backbone_state,
    load_state,
)

HEAD_PREFIX = "head.fc."  # a classifier run's head in its checkpoint or export


@register_source("checkpoint")
class CheckpointSource(Source):
    """The backbone weights stored in ``source.path`` (and, for ``regularizer=cotuning``, the
    classifier head of the run that wrote them)."""

    has_classifier_head = True

    def classifier_head(self, info: Mapping[str, Any], backbone: Backbone) -> nn.Module:
        path = info["source_path"]
        return linear_head(load_state(path), HEAD_PREFIX, f"source.path={path}")

    def prepare(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Backbone, dict[str, Any]]:
        path = self.cfg.get("path")
        if not path or path == "???":  # "???": Hydra's marker for a value not given
            raise ConfigError("source=checkpoint needs source.path=<file.ckpt|file.safetensors>")
        backbone = self.build(model_cfg, input_spec)
        state = load_backbone_state(path)
        check_finite(
            state,
            f"source.path={path}",
            "the run that wrote them diverged; use another checkpoint (e.g. an earlier epoch's)",
        )
        apply_backbone_state(backbone, state, origin=f"checkpoint {path}")
        return backbone, {"source": "checkpoint", "source_path": str(path)}
