"""Seen / validation / unseen class splits and the images each stage of a zero-shot run uses.

The protocol of Xian et al. (2018), "Zero-Shot Learning: the Good, the Bad and the Ugly":
validation classes are carved from the seen classes; hyperparameters are chosen by training on
the remaining seen classes and testing zero-shot on the validation classes; the final model is
trained on all seen classes and tested on the unseen ones. Images of unseen classes are never
used for training; the test images of seen classes (for generalized ZSL) come from the data
set's test pool, so they are never trained on either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from transferlab.core.errors import ConfigError
from transferlab.data.splits import make_splits, resolve_classes

# The default split of each data set (class ids): unseen (test) classes and validation classes
# (carved from the seen ones); seen = all classes but the unseen. See docs/zeroshot.md.
DEFAULT_SPLITS: dict[str, dict[str, list[int]]] = {
    # unseen: Trouser, Pullover, Sandal; validation: Shirt, Ankle boot
    "fashion_mnist": {"unseen": [1, 2, 5], "val": [6, 9]},
    # unseen: 3, 7, 9; validation: 4, 6
    "digits": {"unseen": [3, 7, 9], "val": [4, 6]},
    # unseen: cat, ship, truck; validation: airplane, dog
    "cifar10": {"unseen": [3, 8, 9], "val": [0, 5]},
}


@dataclass(frozen=True)
class ClassSplit:
    """Class ids of the data set: ``seen`` (= ``train`` + ``val``), ``val`` and ``unseen``."""

    seen: list[int]
    val: list[int]
    unseen: list[int]

    @property
    def train(self) -> list[int]:
        """Seen classes that are not validation classes (the training classes of the
        hyperparameter-selection stage)."""
        return [c for c in self.seen if c not in self.val]

    def as_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """A JSON-able description with class names."""
        return {
            key: [int(c) for c in ids]
            for key, ids in (("seen", self.seen), ("val", self.val), ("unseen", self.unseen))
        } | {
            f"{key}_names": [class_names[c] for c in ids]
            for key, ids in (("seen", self.seen), ("val", self.val), ("unseen", self.unseen))
        }


def _resolve(name: str, spec: Any, class_names: Sequence[str]) -> list[int] | None:
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)) and not spec:
        raise ConfigError(f"strategy.split.{name} is empty; give at least one class (or null)")
    try:
        return resolve_classes(spec, class_names)
    except ConfigError as err:
        raise ConfigError(f"strategy.split.{name}: {err}") from None


def _names(ids: Sequence[int], class_names: Sequence[str]) -> str:
    return ", ".join(repr(class_names[c]) for c in ids)


def resolve_split(
    spec: Mapping[str, Any] | None, dataset: str, class_names: Sequence[str]
) -> ClassSplit:
    """The class split from ``strategy.split`` (``seen``, ``unseen``, ``val``: class ids, names or
    ranges; null = the data set's default, seen = all classes but the unseen)."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"seen", "unseen", "val"})
    if unknown:
        raise ConfigError(f"unknown strategy.split key(s) {unknown}; accepted: seen, unseen, val")
    default = DEFAULT_SPLITS.get(dataset)
    unseen = _resolve("unseen", spec.get("unseen"), class_names)
    seen = _resolve("seen", spec.get("seen"), class_names)
    val = _resolve("val", spec.get("val"), class_names)
    if unseen is None and seen is None and default is None:
        raise ConfigError(
            f"data set {dataset!r} has no default zero-shot split; set strategy.split.unseen "
            "and strategy.split.val (class ids or names)"
        )
    if unseen is None and seen is not None:
        unseen = [c for c in range(len(class_names)) if c not in seen]
    elif unseen is None:
        unseen = list(default["unseen"])
    if seen is None:
        seen = [c for c in range(len(class_names)) if c not in unseen]
    overlap = sorted(set(seen) & set(unseen))
    if overlap:
        raise ConfigError(
            f"seen and unseen classes overlap ({_names(overlap, class_names)}); "
            "a class is either seen or unseen"
        )
    if not seen:
        raise ConfigError("the split has no seen classes; strategy.split.seen must not be empty")
    if not unseen:
        raise ConfigError(
            "the split has no unseen classes; strategy.split.unseen must not be empty"
        )
    if val is None:
        val = [c for c in (default or {}).get("val", []) if c in seen]
    outside = [c for c in val if c not in seen]
    if outside:
        raise ConfigError(
            f"validation classes must be seen classes; {_names(outside, class_names)} "
            "are not in strategy.split.seen"
        )
    if len(val) < 2 or len(seen) - len(val) < 2:
        raise ConfigError(
            f"the split needs at least 2 validation classes (carved from the seen ones) and 2 "
            f"seen classes left to train on; got val={val}, seen={seen}: set strategy.split.val"
        )
    return ClassSplit(seen=list(seen), val=list(val), unseen=list(unseen))


@dataclass
class StageIndices:
    """Image indices (into the data set's pools) for the two stages of a zero-shot run."""

    train: torch.Tensor  # training pool, seen classes: the labelled training images
    holdout: torch.Tensor  # training pool, seen classes: carved out, never trained on
    test: torch.Tensor  # test pool, seen and unseen classes


def stage_indices(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    split: ClassSplit,
    labels_per_class: int | None,
    label_fraction: float | None,
    holdout_per_class: int,
    seed: int,
    class_names: Sequence[str],
) -> StageIndices:
    """Per seen class, ``holdout_per_class`` training-pool images are held out (the seen-class
    images of the validation-stage GZSL test and the validation-class test images) and up to
    ``labels_per_class`` (or ``label_fraction`` of the rest) more are the labelled training
    images. No training-pool image of an unseen class is selected."""
    parts = make_splits(
        train_labels,
        test_labels,
        split.seen,
        labels_per_class=labels_per_class,
        label_fraction=label_fraction,
        val_per_class=holdout_per_class,
        seed=seed,
        class_names=class_names,
    )
    everything = torch.as_tensor(split.seen + split.unseen)
    test = torch.nonzero(torch.isin(torch.as_tensor(test_labels), everything)).flatten()
    return StageIndices(train=parts.train, holdout=parts.val, test=test)
