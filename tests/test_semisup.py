"""strategy=semisup (docs/semisup.md): FixMatch and the pseudo-label baseline on the unlabelled
target pool."""

from __future__ import annotations

import csv
from typing import Any

import pytest
import torch

from transferlab.data.datasets import load_dataset
from transferlab.data.strong_augment import StrongAugment
from transferlab.data.target import target_datamodule, target_pool
from transferlab.data.unlabelled_pool import NO_LABEL, WithUnlabelledPool
from transferlab.models import build_backbone
from transferlab.modules.pseudo_labels import pseudo_label_loss
from transferlab.modules.registry import check_strategy_config
from transferlab.modules.semisup import SemisupModule
from transferlab.tasks import run_training, to_plain

DIGITS = {"dataset": "digits", "classes": [5, 6, 7, 8, 9], "labels_per_class": 3}
DIGITS |= {"val_per_class": 20, "batch_size": 8, "augment": {"crop_padding": 1}}


def _module(**options: Any) -> SemisupModule:
    backbone = build_backbone("small_cnn", in_chans=1, input_size=8, width=4, feature_dim=8)
    return SemisupModule(backbone, 3, **options)


def _logged(module: SemisupModule, batch: dict[str, Any]) -> dict[str, float]:
    logged: dict[str, float] = {}
    module.log = lambda name, value, **_: logged.__setitem__(name, value)  # type: ignore[method-assign]
    loss = module.training_step(batch, 0)
    loss.backward()
    return {
        "loss": float(loss.detach()),
        **{k: float(torch.as_tensor(v).detach()) for k, v in logged.items() if k != "train/acc"},
    }


def _batch(views: tuple[str, ...]) -> dict[str, Any]:
    torch.manual_seed(0)
    labelled = (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    return {"labelled": labelled, "unlabelled": {v: torch.randn(12, 1, 8, 8) for v in views}}


@pytest.mark.parametrize("method", ["fixmatch", "pseudo_label"])
def test_step_computes_both_losses_and_the_mask_rate(method: str) -> None:
    views = ("weak", "strong") if method == "fixmatch" else ("weak",)
    every = _logged(_module(method=method, threshold=1e-6, lambda_u=2.0), _batch(views))
    assert every["train/mask_rate"] == 1.0 and every["train/loss_u"] > 0
    assert every["loss"] == pytest.approx(every["train/loss_x"] + 2.0 * every["train/loss_u"])
    none = _logged(_module(method=method, threshold=1.0), _batch(views))
    assert none["train/mask_rate"] == 0.0 and none["train/loss_u"] == 0.0
    assert none["loss"] == pytest.approx(none["train/loss_x"])


def test_pseudo_label_loss_masks_and_averages_over_all_images() -> None:
    probabilities = torch.tensor([[0.97, 0.03], [0.6, 0.4], [0.01, 0.99]])
    logits = torch.zeros(3, 2)
    loss, mask = pseudo_label_loss(probabilities, logits, 0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    assert float(loss) == pytest.approx(2 * torch.log(torch.tensor(2.0)).item() / 3)


def test_fixmatch_trains_the_strong_view_on_the_weak_views_labels() -> None:
    module = _module(threshold=1e-6).eval()  # BatchNorm's running statistics: one function
    batch = _batch(("weak", "strong"))
    weak, strong = batch["unlabelled"]["weak"], batch["unlabelled"]["strong"]
    with torch.no_grad():
        pseudo = module(weak).argmax(1)
        expected = torch.nn.functional.cross_entropy(module(strong), pseudo)
    assert _logged(module, batch)["train/loss_u"] == pytest.approx(float(expected), rel=1e-4)


def test_strong_augment_draws_per_image_and_keeps_shape_dtype_and_range() -> None:
    torch.manual_seed(0)
    mean, std = [0.3], [0.2]
    image = (torch.rand(1, 1, 28, 28) - 0.3) / 0.2
    batch = image.expand(64, -1, -1, -1).contiguous()
    out = StrongAugment(mean=mean, std=std)(batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 32  # each image its own operations and Cutout square
    pixels = out * 0.2 + 0.3
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    torch.manual_seed(0)
    again = StrongAugment(mean=mean, std=std)(batch)
    torch.manual_seed(0)
    assert torch.equal(StrongAugment(mean=mean, std=std)(batch), again)
    plain = StrongAugment(num_ops=0, cutout=0.0, mean=mean, std=std)(batch)
    assert torch.allclose(plain, batch, atol=0.51 / 255 / 0.2)  # only the uint8 rounding


def test_unlabelled_loader_never_yields_validation_or_test_images() -> None:
    labelled, _ = target_datamodule(DIGITS, seed=1)
    pool = target_pool(DIGITS, seed=1)
    val, train = set(labelled.split.val.tolist()), set(pool.split.train.tolist())
    assert not val & train and set(labelled.split.train.tolist()) <= train
    assert pool.split.val.tolist() == labelled.split.val.tolist()
    data = WithUnlabelledPool(labelled, pool.train_set.images, 2, ["weak"], seed=1)
    held_out = torch.cat([labelled.val_set.images, labelled.test_set.images]).flatten(1)
    seen = 0
    for _ in range(3):  # three epochs: every batch of the unlabelled loader
        for images, labels in data.unlabelled_loader(len(pool.train_set) // 16 + 1):
            assert (labels == NO_LABEL).all()
            flat = images.flatten(1)
            assert not (flat[:, None, :] == held_out[None]).all(-1).any()
            seen += len(images)
    assert seen >= 3 * len(pool.train_set)


def test_the_pool_is_every_target_training_image_but_the_validation_split() -> None:
    pool = target_pool(DIGITS, seed=0)
    labels = torch.as_tensor(load_dataset("digits").train_labels)
    target = torch.isin(labels, torch.arange(5, 10)).nonzero().squeeze(1)
    both = torch.cat([pool.split.train, pool.split.val]).sort().values
    assert torch.equal(both, target) and len(pool.train_set) == len(pool.split.train)


@pytest.mark.parametrize(
    ("method", "more"),
    [
        ("fixmatch", []),
        ("pseudo_label", []),
        ("fixmatch", ["source=random", "strategy.mode=linear_probe", "data.augment.hflip=true"]),
    ],
)
def test_strategy_runs_fast_dev_run(make_cfg, tmp_path, method: str, more: list[str]) -> None:
    overrides = ["strategy=semisup", f"strategy.method={method}", "debug=fast_dev_run", *more]
    record = run_training(make_cfg(*overrides), tmp_path)
    assert record["status"] == "debug" and 0.0 <= record["metrics"]["test/acc"] <= 1.0
    assert record["identity"]["method"] == method and record["identity"]["strategy"] == "semisup"
    views = ["weak", "strong"] if method == "fixmatch" else ["weak"]
    assert record["unlabelled_pool"]["views"] == views
    assert record["unlabelled_pool"]["images"] > 400


def test_fixmatch_trains_for_real_on_digits_well_above_chance(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "strategy=semisup",
        "strategy.mu=2",
        "strategy.threshold=0.9",
        "data.labels_per_class=5",
        "data.batch_size=16",
        "data.min_samples_per_epoch=64",
        "source.max_epochs=3",
        "trainer.max_epochs=6",
    )
    record = run_training(cfg, tmp_path)
    assert record["status"] == "completed"
    assert record["metrics"]["test/acc"] > 0.5  # chance: 0.2; seeds 0 and 1 gave 0.86 and 0.70
    (log,) = tmp_path.rglob("metrics.csv")
    rows = [r for r in csv.DictReader(log.open()) if r.get("train/mask_rate")]
    assert float(rows[-1]["train/mask_rate"]) > 0 and float(rows[-1]["train/loss_u"]) > 0


def test_the_experiment_sweeps_three_arms_that_each_compose(make_cfg) -> None:
    params = make_cfg("experiment=fmnist_semisup", with_hydra=True).hydra.sweeper.params
    assert params["strategy"] == "semisup,semisup_pseudo_label,finetune"
    assert params["data.labels_per_class"] == "1,5,20" and params["seed"] == "0,1,2"
    methods = set()
    for arm in params["strategy"].split(","):
        plain = to_plain(make_cfg("experiment=fmnist_semisup", f"strategy={arm}"))
        check_strategy_config(plain["strategy"])
        assert plain["source"]["seed"] == plain["seed"] and plain["trainer"]["max_steps"] == 600
        assert plain["data"]["classes"] == [5, 6, 7, 8, 9] and plain["source"]["classes"] == [
            0,
            1,
            2,
            3,
            4,
        ]
        methods.add((plain["strategy"]["name"], plain["strategy"].get("method")))
    assert methods == {("semisup", "fixmatch"), ("semisup", "pseudo_label"), ("finetune", None)}
