"""``source=checkpoint source.path=...``: the backbone weights of a file (a Lightning ``.ckpt``
of any earlier run or a ``.safetensors``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.models import Backbone
from transferlab.sources.base import Source, register_source
from transferlab.sources.weights import apply_backbone_state, check_finite, load_backbone_state


@register_source("checkpoint")
class CheckpointSource(Source):
    """The backbone weights stored in ``source.path``."""

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
