"""The class-overlap guard of transfer runs: a source trained on classes of the target's own
data set must not have seen a target class, or the run's "N labels per class" would be a lie
(the source saw every training image of those classes, with labels for ``source=pretrain``).

:func:`check_source_overlap` runs before any source is built. ``source=autoencoder|ssl
source.data=target_pool`` trains on the target's own training pool without labels, the
intended low-label protocol, and is not checked. ``source.allow_overlap=true`` accepts an
overlap on purpose (e.g. Yosinski's BnB control); the run's ``source_info`` then records it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.data import ImageClassificationDataModule
from transferlab.data.splits import format_classes, n_classes, resolve_classes
from transferlab.sources.base import Source
from transferlab.sources.unlabelled import UnlabelledSource

log = logging.getLogger(__name__)

OVERRIDE = "source.allow_overlap=true"
# data sets whose identity is their folder: the same name with another root is another data set
FOLDER_DATASETS = ("image_folder",)


def _name(dataset: Any) -> str:
    return str(dataset).strip().lower().replace("-", "_")


def same_dataset(trained: Mapping[str, Any], target: ImageClassificationDataModule) -> bool:
    """Whether the source's images come from the target's data set (for an image folder: the
    same folder)."""
    name = _name(trained.get("dataset"))
    if name != target.dataset_name:
        return False
    if name not in FOLDER_DATASETS:
        return True
    roots = [trained.get("root"), target.root]
    if any(r is None for r in roots):
        return roots[0] == roots[1]
    return Path(str(roots[0])).expanduser().resolve() == Path(str(roots[1])).expanduser().resolve()


def _instead(source: Source) -> str:
    """What to do instead of an overlapping source, for the error line."""
    pool = ", source.data=target_pool" if isinstance(source, UnlabelledSource) else ""
    return (
        f"use source=imagenet{pool} or strategy=scratch, or set {OVERRIDE} to accept the "
        "overlap (recorded in the results)"
    )


def _seen(source: Source) -> str:
    return "images and labels" if source.kind == "pretrain" else "images"


def check_source_overlap(source: Source, target: ImageClassificationDataModule) -> dict[str, Any]:
    """Refuse, in one line, a source trained on target classes of the target's own data set,
    unless ``source.allow_overlap=true``. Returns what the run's ``source_info`` records:
    nothing, or ``source_allow_overlap`` and ``source_overlap_classes`` (original class ids)
    when the overlap was allowed."""
    allow = bool(source.cfg.get("allow_overlap", False))  # a bool: SourceTrainingOptions
    recorded: dict[str, Any] = (
        {"source_allow_overlap": True, "source_overlap_classes": []} if allow else {}
    )
    trained = source.trained_on()
    if trained is None or not same_dataset(trained, target):
        return recorded
    dataset, names = target.dataset_name, target.all_class_names
    spec = trained.get("classes")
    if target.classes_spec is None and not allow:
        raise ConfigError(
            f"source={source.kind} trains on source.classes={format_classes(spec)} of "
            f"{dataset}, but data.classes=null makes all {n_classes(len(names))} of {dataset} "
            f"target classes, so the source would see target {_seen(source)}: set data.classes "
            f"and source.classes to disjoint classes, {_instead(source)}"
        )
    seen = resolve_classes(spec, names, key="source.classes", dataset=dataset)
    overlap = sorted(set(seen) & set(target.split.classes))
    if not overlap:
        return recorded
    shown = ", ".join(repr(names[c]) for c in overlap)
    if not allow:
        raise ConfigError(
            f"source={source.kind} trains on target classes of {dataset} ({shown}): "
            f"source.classes={format_classes(spec)} and "
            f"data.classes={format_classes(target.classes_spec)} overlap, so the source would "
            f"see their {_seen(source)} beyond data.labels_per_class; make them disjoint, "
            f"{_instead(source)}"
        )
    log.warning("%s: source=%s trains on target classes %s", OVERRIDE, source.kind, shown)
    return {**recorded, "source_overlap_classes": overlap}
