"""The fine-tuning toolbox of strategy=finetune: regularisers (l2sp, delta, bss), parameter-
efficient tuning (bitfit, norm, lora) and a moving average of the weights (ema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import ConfigError
from transferlab.data import ImageClassificationDataModule
from transferlab.models import build_backbone
from transferlab.modules import FinetuneModule
from transferlab.modules.regularizers import BatchSpectralShrinkage, BSSOptions, ModelParts
from transferlab.tasks import run_evaluation, run_training

pytest.importorskip("peft")


def _digits() -> ImageClassificationDataModule:
    dm = ImageClassificationDataModule(
        dataset="digits", classes=[5, 6, 7, 8, 9], labels_per_class=20, val_per_class=10
    )
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def digits() -> ImageClassificationDataModule:
    return _digits()


def _module(seed: int = 0, **options) -> FinetuneModule:
    torch.manual_seed(seed)
    return FinetuneModule(build_backbone("small_cnn", in_chans=1, input_size=8), 5, **options)


def _trainer(epochs: int = 2, **kwargs) -> L.Trainer:
    settings = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(max_epochs=epochs, **{**settings, **kwargs})


# a learning rate and weight decay that would move any weight the optimizer were given
LOUD = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1}


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    after = dict(module.named_parameters())
    return {n for n, v in before.items() if not torch.equal(v, after[n])}


def _perturb(module: FinetuneModule, scale: float) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in module.backbone.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def _terms(module: FinetuneModule, images: torch.Tensor) -> dict[str, float]:
    features = module.features(images)
    terms = module.regularization(images, None, features, module.head(features))
    return {k: float(v.detach()) for k, v in terms.items()}


# ----------------------------------------------------------------------------- regularisers


@pytest.mark.parametrize(("name", "term"), [("l2sp", "l2sp"), ("delta", "delta")])
@pytest.mark.parametrize("training", [False, True])
def test_source_distance_is_zero_at_the_source_and_grows_as_weights_move(
    digits, name: str, term: str, training: bool
) -> None:
    images = next(iter(digits.train_dataloader()))[0]
    module = _module(regularizer={"name": name, "alpha": 1.0, "beta": 0.0})
    module.train(training)  # delta: BatchNorm on batch statistics (train) or running ones (eval)
    values = []
    for step in range(3):
        values.append(_terms(module, images)[term])
        _perturb(module, 0.01 * 2**step)
    assert values[0] == pytest.approx(0.0, abs=1e-10)
    assert 0 < values[1] < values[2]


@pytest.mark.parametrize(
    ("name", "options"),
    [("timm", {"model_name": "resnet10t"}), ("efficientnet_lite0", {})],
)
def test_delta_taps_every_stage_of_a_timm_network(name: str, options: dict) -> None:
    """timm's stages cannot run alone: DELTA taps each stage's last module in the whole
    network and in its frozen copy (an earlier version failed on every step here)."""
    torch.manual_seed(0)
    backbone = build_backbone(name, in_chans=3, input_size=32, **options)
    module = FinetuneModule(backbone, 5, regularizer={"name": "delta", "alpha": 1.0, "beta": 0.0})
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    delta = module.regularizer
    assert len(delta.tap.values) == len(backbone.stages()) > 2
    for training in (False, True):
        module.train(training)
        assert _terms(module, images)["delta"] == pytest.approx(0.0, abs=1e-10)
    _perturb(module, 0.01)
    assert _terms(module, images)["delta"] > 0


def test_l2sp_matches_its_formula() -> None:
    module = _module(regularizer={"name": "l2sp", "alpha": 0.3, "beta": 0.2})
    source = [p.detach().clone() for p in module.backbone.parameters()]
    _perturb(module, 0.05)
    drift = sum(((p - p0) ** 2).sum() for p, p0 in zip(module.backbone.parameters(), source))
    head = sum((p**2).sum() for p in module.head.parameters())
    terms = _terms(module, torch.zeros(2, 1, 8, 8))
    assert terms["l2sp"] == pytest.approx(0.5 * 0.3 * float(drift), rel=1e-5)
    assert terms["l2_new"] == pytest.approx(0.5 * 0.2 * float(head), rel=1e-5)


def test_l2sp_counts_reinitialised_stages_as_new_weights() -> None:
    module = _module(regularizer={"name": "l2sp", "beta": 0.0}, transfer_stages=1)
    with torch.no_grad():  # moving a re-initialised stage is no distance from the source
        for param in module.backbone.stages()[2].parameters():
            param.add_(1.0)
    assert _terms(module, torch.zeros(2, 1, 8, 8))["l2sp"] == 0.0


def test_bss_penalises_the_smallest_singular_values() -> None:
    bss = BatchSpectralShrinkage(ModelParts(torch.nn.Identity(), 0), BSSOptions(alpha=2.0, k=2))
    values = []
    for smallest in (0.0, 0.5, 1.0):  # 0: a rank-deficient batch
        features = torch.diag(torch.tensor([5.0, 3.0, smallest]))
        values.append(float(bss.terms(None, None, features, None)["bss"]))
    assert values[0] == pytest.approx(2.0 * (3.0**2 + 0.0), rel=1e-5)
    assert values[0] < values[1] < values[2]


def test_bss_says_once_when_duplicated_images_make_it_zero(caplog) -> None:
    """25 distinct images drawn into a batch of 128 (5 labels per class, with replacement) with
    64 feature dimensions: the smallest singular value is 0, so BSS does nothing; it says so
    once."""
    bss = BatchSpectralShrinkage(ModelParts(torch.nn.Identity(), 0), BSSOptions())
    distinct = torch.randn(25, 64, generator=torch.Generator().manual_seed(0))
    batch = distinct[torch.arange(128) % 25]
    with caplog.at_level("WARNING", logger="transferlab.modules.regularizers"):
        for _ in range(3):
            assert float(bss.terms(None, None, batch, None)["bss"]) < 1e-8
    assert sum("no effect" in r.getMessage() for r in caplog.records) == 1
    full_rank = torch.randn(128, 64, generator=torch.Generator().manual_seed(1))
    assert float(bss.terms(None, None, full_rank, None)["bss"]) > 1e-3 * 0.001


def test_regularisers_read_the_head_a_subclass_builds(digits) -> None:
    from transferlab.modules.gan_features import GanFeatureModule

    module = GanFeatureModule(
        build_backbone("small_cnn", in_chans=1, input_size=8),
        5,
        input_shape=(1, 8, 8),
        mode="full",
        regularizer={"name": "delta", "beta": 1.0},
    )
    images = next(iter(digits.train_dataloader()))[0]
    head = sum(float((p**2).sum()) for p in module.head.parameters())  # the multilayer head
    assert _terms(module, images)["l2_new"] == pytest.approx(0.5 * head, rel=1e-5)
    module.regularizer = None  # bss reads the features the head reads (every stage, pooled)
    bss = BatchSpectralShrinkage(ModelParts(module, 3), BSSOptions())
    features = module.features(images)
    assert features.shape[1] > module.backbone.num_features
    assert float(bss.terms(images, None, features, None)["bss"]) >= 0


def test_unknown_methods_and_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown regularizer 'l3sp'; valid: none, bss, cot"):
        _module(regularizer="l3sp")
    with pytest.raises(ConfigError, match=r"unknown peft method 'ia3'; valid: none, bitfit"):
        _module(peft={"name": "ia3"})
    with pytest.raises(ConfigError, match=r"strategy.regularizer.k is not an option.*alpha, beta"):
        _module(regularizer={"name": "l2sp", "k": 2})
    with pytest.raises(ConfigError, match=r"strategy.peft.rank=0 is invalid"):
        _module(peft={"name": "lora", "rank": 0})
    with pytest.raises(ConfigError, match=r"cotuning.* needs the source's classifier head"):
        _module(regularizer="cotuning")


def test_a_source_distance_needs_source_weights() -> None:
    with pytest.raises(ConfigError, match="regularizer=l2sp .* transfer_stages=0 keeps none"):
        _module(regularizer="l2sp", transfer_stages=0)
    with pytest.raises(ConfigError, match="regularizer=l2sp .* peft=lora keeps them frozen"):
        FinetuneModule.check_options(regularizer="l2sp", peft="lora")


def test_lora_without_matching_layers_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"no Conv2d or Linear layer matching .*'attn'.*conv"):
        _module(peft={"name": "lora", "target_modules": ["attn"]})


# ----------------------------------------------------------------------------- peft


@pytest.mark.parametrize(
    ("peft", "trains"),
    [
        ("bitfit", lambda name: name.endswith(".bias")),
        ("norm", lambda name: ".bn." in name),
        ("lora", lambda name: ".lora_" in name),
    ],
)
def test_peft_trains_only_what_it_says(digits, peft: str, trains) -> None:
    module = _module(peft=peft, optimizer=LOUD)
    before = _params(module)
    _trainer().fit(module, digits)
    moved = _moved(before, module)
    backbone = {n for n in before if n.startswith("backbone.")}
    assert {n for n in backbone if trains(n)} <= moved  # everything it says trains
    assert moved & backbone == {n for n in backbone if trains(n)}  # and nothing else
    assert {n for n in before if n.startswith("head.")} <= moved
    counts = module.parameter_counts()
    chosen = sum(before[n].numel() for n in before if trains(n) or n.startswith("head."))
    assert counts["trainable_params"] == chosen
    assert counts["trainable_fraction"] == pytest.approx(chosen / counts["total_params"], abs=1e-6)
    assert counts["trainable_fraction"] < 0.1


def test_lora_state_dict_is_the_merged_plain_one() -> None:
    plain, lora = _module(), _module(peft={"name": "lora", "rank": 2})
    with torch.no_grad():  # a non-zero update
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_()
    state = lora.state_dict()
    assert set(plain.state_dict()) == {k for k in state if not k.startswith("peft.")}
    images = torch.randn(4, 1, 8, 8)
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("peft.")})
    lora.eval(), plain.eval()
    torch.testing.assert_close(plain(images), lora(images))  # merged = base + B @ A * scale
    again = _module(seed=1, peft={"name": "lora", "rank": 2})
    again.load_state_dict(state)  # adapters and base weights restored exactly
    for (name, a), b in zip(lora.named_parameters(), again.parameters()):
        assert torch.equal(a, b), name
    fresh = _module(seed=2, peft={"name": "lora", "rank": 2})
    fresh.load_state_dict(plain.state_dict())  # a plain state: base weights, zero update
    fresh.eval()
    torch.testing.assert_close(fresh(images), plain(images))


def test_saving_a_plain_finetune_module_does_not_import_peft() -> None:
    """Every checkpoint save looks for LoRA layers; without LoRA that must not cost peft's
    import (about 1.5 s, transformers among it)."""
    code = (
        "import sys, torch\n"
        "from transferlab.modules.peft import lora_layers\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Linear(2, 2))\n"
        "print(lora_layers(net), 'peft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["{}", "False"]


# ----------------------------------------------------------------------------- ema


def test_ema_validates_and_saves_the_average(digits, tmp_path: Path) -> None:
    module = _module(ema=0.5, optimizer=LOUD)
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = _trainer(epochs=1, enable_checkpointing=True, callbacks=[saver])
    trainer.fit(module, digits)
    checkpoint = read_checkpoint(tmp_path / "last.ckpt")
    average, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(average["head.fc.weight"], raw["head.fc.weight"])
    # after the fit the module holds the average; testing the checkpoint keeps it
    trainer.test(module, digits, ckpt_path=str(tmp_path / "last.ckpt"), weights_only=True)
    for name, value in module.state_dict().items():
        assert torch.equal(value, average[name]), name


# ----------------------------------------------------------------------------- end to end


def _run(make_cfg, out: Path, *overrides: str) -> dict:
    return run_training(make_cfg("trainer.max_epochs=1", *overrides, out=out), out)


@pytest.mark.parametrize(
    "options",
    [
        ("strategy.regularizer=l2sp", "strategy.peft=bitfit", "strategy.ema=0.9"),
        ("strategy.regularizer.name=delta", "strategy.peft.name=norm", "strategy.mode=lp_ft"),
        (
            "strategy.regularizer=cotuning",
            "strategy.peft.name=lora",
            "strategy.ema=0.9",
            "strategy.wise_alpha=[0.5,1.0]",
            "strategy.mode=lp_ft",
            "strategy.lp_epochs=1",
            "trainer.max_epochs=2",
        ),
    ],
)
def test_toolbox_options_compose_and_train(make_cfg, tmp_path: Path, options) -> None:
    record = _run(make_cfg, tmp_path, *options)
    assert record["status"] == "completed"
    assert 0 < record["trainable_fraction"] < 0.1
    assert json.loads((tmp_path / "results.json").read_text())["trainable_params"] > 0
    logged = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()[0]
    assert "train/reg_loss" in logged and "train/trainable_fraction" in logged


def test_a_lora_run_exports_plain_weights_usable_as_a_source(make_cfg, tmp_path: Path) -> None:
    from transferlab.commands import main

    record = _run(
        make_cfg,
        tmp_path / "lora",
        "strategy.regularizer=bss",
        "strategy.peft.name=lora",
        "strategy.peft.rank=2",
    )
    best = record["metrics"]["best_checkpoint"]
    evaluated = run_evaluation(
        make_cfg(f"ckpt_path={best}", name="eval", out=tmp_path / "ev"), tmp_path / "ev"
    )
    assert evaluated["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    out = tmp_path / "lora.safetensors"
    assert main(["export", best, "--out", str(out)]) == 0
    again = _run(make_cfg, tmp_path / "again", "source=checkpoint", f"source.path={out}")
    assert again["status"] == "completed"


def test_a_lora_and_ema_fit_resumes_exactly(tmp_path: Path) -> None:
    digits = _digits()  # its own: testing a checkpoint leaves a data-order state behind

    def fit(epochs: int, folder: str, ckpt: str | None = None) -> dict[str, torch.Tensor]:
        L.seed_everything(0, verbose=False)
        module = _module(peft={"name": "lora", "rank": 2}, ema=0.8, optimizer=LOUD)
        saver = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        trainer = _trainer(epochs, enable_checkpointing=True, callbacks=[saver])
        trainer.fit(module, digits, ckpt_path=ckpt, weights_only=True)
        return module.state_dict()

    straight = fit(3, "a")
    fit(1, "b")
    resumed = fit(3, "b", ckpt=str(tmp_path / "b" / "last.ckpt"))
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, msg=name)
