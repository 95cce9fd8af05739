"""The leakage guard: the backbone of a zero-shot run must never have seen an unseen class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transferlab.core.errors import SourceError
from transferlab.data.splits import resolve_classes

# sources that start from no training data at all
UNTRAINED_SOURCES = ("none", "random")
OVERRIDE = "strategy.allow_unverified_source=true"


def _refuse_overlap(
    classes_seen: Sequence[int], unseen: Sequence[int], names: Sequence[str]
) -> None:
    overlap = sorted(set(int(c) for c in classes_seen) & set(unseen))
    if overlap:
        shown = ", ".join(repr(names[c]) for c in overlap)
        raise SourceError(
            f"leakage: the source was trained on unseen class(es) {shown}; a zero-shot backbone "
            "must come from seen classes only: keep strategy.restrict_source_to_seen=true (the "
            "default) or set source.classes to seen classes"
        )


def refuse_unverifiable(what: str, allow: bool) -> None:
    if not allow:
        raise SourceError(
            f"leakage guard: cannot verify that {what} never saw an unseen class; use "
            f"source=pretrain (trained on the seen classes) or source=random, or set {OVERRIDE} "
            "to accept it (the run is then recorded as unverified)"
        )


def restricted_source(
    source_cfg: Mapping[str, Any], dataset: str, seen: Sequence[int], restrict: bool
) -> dict[str, Any]:
    """The source config with a same-data-set ``pretrain`` source restricted to the seen
    classes (when ``restrict``)."""
    source = dict(source_cfg)
    if restrict and source.get("name") == "pretrain" and source.get("dataset") == dataset:
        source["classes"] = [int(c) for c in seen]
    return source


def check_source_config(
    source_cfg: Mapping[str, Any],
    dataset: str,
    unseen: Sequence[int],
    class_names: Sequence[str],
    allow_unverified: bool,
) -> None:
    """Before any weights are built or loaded: refuse a source whose config shows it would see
    unseen classes, or one that cannot be verified (unless ``allow_unverified``)."""
    kind = str(source_cfg.get("name", "none"))
    if kind in UNTRAINED_SOURCES:
        return
    if kind != "pretrain":
        refuse_unverifiable(f"source={kind}", allow_unverified)
        return
    if source_cfg.get("dataset") != dataset:
        refuse_unverifiable(
            f"a source pretrained on {source_cfg.get('dataset')!r}", allow_unverified
        )
        return
    seen = resolve_classes(
        source_cfg.get("classes"), class_names, key="source.classes", dataset=dataset
    )
    _refuse_overlap(seen, unseen, class_names)


def check_source_record(
    source_info: Mapping[str, Any],
    dataset: str,
    unseen: Sequence[int],
    class_names: Sequence[str],
    allow_unverified: bool,
) -> bool:
    """After loading: check the classes the source recorded as seen (``source_classes_seen``
    on ``source_dataset``, from its cache entry). Returns whether the
    source was verified (False only when ``allow_unverified`` let an unverifiable one pass)."""
    kind = str(source_info.get("source", "none"))
    if kind in UNTRAINED_SOURCES:
        return True
    classes_seen = source_info.get("source_classes_seen")
    if classes_seen is None or source_info.get("source_dataset") != dataset:
        refuse_unverifiable(
            f"source {kind} (no record of its classes on {dataset!r})", allow_unverified
        )
        return False
    _refuse_overlap(classes_seen, unseen, class_names)
    return True
