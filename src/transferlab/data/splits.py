"""The one splitter every run uses: class selection, validation carving, labeled subsets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from transferlab.core.errors import ConfigError, DataError

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


@dataclass
class SplitIndices:
    """int64 indices: ``train``/``val`` into the training pool, ``test`` into the test pool."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    classes: list[int]


def _valid_hint(class_names: Sequence[str]) -> str:
    shown = ", ".join(f"{i}={n!r}" for i, n in enumerate(class_names))
    return f"valid: indices 0-{len(class_names) - 1}, names ({shown}) or a range like '0-4'"


def _resolve_one(item: Any, class_names: Sequence[str], where: str) -> list[int]:
    count = len(class_names)
    if isinstance(item, str):
        if item in class_names:
            return [list(class_names).index(item)]
        match = _RANGE.match(item)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high or high >= count:
                raise ConfigError(
                    f"{where}class range {item!r} is not within 0-{count - 1}; "
                    f"{_valid_hint(class_names)}"
                )
            return list(range(low, high + 1))
        if item.strip().isdigit():
            item = int(item.strip())
        else:
            raise ConfigError(f"{where}unknown class {item!r}; {_valid_hint(class_names)}")
    if isinstance(item, bool) or not isinstance(item, int):
        raise ConfigError(
            f"{where}class {item!r} is neither an index nor a name; {_valid_hint(class_names)}"
        )
    if not 0 <= item < count:
        raise ConfigError(f"{where}class index {item} is out of range; {_valid_hint(class_names)}")
    return [int(item)]


def resolve_classes(
    classes: Any,
    class_names: Sequence[str],
    key: str | None = None,
    dataset: str | None = None,
) -> list[int]:
    """Class ids (in the given order) from None (all), ints, names or ranges like ``"0-4"``.

    ``key`` is the config key the classes come from (``data.classes``, ``source.classes``) and
    ``dataset`` the data set's name: errors then name both (``source.classes=[0, 12]: digits
    has 10 classes: class index 12 is out of range; ...``)."""
    if classes is None:
        return list(range(len(class_names)))
    items = [classes] if isinstance(classes, (str, int)) else list(classes)
    if not items:
        raise ConfigError(
            f"{key or 'data.classes'} is empty; use null for all classes or "
            f"{_valid_hint(class_names)}"
        )
    count = len(class_names)
    where = f"{key}={format_classes(classes)}: " if key else ""
    if dataset:
        where += f"{dataset} has {n_classes(count)}: "
    resolved = [c for item in items for c in _resolve_one(item, class_names, where)]
    duplicates = sorted({c for c in resolved if resolved.count(c) > 1})
    if duplicates:
        names = ", ".join(repr(class_names[c]) for c in duplicates)
        raise ConfigError(
            f"{key or 'data.classes'} lists a class more than once ({names}); give each class once"
        )
    return resolved


def n_classes(count: int) -> str:
    """``1 class``, ``10 classes``."""
    return f"{count} class{'es' if count != 1 else ''}"


def format_classes(classes: Any) -> str:
    """A ``classes`` value as the command line shows it: ``[0, 1]``, ``0-4``, ``null``."""
    if classes is None:
        return "null"
    if isinstance(classes, (list, tuple)):
        return "[" + ", ".join(str(c) for c in classes) + "]"
    return str(classes)


def remap_labels(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Map original class ids to 0..K-1 in the order of ``classes``."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    size = max([*classes, int(labels.max()) if labels.numel() else 0]) + 1
    table = torch.full((size,), -1, dtype=torch.int64)
    table[torch.as_tensor(list(classes), dtype=torch.int64)] = torch.arange(len(classes))
    mapped = table[labels]
    if (mapped < 0).any():
        missing = sorted(set(labels[mapped < 0].tolist()))
        raise DataError(f"labels {missing} are not among the selected classes {list(classes)}")
    return mapped


def class_orders(labels: torch.Tensor, classes: Sequence[int], seed: int) -> list[torch.Tensor]:
    """Per class, its sample indices in a seeded random order.

    One permutation of the whole pool is drawn, so a class's order does not depend on which
    other classes are selected.
    """
    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(labels), generator=generator)
    shuffled = labels[perm]
    return [perm[shuffled == c] for c in classes]


def _name(class_id: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return str(class_id)


def stratified_holdout(
    labels: torch.Tensor,
    fraction: float,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (keep, holdout) split holding out ``round(fraction * n)`` (>= 1) of each class."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ConfigError(f"test_fraction={fraction!r} is invalid; use a number in (0, 1)")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    classes = sorted(set(labels.tolist()))
    keep, hold = [], []
    for c, order in zip(classes, class_orders(labels, classes, seed)):
        if len(order) < 2:
            raise DataError(
                f"class {_name(c, class_names)!r} has only {len(order)} image; "
                "each class needs at least 2 to hold out a test split"
            )
        n_hold = min(max(1, round(fraction * len(order))), len(order) - 1)
        hold.append(order[:n_hold])
        keep.append(order[n_hold:])
    return torch.cat(keep).sort().values, torch.cat(hold).sort().values


def _check_count(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is invalid; use an integer >= {minimum} or null")
    return int(value)


def _check_fraction(name: str, value: Any, allow_one: bool) -> float | None:
    if value is None:
        return None
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or value < 0 or value > 1 or (value == 1 and not allow_one):
        bounds = "[0, 1]" if allow_one else "[0, 1)"
        raise ConfigError(f"{name}={value!r} is invalid; use a number in {bounds} or null")
    return float(value)


def _check_budget_args(
    labels_per_class: Any, label_fraction: Any, val_per_class: Any, val_fraction: Any
) -> tuple[int | None, float | None, int, float]:
    labels_per_class = _check_count("labels_per_class", labels_per_class, 1)
    label_fraction = _check_fraction("label_fraction", label_fraction, allow_one=True)
    if label_fraction == 0:
        raise ConfigError(
            "label_fraction=0 leaves no labeled images; use a number in (0, 1] or null for all"
        )
    if labels_per_class is not None and label_fraction is not None:
        raise ConfigError(
            "labels_per_class and label_fraction are both set; set one of them "
            "(the other null), or both null for all labeled images"
        )
    val_per_class = _check_count("val_per_class", val_per_class, 0) or 0
    val_fraction = _check_fraction("val_fraction", val_fraction, allow_one=False) or 0.0
    if val_per_class and val_fraction:
        raise ConfigError(
            "val_per_class and val_fraction are both set; set one of them "
            "(the other null), or both null for no validation split"
        )
    return labels_per_class, label_fraction, val_per_class, val_fraction


def make_splits(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    classes: Sequence[int] | None,
    labels_per_class: int | None = None,
    label_fraction: float | None = None,
    val_per_class: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> SplitIndices:
    """Split the selected classes: validation first, then the labeled subset from the rest.

    Per class, one seeded order of its training images is drawn; validation takes its head and
    the labeled subset the next images, so a larger budget extends a smaller one. The test split
    is every test-pool image of the selected classes, independent of ``seed``.
    ``class_names`` only makes error messages readable.
    """
    lpc, lfrac, vpc, vfrac = _check_budget_args(
        labels_per_class, label_fraction, val_per_class, val_fraction
    )
    train_labels = torch.as_tensor(train_labels, dtype=torch.int64)
    test_labels = torch.as_tensor(test_labels, dtype=torch.int64)
    if classes is None:
        count = len(class_names) if class_names is not None else int(train_labels.max()) + 1
        classes = list(range(count))
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes {classes} lists a class more than once; give each class once")
    train, val = [], []
    for c, order in zip(classes, class_orders(train_labels, classes, seed)):
        name, total = _name(c, class_names), len(order)
        n_val = vpc or (max(1, round(vfrac * total)) if vfrac else 0)
        if n_val >= total:
            raise DataError(
                f"{'val_per_class' if vpc else 'val_fraction'}="
                f"{vpc or vfrac} but class {name!r} has only {total:,} training "
                "images; at least 1 must stay for training"
            )
        left = total - n_val
        after = f" after {n_val:,} for validation" if n_val else ""
        if lpc is not None and lpc > left:
            raise DataError(
                f"labels_per_class={lpc:,} but class {name!r} has only {left:,} "
                f"training images{after}"
            )
        if lpc is not None:
            n_lab = lpc
        else:
            n_lab = max(1, round(lfrac * left)) if lfrac else left
        val.append(order[:n_val])
        train.append(order[n_val : n_val + n_lab])
    test = torch.nonzero(torch.isin(test_labels, torch.as_tensor(classes))).flatten()
    return SplitIndices(
        train=torch.cat(train).sort().values,
        val=torch.cat(val).sort().values,
        test=test.to(torch.int64),
        classes=classes,
    )
