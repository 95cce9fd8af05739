"""WiSE-FT (strategy.wise_alpha), model soups (transferlab soup) and Co-Tuning
(regularizer=cotuning): unit tests of the formulas and tiny real runs on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import ConfigError
from transferlab.models import build_backbone
from transferlab.modules import FinetuneModule
from transferlab.modules.regularizers import (
    CoTuning,
    CoTuningOptions,
    ModelParts,
    category_relationship,
)
from transferlab.modules.weight_averaging import (
    best_alpha,
    greedy_soup,
    interpolate,
    wise_grid,
)
from transferlab.tasks import run_evaluation, run_training


def _module(**options) -> FinetuneModule:
    torch.manual_seed(0)
    return FinetuneModule(build_backbone("small_cnn", in_chans=1, input_size=8), 5, **options)


def _moved(module: FinetuneModule) -> dict[str, torch.Tensor]:
    """The plain state after every weight moved by 1 (a stand-in for fine-tuning)."""
    with torch.no_grad():
        for param in module.parameters():
            param.add_(1.0)
    return module.plain_state()


# ----------------------------------------------------------------------------- WiSE-FT


def test_interpolation_ends_at_source_and_finetuned_and_keeps_the_new_head() -> None:
    module = _module(wise_alpha=0.5, transfer_stages=1)
    source = {k: v.clone() for k, v in module.wise_source.items()}
    stage = {id(t) for t in module.backbone.stages()[1].state_dict(keep_vars=True).values()}
    fresh = {
        f"backbone.{k}"
        for k, v in module.backbone.state_dict(keep_vars=True).items()
        if id(v) in stage
    }
    assert fresh and not fresh & set(source)  # a re-initialised stage has no source weights
    finetuned = _moved(module)
    at_zero = module.wise_state(finetuned, 0.0)
    half = module.wise_state(finetuned, 0.5)
    for key, value in source.items():
        if value.is_floating_point():
            torch.testing.assert_close(at_zero[key], value)
            torch.testing.assert_close(half[key], (value + finetuned[key]) / 2)
        else:  # num_batches_tracked: the fine-tuned count
            assert torch.equal(at_zero[key], finetuned[key])
    for key in finetuned:
        if key not in source:  # the head and the re-initialised stage stay fine-tuned
            torch.testing.assert_close(at_zero[key], finetuned[key])
    assert any(k.startswith("head.") for k in finetuned if k not in source)


def test_lora_interpolates_the_merged_weights() -> None:
    pytest.importorskip("peft")
    module = _module(wise_alpha="auto", peft={"name": "lora", "rank": 2})
    source = {k: v.clone() for k, v in module.wise_source.items()}
    with torch.no_grad():  # a non-zero update: B was initialised to zero
        for name, param in module.named_parameters():
            if "lora_B" in name:
                param.normal_()
    finetuned = module.plain_state()
    adapted = [k for k in source if not torch.equal(source[k], finetuned[k])]
    assert adapted  # the merged weights moved
    module.load_state_dict(module.wise_state(finetuned, 0.25))
    state = module.plain_state()
    for key in adapted:
        torch.testing.assert_close(state[key], 0.75 * source[key] + 0.25 * finetuned[key])


def test_alpha_values_and_choice() -> None:
    assert wise_grid(None) is None
    assert wise_grid("auto") == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert wise_grid(0.5) == (0.5,)
    assert wise_grid([1, 0.5]) == (0.5, 1.0)
    for bad in (1.5, -0.1, "half", [], True):
        with pytest.raises(ConfigError, match="wise_alpha=.* is invalid; use a number in"):
            wise_grid(bad)
    assert best_alpha({0.0: 0.5, 0.5: 0.7, 1.0: 0.7}) == 1.0  # a tie: the larger alpha
    assert best_alpha({0.0: 0.5, 0.5: 0.8, 1.0: 0.7}) == 0.5
    assert interpolate({}, {"w": torch.ones(1)}, 0.3)["w"].item() == 1.0


def test_bn_images_are_a_fixed_draw_of_at_most_that_many() -> None:
    from transferlab.tasks.soup import bn_images_of

    data = list(range(100))
    drawn = bn_images_of(data, 10)
    assert len(drawn) == 10 and len({drawn[i] for i in range(10)}) == 10
    assert [drawn[i] for i in range(10)] == [bn_images_of(data, 10)[i] for i in range(10)]
    assert [drawn[i] for i in range(10)] != list(range(10))  # drawn, not the first ten
    assert bn_images_of(data, None) is data and bn_images_of(data, 100) is data


def test_greedy_soup_keeps_an_ingredient_only_if_validation_does_not_drop() -> None:
    values = {0: 0.9, 1: 0.8, 2: 0.7}

    def score(chosen) -> float:  # mixing in 1 helps, mixing in 2 hurts
        return values[chosen[0]] + 0.05 * (1 in chosen[1:]) - 0.3 * (2 in chosen)

    chosen, best, steps = greedy_soup([0, 1, 2], score)
    assert chosen == [0, 1] and best == pytest.approx(0.95)
    assert [s["kept"] for s in steps] == [True, True, False]


# ----------------------------------------------------------------------------- Co-Tuning


def test_relationship_rows_are_class_means_that_sum_to_one() -> None:
    probabilities = F.softmax(torch.randn(7, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    relation = category_relationship(probabilities, labels, num_classes=4)
    torch.testing.assert_close(relation.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(relation[1], probabilities[2:5].mean(0))
    torch.testing.assert_close(relation[3], torch.full((4,), 0.25))  # no example: uniform


def test_cotuning_loss_equals_the_hand_computed_value() -> None:
    module = _module()
    head = nn.Linear(module.backbone.num_features, 3)
    cotuning = CoTuning(ModelParts(module, 3, head), CoTuningOptions(alpha=2.0))
    features = torch.randn(2, module.backbone.num_features)
    labels = torch.tensor([0, 4])
    cotuning.prepare([(features, labels)], lambda x: x)  # pooled features as inputs
    relation = cotuning.relationship
    assert relation.shape == (5, 3)
    logits = head(features)
    expected = 0.0
    for row, label in enumerate(labels.tolist()):  # alpha * mean_b sum_s -p(s|y) log q(s)
        log_q = logits[row] - torch.logsumexp(logits[row], 0)
        expected += -(relation[label] * log_q).sum() / 2
    terms = cotuning.terms(features, labels, features, logits)
    torch.testing.assert_close(terms["cotuning"], 2.0 * expected)
    restored = CoTuning(ModelParts(module, 3, nn.Linear(head.in_features, 3)), CoTuningOptions())
    restored.load_state_dict(cotuning.state_dict())
    torch.testing.assert_close(restored.relationship, relation)
    torch.testing.assert_close(restored.head[0].weight, head.weight)


# ----------------------------------------------------------------------------- real runs


def _run(make_cfg, out: Path, *overrides: str) -> dict:
    return run_training(make_cfg("trainer.max_epochs=3", *overrides, out=out), out)


def test_wise_chooses_alpha_on_validation_and_tests_those_weights(make_cfg, tmp_path) -> None:
    record = _run(make_cfg, tmp_path / "run", "strategy.wise_alpha=auto")
    wise = record["wise"]
    scores = {float(a): v for a, v in wise["val_acc"].items()}
    assert sorted(scores) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert scores[wise["alpha"]] == max(scores.values())
    # alpha 1 is the fine-tuned model, scored as the fit's best epoch was
    assert scores[1.0] == pytest.approx(record["metrics"]["val/acc_best"])
    assert scores[1.0] > scores[0.0]  # fine-tuning the backbone helped on validation
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["metrics"]["wise/alpha"] == wise["alpha"]
    assert saved["metrics"]["best_checkpoint"] == wise["checkpoint"]
    # the tested weights are in wise.ckpt: eval.py measures the same test accuracy
    evaluated = run_evaluation(
        make_cfg(f"ckpt_path={wise['checkpoint']}", name="eval", out=tmp_path / "ev"),
        tmp_path / "ev",
    )
    assert evaluated["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"])


def test_cotuning_learns_the_relationship_and_trains(make_cfg, tmp_path) -> None:
    record = _run(make_cfg, tmp_path / "run", "strategy.regularizer=cotuning")
    assert record["metrics"]["test/acc"] > 0.3  # 5 classes: chance is 0.2
    rows = (next((tmp_path / "run").rglob("metrics.csv"))).read_text().splitlines()
    column = rows[0].split(",").index("train/cotuning")
    losses = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(losses) == 3 and losses[-1] < losses[0]  # the source head learns its targets
    payload = read_checkpoint(record["metrics"]["best_checkpoint"])
    relation = payload["regularizer_state"]["relationship"]
    assert relation.shape == (5, 5)  # target digits 5-9 x source digits 0-4
    torch.testing.assert_close(relation.sum(1), torch.ones(5))
    assert not any(k.startswith("source_head") for k in payload["state_dict"])  # plain weights


def test_greedy_soup_never_scores_below_its_best_ingredient(make_cfg, tmp_path) -> None:
    from transferlab.commands import main
    from transferlab.report.runs import load_runs

    sweep = tmp_path / "sweep"
    for index, lr in enumerate((0.01, 0.03, 0.003)):
        _run(make_cfg, sweep / str(index), f"strategy.optimizer.lr={lr}")
    assert main(["soup", str(sweep)]) == 0
    runs = {r["identity"]["mode"]: r for r in load_runs([sweep / "soup"])}
    greedy = runs["greedy"]["soup"]
    best_ingredient = max(c["val_acc"] for c in greedy["candidates"])
    assert runs["greedy"]["metrics"]["val/acc"] >= best_ingredient
    assert len(runs["uniform"]["soup"]["ingredients"]) == 3
    assert runs["uniform"]["task"] == "soup" and "test/acc" in runs["uniform"]["metrics"]
    assert runs["uniform"]["soup"]["bn_images"] == 25  # every training image (5 labels x 5 classes)
    # a capped recompute uses a fixed draw of that many images, and says so
    assert main(["soup", str(sweep), "--bn-images", "8", "--out", str(tmp_path / "capped")]) == 0
    capped = {r["identity"]["mode"]: r for r in load_runs([tmp_path / "capped"])}
    assert capped["uniform"]["soup"]["bn_images"] == 8
    assert "on 8 of the 25 training images (a fixed random draw)" in capped["uniform"]["soup"]["bn"]
    assert capped["uniform"]["metrics"]["test/acc"] != runs["uniform"]["metrics"]["test/acc"]
    with pytest.raises(ConfigError, match=r"--bn-images 0 is invalid"):
        from transferlab.tasks.soup import make_soups

        make_soups([sweep], tmp_path / "zero", bn_images=0)
    # a run of another split is refused, naming the difference
    _run(make_cfg, sweep / "other", "data.labels_per_class=3")
    with pytest.raises(ConfigError, match=r"differ in data.labels_per_class: 5 vs 3"):
        from transferlab.tasks.soup import make_soups

        make_soups([sweep], tmp_path / "no")
