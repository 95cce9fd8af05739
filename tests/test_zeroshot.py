"""Zero-shot learning: semantics files, class splits, closed forms, metrics, leakage guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferlab.core.errors import ConfigError, DataError, SourceError
from transferlab.data.digits import load_digits_data
from transferlab.zeroshot.leakage import check_source_config, check_source_record
from transferlab.zeroshot.methods import ClassSet, build_method
from transferlab.zeroshot.methods.eszsl import eszsl_weights
from transferlab.zeroshot.methods.sae import sae_weights
from transferlab.zeroshot.metrics import gzsl_metrics, harmonic_mean, zsl_accuracy
from transferlab.zeroshot.semantics import class_semantics, read_attribute_csv, shipped_datasets
from transferlab.zeroshot.splits import DEFAULT_SPLITS, resolve_split

FMNIST = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10 = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
DIGITS = [str(d) for d in range(10)]


# ---- semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "names"), [("fashion_mnist", FMNIST), ("digits", DIGITS), ("cifar10", CIFAR10)]
)
def test_shipped_attributes_cover_every_class_and_tell_the_splits_apart(dataset, names) -> None:
    assert dataset in shipped_datasets()
    matrix, info = class_semantics("attributes", dataset, names)
    assert matrix.shape == (10, len(info["attributes"])) and set(matrix.unique().tolist()) == {0, 1}
    assert len({tuple(row) for row in matrix.tolist()}) == 10  # no two classes look alike
    split = resolve_split(None, dataset, names)
    # the premise of zero-shot learning, for the test and the validation stage: every held-out
    # class has attributes that the training classes show, and they tell the held-out apart
    for held_out, known in ((split.unseen, split.seen), (split.val, split.train)):
        covered = matrix[known].sum(0) > 0
        rows = matrix[held_out][:, covered]
        assert (rows.sum(1) > 0).all(), [names[c] for c in held_out]
        assert len({tuple(row) for row in rows.tolist()}) == len(held_out)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "attrs.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("class,a,b\n0,1,0\n1,0,1\n", r"no row for class\(es\) '2'"),
        (
            "class,a,b\n0,1,0\n1,0\n2,1,1\n",
            r"row 3 \('1'\) has 1 attribute values; the header names 2",
        ),
        ("class,a,b\n0,1,0\n1,x,1\n2,1,1\n", r"row 3 column 'a': 'x' is not a finite number"),
        ("class,a,b\n0,1,0\n7,0,1\n2,1,1\n", r"row 3: unknown class '7'"),
        ("class,a,b\n0,1,0\n0,0,1\n2,1,1\n", r"row 3: class '0' appears a second time"),
        ("class,a,b\n0,1,0\n1,nan,1\n2,1,1\n", r"row 3 column 'a'"),
    ],
)
def test_attribute_file_errors_name_the_row(tmp_path, body, message) -> None:
    with pytest.raises(DataError, match=message) as info:
        read_attribute_csv(_csv(tmp_path, body), ["0", "1", "2"])
    assert "\n" not in str(info.value)


def test_user_attribute_file_is_read_in_class_order(tmp_path) -> None:
    path = _csv(tmp_path, "class,round,tall\n2,0.5,1\n0,1,0\n1,0,2.5\n")
    matrix, info = class_semantics(str(path), "anything", ["0", "1", "2"])
    assert matrix.tolist() == [[1, 0], [0, 2.5], [0.5, 1]]
    assert info["attributes"] == ["round", "tall"]


def test_a_data_set_without_semantics_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="no shipped class attributes.*semantics=text"):
        class_semantics("attributes", "image_folder", ["a", "b"])
    with pytest.raises(ConfigError, match="use attributes, text or a path to a CSV"):
        class_semantics("atributes", "digits", DIGITS)


# ---- splits ---------------------------------------------------------------------------------


def test_default_split_carves_validation_from_seen() -> None:
    split = resolve_split(None, "fashion_mnist", FMNIST)
    assert split.unseen == DEFAULT_SPLITS["fashion_mnist"]["unseen"]
    assert set(split.val) <= set(split.seen) and not set(split.seen) & set(split.unseen)
    assert sorted(split.seen + split.unseen) == list(range(10))
    assert split.train == [c for c in split.seen if c not in split.val]
    user = resolve_split({"unseen": ["Bag", "Trouser"], "val": "3-4"}, "fashion_mnist", FMNIST)
    assert user.unseen == [8, 1] and 1 not in user.seen


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"seen": [0, 1, 2, 3], "unseen": [3, 4]}, r"seen and unseen classes overlap \('3'\)"),
        ({"unseen": []}, "split.unseen is empty"),
        ({"seen": [], "unseen": [1]}, "split.seen is empty"),
        ({"seen": list(range(10))}, "no unseen classes"),
        ({"unseen": [0, 1], "val": [1, 2]}, r"validation classes must be seen classes; '1'"),
        ({"unseen": [0, 1], "val": [2]}, "at least 2 validation classes"),
        ({"unseen": [12]}, "split.unseen: class index 12 is out of range"),
    ],
)
def test_split_errors(spec, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        resolve_split(spec, "digits", DIGITS)
    assert "\n" not in str(info.value)


# ---- closed forms on problems whose answer is known ------------------------------------------


def test_eszsl_closed_form_is_the_minimiser() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(6).repeat_interleave(20)
    x = torch.randn(len(labels), 12, generator=g, dtype=torch.float64) + s[labels] @ torch.randn(
        5, 12, generator=g, dtype=torch.float64
    )
    gamma, lam = 0.3, 0.7
    v = eszsl_weights(x, labels, s, gamma, lam).double()
    y = -torch.ones(len(x), 6, dtype=torch.float64)
    y[torch.arange(len(x)), labels] = 1
    # the gradient of ||X V S^T - Y||^2 + g ||V S^T||^2 + l ||X V||^2 + g l ||V||^2 vanishes
    grad = x.T @ (x @ v @ s.T - y) @ s + gamma * v @ s.T @ s + lam * x.T @ x @ v
    grad = grad + gamma * lam * v
    assert grad.abs().max() < 1e-4 * (x.T @ y @ s).abs().max()


def test_eszsl_recognises_unseen_classes_when_features_are_linear_in_attributes() -> None:
    """Seen class k has attribute k alone; unseen classes have two attributes each; features
    are a linear map M of the attributes. With vanishing regularisers M V = 2 I - 1 1^T (the
    +-1 targets), so an unseen image scores 2 s_x.s_u - 2: highest for its own class."""
    seen = torch.eye(5)
    pairs = [(0, 1), (2, 3), (1, 4), (0, 3)]
    unseen = torch.zeros(4, 5)
    for row, (i, j) in enumerate(pairs):
        unseen[row, [i, j]] = 2**-0.5
    mapping = torch.randn(5, 12, generator=torch.Generator().manual_seed(0))
    seen_y, unseen_y = torch.arange(5).repeat_interleave(10), torch.arange(4).repeat(3)
    method = build_method("eszsl", {"gamma": 1e-6, "lam": 1e-6, "center": False}).fit(
        seen[seen_y] @ mapping,
        seen_y,
        ClassSet(list("abcde"), seen),
        ClassSet(list("wxyz"), unseen),
    )
    expected = 2 * torch.eye(5) - torch.ones(5, 5)
    assert torch.allclose(mapping @ method.weights, expected, atol=1e-3)
    scores = method.zsl_scores(unseen[unseen_y] @ mapping)
    assert torch.equal(scores.argmax(1), unseen_y)
    assert torch.allclose(scores.max(1).values, torch.zeros(len(unseen_y)), atol=1e-3)


def test_sae_recovers_an_exact_semantic_autoencoder() -> None:
    g = torch.Generator().manual_seed(1)
    encoder = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=torch.float64))[0].T
    s = torch.randn(200, 5, generator=g, dtype=torch.float64)  # per-sample semantics
    x = s @ encoder  # X = W^T S and W X = S: both reconstruction terms are zero
    for lam in (0.1, 10.0):
        assert torch.allclose(sae_weights(x, s, lam).double(), encoder, atol=1e-4)
    semantics = torch.randn(8, 5, generator=g)
    labels = torch.arange(8).repeat_interleave(10)
    feats = semantics[labels] @ encoder.float()
    method = build_method("sae", {"lam": 1.0, "space": "semantic"}).fit(
        feats[labels < 5], labels[labels < 5], ClassSet(["s"] * 5, semantics[:5]),
        ClassSet(["u"] * 3, semantics[5:]),
    )  # fmt: skip
    assert torch.equal(method.zsl_scores(feats[labels >= 5]).argmax(1), labels[labels >= 5] - 5)


def test_unknown_method_and_option_are_one_line_errors() -> None:
    with pytest.raises(
        ConfigError, match="valid: bilinear, class_mean, clip, eszsl, fclswgan, sae"
    ):
        build_method("devise", {})
    with pytest.raises(ConfigError, match="no option.*gama.*accepted: gamma, lam"):
        build_method("eszsl", {"gama": 1})


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_on_hand_made_predictions() -> None:
    # 2 seen (columns 0, 1) and 2 unseen (2, 3) classes
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 3, 3])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0, 0, 0, 3, 2])
    scores = torch.nn.functional.one_hot(predicted, 4).float()
    m = gzsl_metrics(scores, labels, num_seen=2)
    assert m["gzsl_seen"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["gzsl_unseen"] == pytest.approx((0.25 + 0.5) / 2)
    assert m["gzsl_h"] == pytest.approx(harmonic_mean(0.75, 0.375)) and harmonic_mean(0, 0) == 0
    # calibrated stacking: unseen images whose runner-up is right flip to it; too much flips all
    scores = torch.tensor([[3.0, 0, 0, 0], [0, 3, 0, 0], [1, 0, 0.5, 0], [0, 1, 0, 0.5]])
    labels = torch.arange(4)
    assert gzsl_metrics(scores, labels, 2) == {"gzsl_seen": 1, "gzsl_unseen": 0, "gzsl_h": 0}
    assert gzsl_metrics(scores, labels, 2, gamma=0.8)["gzsl_h"] == 1.0
    assert gzsl_metrics(scores, labels, 2, gamma=3.5)["gzsl_seen"] == 0.0
    # ZSL: unseen images among unseen classes only, per-class mean
    unseen_scores = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]])
    assert zsl_accuracy(unseen_scores, torch.tensor([0, 0, 0, 0, 1, 1])) == pytest.approx(0.75)


# ---- leakage guard --------------------------------------------------------------------------


def test_leakage_guard_refuses_sources_that_saw_unseen_classes(tmp_path) -> None:
    unseen = [3, 7, 9]
    all_classes = {"name": "pretrain", "dataset": "digits", "classes": None}
    with pytest.raises(SourceError, match=r"leakage: .*unseen class\(es\) '3', '7', '9'"):
        check_source_config(all_classes, "digits", unseen, DIGITS, allow_unverified=False)
    seen_only = {**all_classes, "classes": [0, 1, 2, 4, 5, 6, 8]}
    check_source_config(seen_only, "digits", unseen, DIGITS, allow_unverified=False)
    for kind in ("imagenet", "checkpoint"):
        with pytest.raises(SourceError, match="cannot verify.*allow_unverified_source=true"):
            check_source_config({"name": kind}, "digits", unseen, DIGITS, False)
        check_source_config({"name": kind}, "digits", unseen, DIGITS, allow_unverified=True)
    # after loading: the classes the cache entry recorded are checked too
    info = {"source": "pretrain", "source_dataset": "digits", "source_classes_seen": [0, 7]}
    with pytest.raises(SourceError, match=r"unseen class\(es\) '7'"):
        check_source_record(info, "digits", unseen, DIGITS, allow_unverified=False)
    info["source_classes_seen"] = [0, 1]
    assert check_source_record(info, "digits", unseen, DIGITS, allow_unverified=False)
    with pytest.raises(SourceError, match="cannot verify"):  # seen on another data set
        check_source_record(
            {**info, "source_dataset": "fashion_mnist"}, "digits", unseen, DIGITS, False
        )
    assert check_source_record({"source": "random"}, "digits", unseen, DIGITS, False)


def test_digits_class_names_match_the_shipped_file() -> None:
    assert load_digits_data().class_names == DIGITS
