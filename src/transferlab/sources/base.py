"""The :class:`Source` protocol: where a backbone's starting weights come from, one class per
``source=`` option, registered by name; :class:`CachedSource` is the base of sources that are
built by a training run on first use and cached under a hash of the config that builds them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from transferlab.core.errors import SourceError
from transferlab.core.registry import Registry
from transferlab.core.schema import SourceTrainingOptions, check_model
from transferlab.core.specs import InputRequirement
from transferlab.core.store import config_hash
from transferlab.models import Backbone, backbone_kwargs, build_backbone
from transferlab.sources.cache import ENTRY_META, ENTRY_WEIGHTS, ensure_entry
from transferlab.sources.weights import apply_backbone_state, check_finite

log = logging.getLogger(__name__)

REBUILD_HINT = "the entry is broken: delete that directory and run again to rebuild it"


class Source:
    """A ``source=`` option: ``prepare(model_cfg, input_spec) -> (backbone, source_info)``
    builds the configured backbone for ``input_spec`` with this source's weights;
    ``source_info`` records where the weights came from (it goes into the results file).

    ``requirement`` is what the weights need of the inputs (e.g. ImageNet: RGB, ImageNet
    statistics); ``extras`` are objects the source hands to the target module (e.g. an
    autoencoder's decoder)."""

    kind: ClassVar[str] = ""
    requirement: ClassVar[InputRequirement] = InputRequirement()
    # whether it can hand over a classifier head over its own classes (regularizer=cotuning)
    has_classifier_head: ClassVar[bool] = False

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = dict(cfg)

    def trained_on(self) -> Mapping[str, Any] | None:
        """The data (``dataset``, ``root``, ``classes``) whose class subset this source trains
        on, or None when it trains on no classes of a data set (no weights, ImageNet, a file,
        an autoencoder on the target's own unlabelled pool). The class-overlap check reads
        it."""
        return None

    def build(self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]) -> Backbone:
        """The configured backbone with fresh (random) weights."""
        return build_backbone(
            str(model_cfg["name"]),
            in_chans=int(input_spec["channels"]),
            input_size=int(input_spec["image_size"]),
            small_input=model_cfg.get("small_input"),
            **backbone_kwargs(model_cfg),
        )

    def prepare(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Backbone, dict[str, Any]]:
        return self.build(model_cfg, input_spec), {"source": self.kind}

    def extras(
        self, info: Mapping[str, Any], backbone: Backbone, input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Objects for the target module (default: none)."""
        return {}

    def classifier_head(self, info: Mapping[str, Any], backbone: Backbone) -> nn.Module:
        """The source's own classifier over ``backbone``'s pooled features (logits of the
        source classes), trained with the weights ``prepare`` gave ``backbone``, for
        ``regularizer=cotuning`` and scores such as LEEP; :class:`NoSourceHead` (one line
        saying why) when the source has none."""
        raise NoSourceHead(f"source={self.kind} has no classifier head of its own")


class NoSourceHead(SourceError):
    """A source without a classification head of its own (random weights, an autoencoder,
    a backbone whose ImageNet classifier is not kept, an entry built before heads were kept)."""


def linear_head(state: Mapping[str, torch.Tensor], prefix: str, origin: str) -> nn.Linear:
    """An ``nn.Linear`` holding ``state``'s ``<prefix>weight`` and ``<prefix>bias``; one line
    naming ``origin`` when they are missing."""
    weight, bias = state.get(f"{prefix}weight"), state.get(f"{prefix}bias")
    if weight is None or bias is None or weight.dim() != 2:
        raise NoSourceHead(f"{origin} holds no classifier head ({prefix}weight and {prefix}bias)")
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": bias})
    return head


SOURCES: Registry[type[Source]] = Registry("source")


def register_source(kind: str) -> Callable[[type[Source]], type[Source]]:
    """Class decorator: register a :class:`Source` as ``source=<kind>``."""

    def add(cls: type[Source]) -> type[Source]:
        cls.kind = kind
        return SOURCES.register(kind, cls)

    return add


class CachedSource(Source):
    """A source built by a training run on first use and cached in ``source.cache_dir`` under
    ``<kind>-<key>``, the key a hash of :meth:`identity` (what decides the built weights)."""

    def identity(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def key(self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]) -> str:
        """The cache key: a hash of the config that builds the source."""
        return config_hash(self.identity(model_cfg, input_spec))

    def train(
        self,
        entry: Path,
        weights_path: Path,
        model_cfg: Mapping[str, Any],
        input_spec: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Train the source, write the backbone weights to ``weights_path`` (and any other
        files into ``entry``); return the entry's metadata."""
        raise NotImplementedError

    def check(self, model_cfg: Mapping[str, Any]) -> None:
        """Refuse a model this source cannot be built with (before anything is built)."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        check_model(SourceTrainingOptions, "source", self.cfg)

    def describe(self) -> str:
        return f"{self.cfg.get('dataset')} classes {self.cfg.get('classes')}"

    def trained_on(self) -> Mapping[str, Any] | None:
        """This source's config: its ``dataset``, ``root`` and ``classes``."""
        return self.cfg if self.cfg.get("dataset") is not None else None

    def ensure(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Path, bool]:
        """The cache entry of this source, built first if missing: ``(entry, built_now)``."""
        self.check(model_cfg)
        key = self.key(model_cfg, input_spec)
        log.info("source %s-%s (%s)", self.kind, key, self.describe())
        return ensure_entry(
            self.cfg["cache_dir"],
            self.kind,
            key,
            self.identity(model_cfg, input_spec),
            lambda entry, weights: self.train(entry, weights, model_cfg, input_spec),
        )

    def prepare(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Backbone, dict[str, Any]]:
        backbone = self.build(model_cfg, input_spec)
        entry, built = self.ensure(model_cfg, input_spec)
        meta = json.loads((entry / ENTRY_META).read_text())
        state = load_file(str(entry / ENTRY_WEIGHTS))
        check_finite(state, f"source={self.kind} (cache entry {entry})", REBUILD_HINT)
        apply_backbone_state(backbone, state, origin=f"source cache entry {entry}")
        log.info(
            "source %s %s (source test acc %.3f)",
            entry.name,
            "built" if built else "reused from cache",
            meta.get("source_test_acc", float("nan")),
        )
        return backbone, {
            "source": self.kind,
            "source_key": meta.get("key"),
            "source_dir": str(entry),
            "source_built_now": built,
            "source_classes_seen": meta.get("classes_seen"),
            "source_dataset": meta.get("dataset"),
            "source_test_acc": meta.get("source_test_acc"),
        }
