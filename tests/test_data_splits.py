"""The shared splitter: class selection, validation carving, labeled subsets, seeds."""

from __future__ import annotations

import pytest
import torch

from transferlab.core.errors import ConfigError, DataError
from transferlab.data import load_dataset, make_splits, remap_labels, resolve_classes

FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _split(data, classes=(5, 6, 7, 8, 9), **kwargs):
    return make_splits(
        data.train_labels, data.test_labels, list(classes), class_names=data.class_names, **kwargs
    )


def _per_class(labels: torch.Tensor, idx: torch.Tensor) -> dict[int, int]:
    values, counts = labels[idx].unique(return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def test_train_val_test_are_disjoint_and_within_the_classes(digits):
    s = _split(digits, labels_per_class=5, val_per_class=20, seed=3)
    assert not set(s.train.tolist()) & set(s.val.tolist())
    assert len(set(s.train.tolist())) == len(s.train)
    for idx, labels in (
        (s.train, digits.train_labels),
        (s.val, digits.train_labels),
        (s.test, digits.test_labels),
    ):
        assert idx.dtype == torch.int64
        assert set(labels[idx].tolist()) == {5, 6, 7, 8, 9}
    assert s.classes == [5, 6, 7, 8, 9]


def test_exact_counts_per_class(digits):
    s = _split(digits, labels_per_class=7, val_per_class=20)
    assert _per_class(digits.train_labels, s.train) == {c: 7 for c in range(5, 10)}
    assert _per_class(digits.train_labels, s.val) == {c: 20 for c in range(5, 10)}


def test_same_seed_same_subset_other_seed_other_subset(digits):
    a = _split(digits, labels_per_class=5, val_per_class=10, seed=1)
    b = _split(digits, labels_per_class=5, val_per_class=10, seed=1)
    c = _split(digits, labels_per_class=5, val_per_class=10, seed=2)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert not torch.equal(a.train, c.train)


def test_test_split_is_every_test_image_of_the_classes_whatever_the_seed(digits):
    tests = [_split(digits, labels_per_class=3, seed=s).test for s in range(4)]
    assert all(torch.equal(tests[0], t) for t in tests)
    expected = torch.nonzero(digits.test_labels >= 5).flatten()
    assert torch.equal(tests[0], expected)


def test_bigger_budget_extends_smaller_and_val_stays(digits):
    small = _split(digits, labels_per_class=3, val_per_class=10, seed=5)
    big = _split(digits, labels_per_class=9, val_per_class=10, seed=5)
    assert set(small.train.tolist()) < set(big.train.tolist())
    assert torch.equal(small.val, big.val)


def test_a_class_subset_does_not_depend_on_the_other_classes(digits):
    few = _split(digits, classes=[7], labels_per_class=4, seed=9)
    many = _split(digits, classes=range(10), labels_per_class=4, seed=9)
    sevens = many.train[digits.train_labels[many.train] == 7]
    assert torch.equal(few.train, sevens)


def test_label_fraction_is_stratified_with_at_least_one(digits):
    s = _split(digits, label_fraction=0.1, val_fraction=0.2)
    pool = _per_class(digits.train_labels, torch.arange(len(digits.train_labels)))
    counts = _per_class(digits.train_labels, s.train)
    vals = _per_class(digits.train_labels, s.val)
    for c in range(5, 10):
        assert vals[c] == round(0.2 * pool[c])
        assert counts[c] == max(1, round(0.1 * (pool[c] - vals[c])))
    tiny = _split(digits, label_fraction=0.001)
    assert _per_class(digits.train_labels, tiny.train) == {c: 1 for c in range(5, 10)}


def test_all_labels_and_no_val_by_default(digits):
    s = _split(digits, classes=range(10))
    assert len(s.train) == len(digits.train_labels) and len(s.val) == 0


def test_budget_too_large_names_the_counts():
    data = load_dataset("fashion_mnist")
    with pytest.raises(
        DataError,
        match=r"labels_per_class=6,000 but class 'Sandal' has only "
        r"5,980 training images after 20 for validation",
    ):
        _split(data, labels_per_class=6000, val_per_class=20)
    with pytest.raises(DataError, match="val_per_class=7000"):
        _split(data, val_per_class=7000)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels_per_class": 5, "label_fraction": 0.1},
        {"val_per_class": 5, "val_fraction": 0.1},
        {"labels_per_class": 0},
        {"label_fraction": 1.5},
        {"val_fraction": 1.0},
        {"labels_per_class": 2.5},
    ],
)
def test_bad_budgets_are_config_errors(digits, kwargs):
    with pytest.raises(ConfigError):
        _split(digits, **kwargs)


def test_resolve_classes_by_index_name_and_range():
    assert resolve_classes(None, FASHION) == list(range(10))
    assert resolve_classes([5, 7], FASHION) == [5, 7]
    assert resolve_classes(["Sandal", "Bag"], FASHION) == [5, 8]
    assert resolve_classes("5-9", FASHION) == [5, 6, 7, 8, 9]
    assert resolve_classes(["0-2", "Bag"], FASHION) == [0, 1, 2, 8]
    assert resolve_classes(["3"], FASHION) == [3]
    assert resolve_classes("T-shirt/top", FASHION) == [0]


def test_class_names_win_over_ranges():
    assert resolve_classes("1-2", ["a", "1-2", "b", "c"]) == [1]


@pytest.mark.parametrize("bad", [["Sandals"], [10], "3-12", [], [True], "9-5"])
def test_unknown_classes_list_the_valid_ones(bad):
    with pytest.raises(ConfigError, match="Ankle boot"):
        resolve_classes(bad, FASHION)


def test_duplicate_classes_are_rejected():
    with pytest.raises(ConfigError, match="more than once"):
        resolve_classes([5, "Sandal"], FASHION)
    with pytest.raises(ConfigError, match="more than once"):
        make_splits(torch.tensor([0, 1]), torch.tensor([0, 1]), [1, 1])


def test_remap_labels_follows_the_class_order():
    out = remap_labels(torch.tensor([7, 5, 9, 5]), [9, 5, 7])
    assert out.tolist() == [2, 1, 0, 1] and out.dtype == torch.int64
    with pytest.raises(DataError):
        remap_labels(torch.tensor([1]), [5])
