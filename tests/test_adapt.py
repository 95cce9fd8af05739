"""strategy=adapt: domain shifts, the gradient reversal layer, the methods and the runner."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch

from transferlab.core.errors import ConfigError
from transferlab.data import ImageClassificationDataModule
from transferlab.data.batching import TensorBatchDataset
from transferlab.data.domains import UnlabeledImages, build_domains, disjoint_parts, make_loader
from transferlab.data.shift import DomainShift, parse_shift
from transferlab.models import build_backbone
from transferlab.modules.adapt import (
    ADAPT_METHODS,
    AdaBNModule,
    DANNModule,
    PseudoLabelModule,
    TentModule,
    batchnorm_affine_parameters,
)
from transferlab.modules.freezing import FreezeSchedule
from transferlab.modules.grl import GradientReversal, dann_lambda, grad_reverse
from transferlab.tasks import run_training
from transferlab.tasks.adapt import train_loaders

DIGITS = {"dataset": "digits", "classes": None, "val_per_class": 10, "batch_size": 32}


# ---- shifts ------------------------------------------------------------------------------


def _images(n: int = 6, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_invert_rotate_blur_are_exact_and_keep_shape_and_range() -> None:
    x = _images()
    assert torch.equal(DomainShift(invert=True).apply(x), 1.0 - x)
    rotated = DomainShift(rotate=90).apply(x)
    assert torch.allclose(rotated, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    blurred = DomainShift(blur_sigma=1.0).apply(x)
    assert blurred.shape == x.shape and blurred.std() < x.std()
    both = DomainShift(invert=True, noise_std=0.5, rotate=30, blur_sigma=0.5).apply(x)
    assert both.shape == x.shape and both.min() >= 0.0 and both.max() <= 1.0
    assert torch.equal(x, _images())  # the input is not modified


def test_noise_is_deterministic_per_seed_and_split() -> None:
    x = _images()
    shift = DomainShift(noise_std=0.3, seed=1)
    assert torch.equal(shift.apply(x, stream=0), shift.apply(x, stream=0))
    assert not torch.equal(shift.apply(x, stream=0), shift.apply(x, stream=1))
    assert not torch.equal(shift.apply(x), DomainShift(noise_std=0.3, seed=2).apply(x))
    residual = DomainShift(noise_std=0.1).apply(torch.full((200, 1, 8, 8), 0.5)) - 0.5
    assert abs(float(residual.std()) - 0.1) < 0.005  # 5 std from the clipping bounds


def test_parse_shift_validates_with_one_line() -> None:
    assert parse_shift(None) is None
    assert parse_shift({"invert": False, "noise_std": 0.0}) is None  # identity = no shift
    shift = parse_shift({"invert": True, "noise_std": 0.3, "seed": 0})
    assert (
        shift == DomainShift(invert=True, noise_std=0.3) and shift.describe() == "invert+noise0.3"
    )
    for bad, match in [
        ({"flip": True}, "accepted: invert, noise_std"),
        ({"noise_std": -1}, "noise_std"),
        ({"invert": "yes"}, "true or false"),
        ("invert", "mapping"),
    ]:
        with pytest.raises(ConfigError, match=match) as info:
            parse_shift(bad)
        assert "\n" not in str(info.value)


def test_datamodule_shift_is_off_by_default_and_uses_clean_statistics() -> None:
    clean = ImageClassificationDataModule(**DIGITS)
    shifted = ImageClassificationDataModule(**DIGITS, shift={"invert": True})
    clean.setup(), shifted.setup()
    assert clean.shift is None and clean.mean == shifted.mean and clean.std == shifted.std
    assert torch.equal(clean.test_set.labels, shifted.test_set.labels)
    # (1 - x - m) / s = (1 - 2m) / s - (x - m) / s: the inverted image, same normalisation
    mean, std = clean.mean[0], clean.std[0]
    expected = (1 - 2 * mean) / std - clean.test_set.images
    assert torch.allclose(shifted.test_set.images, expected, atol=1e-5)


def test_a_shifted_split_is_made_when_first_read_and_the_same_in_any_order() -> None:
    shift = {"noise_std": 0.2, "rotate": 20}
    test_first = ImageClassificationDataModule(**DIGITS, shift=shift)
    test_first.setup()
    sizes = [test_first.split_size(name) for name in ("train", "val", "test")]
    assert sizes == [len(test_first.split.train), 100, len(test_first.split.test)]
    test = test_first.test_set.images
    assert sorted(test_first._sets) == ["test"]  # an evaluation makes only the test split
    train_first = ImageClassificationDataModule(**DIGITS, shift=shift)
    train_first.setup()
    train, val = train_first.train_set.images, train_first.val_set.images
    assert torch.equal(train_first.test_set.images, test)  # each split draws its own noise
    assert torch.equal(test_first.train_set.images, train)
    assert torch.equal(test_first.val_set.images, val)
    assert len(train) == sizes[0] and test_first.split_size("train") == sizes[0]


# ---- gradient reversal -------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_negates_gradients() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.equal(x.grad, -0.25 * weights)
    x.grad = None
    (GradientReversal(2.0)(x) * weights).sum().backward()
    assert torch.equal(x.grad, -2.0 * weights)


def test_dann_lambda_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    assert math.isclose(dann_lambda(0.5), 2 / (1 + math.exp(-5)) - 1)
    assert 0.999 < dann_lambda(1.0) < 1.0 and dann_lambda(2.0) == dann_lambda(1.0)


# ---- methods -----------------------------------------------------------------------------


def _backbone():
    return build_backbone("small_cnn", in_chans=1, input_size=8, width=8, feature_dim=16)


def _fit(module, loaders, steps: int = 3) -> None:
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=loaders)


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.fixture
def toy_loaders():
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(64, 1, 8, 8, generator=gen), torch.arange(64) % 3
    source = make_loader(TensorBatchDataset(images, labels), 16, shuffle=True)
    target = make_loader(UnlabeledImages(torch.randn(64, 1, 8, 8, generator=gen) + 2), 16, True)
    return {"source": source, "target": target}


def test_tent_changes_only_batchnorm_affine_parameters_and_statistics(toy_loaders) -> None:
    module = TentModule(_backbone(), 3)
    before = _snapshot(module)
    _fit(module, {"target": toy_loaders["target"]})
    changed = _changed(before, module)
    bn_ids = {id(p) for p in batchnorm_affine_parameters(module)}
    affine = {n for n, p in module.named_parameters() if id(p) in bn_ids}
    assert affine == {n for n, p in module.named_parameters() if p.requires_grad}
    stats = {k for k in before if k.endswith(("running_mean", "running_var"))}
    assert changed - {k for k in changed if k.endswith("num_batches_tracked")} == affine | stats


def test_adabn_changes_only_batchnorm_statistics(toy_loaders) -> None:
    module = AdaBNModule(_backbone(), 3)
    before = _snapshot(module)
    _fit(module, {"target": toy_loaders["target"]})
    changed = _changed(before, module)
    stats = {k for k in before if k.endswith(("running_mean", "running_var"))}
    assert changed - {k for k in changed if k.endswith("num_batches_tracked")} == stats
    assert not any(p.requires_grad for p in module.parameters())
    assert module.parameter_counts()["trainable_params"] == 0


def test_dann_and_pseudo_label_train_backbone_head_and_discriminator(toy_loaders) -> None:
    dann = DANNModule(_backbone(), 3)
    before = _snapshot(dann)
    _fit(dann, toy_loaders)
    changed = _changed(before, dann)
    for prefix in ("backbone.", "head.", "discriminator."):
        assert any(k.startswith(prefix) and "running" not in k for k in changed), prefix
    pseudo = PseudoLabelModule(_backbone(), 3, threshold=0.0)
    before = _snapshot(pseudo)
    _fit(pseudo, toy_loaders)
    assert any(k.startswith("head.") for k in _changed(before, pseudo))


def test_dann_takes_a_freeze_schedule_lp_ft(toy_loaders) -> None:
    """Any module takes a FreezeSchedule: DANN with LP-FT trains only the head and the domain
    discriminator in its first epoch, then the backbone too."""
    dann = DANNModule(_backbone(), 3, freeze=FreezeSchedule("lp_ft", lp_epochs=1))
    stages = len(dann.backbone.stages())
    assert dann.frozen_stages_at(0) == stages and dann.frozen_stages_at(1) == 0
    before = _snapshot(dann)
    _fit(dann, toy_loaders, steps=2)  # two steps, both in epoch 0
    changed = {k for k in _changed(before, dann) if "running" not in k and "batches" not in k}
    assert not any(k.startswith("backbone.") for k in changed)
    assert any(k.startswith("head.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)


def test_distribution_alignment_takes_pseudo_labels_from_an_over_predicted_class() -> None:
    """With alignment, a class the model predicts for most target images is divided by its
    running mean share, so images it wins only narrowly go to their runner-up class."""
    module = PseudoLabelModule(_backbone(), 3, alignment=True, alignment_momentum=0.0)
    # class 0 wins every image; image 1 only narrowly (0.45 against 0.40)
    probs = torch.tensor([[0.90, 0.05, 0.05], [0.45, 0.40, 0.15], [0.80, 0.10, 0.10]])
    logits = probs.log()
    module.train()
    aligned = module.pseudo_label_probabilities(logits)
    assert torch.allclose(module.target_prediction_mean, probs.mean(0))  # momentum 0: batch mean
    assert torch.allclose(aligned.sum(1), torch.ones(3))
    assert aligned.argmax(1).tolist() == [0, 1, 0]
    module.eval()  # evaluation leaves the running mean alone
    module.pseudo_label_probabilities(torch.zeros(2, 3))
    assert torch.allclose(module.target_prediction_mean, probs.mean(0))
    plain = PseudoLabelModule(_backbone(), 3)  # alignment off: the softmax as it is
    assert torch.allclose(plain.pseudo_label_probabilities(logits), probs)


def test_target_batches_with_labels_are_refused() -> None:
    module = DANNModule(_backbone(), 3)
    images = torch.randn(4, 1, 8, 8)
    batch = {"source": (images, torch.zeros(4, dtype=torch.long)), "target": (images, None)}
    with pytest.raises(ValueError, match="no labels"):
        module.training_step(batch, 0)
    with pytest.raises(ValueError, match="source"):
        module.training_step({"target": images}, 0)


def test_label_free_methods_never_see_target_labels() -> None:
    domains = build_domains(DIGITS, {"invert": True}, seed=0, target_fraction=0.5, min_input_size=4)
    for name, method in ADAPT_METHODS.items():
        if method.module is None or method.target_batches == "labeled":
            continue
        loaders = train_loaders(method, domains, 16, seed=0)
        target_batch = next(iter(loaders["target"]))
        assert isinstance(target_batch, torch.Tensor), name  # images only
        assert set(loaders) == ({"source", "target"} if method.source_batches else {"target"})

    def train_dann() -> dict[str, torch.Tensor]:
        L.seed_everything(0, verbose=False)
        module = DANNModule(_backbone(), domains.num_classes)
        _fit(module, train_loaders(ADAPT_METHODS.get("dann"), domains, 16, seed=0), steps=4)
        return module.state_dict()

    first = train_dann()
    domains.target_train.labels = torch.randint(0, 10, domains.target_train.labels.shape)
    second = train_dann()  # scrambled target labels: the very same weights
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_disjoint_parts_split_every_class() -> None:
    labels = torch.arange(40) % 4
    source, target = disjoint_parts(labels, 0.25, seed=0)
    assert set(source.tolist()).isdisjoint(target.tolist())
    assert sorted(source.tolist() + target.tolist()) == list(range(40))
    assert torch.bincount(labels[target]).tolist() == [2, 2, 2, 2]  # round(0.25 * 10) each
    with pytest.raises(ConfigError, match="target_fraction"):
        disjoint_parts(labels, 1.0, seed=0)


# ---- the runner --------------------------------------------------------------------------

QUICK = (
    "strategy=adapt",
    "strategy.source_epochs=2",
    "trainer.max_epochs=1",
    "data.labels_per_class=20",
    "data.classes=null",
)


def test_adapt_end_to_end_writes_results_and_reuses_the_source(make_cfg, tmp_path) -> None:
    records = {}
    for method in ("source_only", "dann", "tent"):
        out = tmp_path / method
        records[method] = run_training(make_cfg(*QUICK, f"strategy.method={method}", out=out), out)
        saved = json.loads((out / "results.json").read_text())
        assert saved["identity"]["method"] == method and saved["identity"]["shift"] == "invert"
        assert 0.0 <= saved["metrics"]["test/acc"] <= 1.0
        assert "test/acc_per_class_mean" in saved["metrics"]
    keys = {r["source_info"]["source_key"] for r in records.values()}
    assert len(keys) == 1  # one source model for every method of a seed
    assert not records["dann"]["source_info"]["source_built_now"]
    assert records["source_only"]["epochs_trained"] == 0 and records["dann"]["epochs_trained"] == 1
    assert len(records["source_only"]["test_details"]["class_names"]) == 10


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("strategy.method=magic", "valid: adabn, dann, oracle, pseudo_label, source_only, tent"),
        ("strategy.select_on=test", "source_val, target_val, last"),
        ("strategy.target_shift.invert=false", "no domain to adapt to"),
        ("source=imagenet", "source=none"),
        ("+strategy.dann.depth=3", "strategy.dann has an option"),
        ("strategy.freeze.mode=half", "unknown finetune mode 'half'"),
        ("+strategy.freeze.lp_epoch=2", "strategy.freeze.lp_epoch is not an option"),
    ],
)
def test_bad_settings_fail_with_one_line(make_cfg, tmp_path, override, match) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        run_training(make_cfg(*QUICK, override), tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "results.json").exists()


def _gains_over_source_only(make_cfg, tmp_path, method: str, *overrides: str) -> torch.Tensor:
    """Target test accuracy of ``method`` minus source-only's, seeds 0, 1, 2 of fmnist_adapt."""
    gains = []
    for seed in (0, 1, 2):
        acc = {}
        for name in ("source_only", method):
            out = tmp_path / f"{name}-{seed}"
            cfg = make_cfg(
                "experiment=fmnist_adapt", f"strategy.method={name}", f"seed={seed}", *overrides
            )
            acc[name] = run_training(cfg, out)["metrics"]["test/acc"]
        gains.append(acc[method] - acc["source_only"])
    return torch.tensor(gains)


@pytest.mark.slow
def test_tent_beats_source_only_on_noisy_fashion_mnist(make_cfg, tmp_path) -> None:
    """The fmnist_adapt setting (Gaussian noise std 0.5), 3 seeds: Tent's gain over the same
    source model is larger than its seed-to-seed spread (measured: see docs/adapt.md). Three
    epochs: Tent's chosen epoch is the first with 3 or 20 (the same accuracies)."""
    gains = _gains_over_source_only(make_cfg, tmp_path, "tent", "trainer.max_epochs=3")
    assert (gains > 0.1).all(), gains  # measured: +0.32, +0.19, +0.38
    assert gains.mean() > 2 * gains.std(), gains


@pytest.mark.slow
def test_dann_beats_source_only_on_noisy_fashion_mnist(make_cfg, tmp_path) -> None:
    """fmnist_adapt as shipped (20 epochs, a source per seed): DANN gains over source-only on
    most seeds and on average. Not on every seed: adversarial training is unstable here, and
    seed 0 ends below source-only (the published 5-seed interval includes zero; docs/adapt.md)."""
    gains = _gains_over_source_only(make_cfg, tmp_path, "dann")
    # measured 2026-12-01 (2-core VM): -0.028, +0.370, +0.120; published run: -0.106, +0.036, +0.368
    assert (gains > 0).sum() >= 2, gains
    assert gains.mean() > 0.05, gains
