"""GAN: networks, manual-optimization steps, resume, divergence, the GAN source, FID, and the
gan / transfer_gan strategies end to end (real digits images throughout)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from transferlab.core.errors import ConfigError, DivergenceError, SourceError
from transferlab.data import ImageClassificationDataModule
from transferlab.models import DCGANGenerator, build_discriminator
from transferlab.models.generators import check_generator_fits, generator_layout
from transferlab.modules.gan import GAN_LOSSES, GANModule, build_gan_networks
from transferlab.sources import ensure_cached_source
from transferlab.sources.fid import build_feature_extractor
from transferlab.sources.gan import GENERATOR_WEIGHTS, HEAD_WEIGHTS, SAMPLES
from transferlab.tasks import run_training

MODEL = {"name": "small_cnn", "small_input": None, "min_input_size": 4, "width": 8}
SPEC = {"channels": 1, "image_size": 8, "normalize": "data"}


@pytest.fixture(scope="module")
def digits() -> ImageClassificationDataModule:
    dm = ImageClassificationDataModule(
        dataset="digits", classes=[0, 1, 2, 3, 4], val_per_class=10, batch_size=32
    )
    dm.setup("fit")
    return dm


def _gan(dm: ImageClassificationDataModule, **options) -> GANModule:
    generator, discriminator = build_gan_networks(
        MODEL, {"generator_width": 8}, dm.input_shape, dm.mean, dm.std
    )
    return GANModule(generator, discriminator, **options)


def _trainer(max_steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=bool(kwargs.get("callbacks")),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **kwargs,
    )


@pytest.mark.parametrize("size", [8, 28, 32])
def test_generator_and_discriminator_shapes(size: int) -> None:
    generator = DCGANGenerator(16, 3, size, width=8, mean=[0.5], std=[0.25])
    images = generator(torch.randn(4, 16))
    assert images.shape == (4, 3, size, size)
    pixels = generator.pixels(torch.randn(4, 16))
    assert pixels.min() >= 0 and pixels.max() <= 1
    z = torch.randn(4, 16)
    generator.eval()  # normalised output maps back to the same pixels
    torch.testing.assert_close(generator.to_unit(generator(z)), generator.pixels(z))
    for name in ("small_cnn", "resnet8"):
        logits = build_discriminator(name, (3, size, size), width=8)(images)
        assert logits.shape == (4,)


def test_unsupported_backbone_and_image_size_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="supported: resnet20, resnet8, small_cnn") as info:
        build_discriminator("resnet18", (3, 32, 32))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot make 7x7 images"):
        generator_layout(7)
    assert generator_layout(28) == (7, 2) and generator_layout(8) == (4, 1)
    generator = DCGANGenerator(8, 1, 8, width=4)
    with pytest.raises(ConfigError, match="makes 1x8x8 images but the data has 1x28x28"):
        check_generator_fits(generator, (1, 28, 28))
    discriminator = build_discriminator("small_cnn", (1, 8, 8), width=4)
    with pytest.raises(ConfigError, match="built for 1x8x8 images but got 1x28x28"):
        discriminator(torch.zeros(2, 1, 28, 28))


def test_gan_on_wrong_image_size_fails_before_any_step(digits) -> None:
    generator = DCGANGenerator(100, 1, 16, width=8)  # 16x16 generator, 8x8 digits
    discriminator = build_discriminator("small_cnn", (1, 8, 8), width=8)
    with pytest.raises(ConfigError, match="generator makes 1x16x16 images"):
        _trainer(2).fit(GANModule(generator, discriminator), digits.train_dataloader())


@pytest.mark.parametrize("loss", GAN_LOSSES)
def test_one_step_updates_generator_and_discriminator_and_logs_both_losses(
    digits, loss: str
) -> None:
    module = _gan(digits, loss=loss)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _trainer(2)  # one discriminator and one generator step
    trainer.fit(module, digits.train_dataloader())
    assert trainer.global_step == 2 and module.d_steps == 1
    for prefix in ("generator.", "discriminator.trunk.", "discriminator.head."):
        changed = [
            k
            for k, v in module.state_dict().items()
            if k.startswith(prefix) and v.is_floating_point() and not torch.equal(v, before[k])
        ]
        assert changed, f"{prefix} was not updated"
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/d_loss"]) and torch.isfinite(metrics["train/g_loss"])


def test_sample_grid_png_is_written(digits, tmp_path: Path) -> None:
    module = _gan(digits, sample_dir=tmp_path)
    _trainer(2).fit(module, digits.train_dataloader())
    png = tmp_path / SAMPLES
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


class _OptimizerSteps(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.steps = [
            int(state["step"])
            for optimizer in trainer.optimizers
            for state in list(optimizer.state.values())[:1]
        ]


def test_resume_restores_both_optimizers(digits, tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    module = _gan(digits, n_critic=2)
    _trainer(6, callbacks=[checkpoint]).fit(module, digits.train_dataloader())
    assert module.d_steps == 4  # 4 discriminator + 2 generator steps
    probe = _OptimizerSteps()
    resumed = _gan(digits, n_critic=2)
    trainer = _trainer(9, callbacks=[ModelCheckpoint(dirpath=tmp_path / "b"), probe])
    trainer.fit(resumed, digits.train_dataloader(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert probe.steps == [2, 4]  # generator (Adam) and discriminator states both restored
    assert resumed.d_steps == 6 and trainer.global_step == 9


def test_non_finite_loss_stops_with_one_line_and_keeps_the_checkpoint(
    digits, tmp_path: Path
) -> None:
    module = _gan(digits)
    _trainer(2, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)]).fit(
        module, digits.train_dataloader()
    )
    saved = (tmp_path / "last.ckpt").read_bytes()
    with torch.no_grad():
        next(module.discriminator.head.parameters()).fill_(float("nan"))
    with pytest.raises(DivergenceError, match="diverged") as info:
        _trainer(4, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)]).fit(
            module, digits.train_dataloader()
        )
    assert "\n" not in str(info.value)
    assert (tmp_path / "last.ckpt").read_bytes() == saved


def test_inception_fid_offline_is_a_clear_error() -> None:
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(SourceError, match="torch-fidelity"):
            build_feature_extractor({"extractor": "inception"}, {}, SPEC, "unused", lambda x: x)
    with pytest.raises(ConfigError, match="valid: classifier, inception"):
        build_feature_extractor({"extractor": "vgg"}, {}, SPEC, "unused", lambda x: x)


# ----------------------------------------------------------------------- the GAN source


@pytest.fixture(scope="module")
def gan_source(source_cache: Path) -> tuple[Path, dict]:
    """A GAN trained on digits 0-4 for 15 epochs, cached in the session cache."""
    cfg = {
        "name": "gan",
        "dataset": "digits",
        "classes": [0, 1, 2, 3, 4],
        "val_per_class": 10,
        "batch_size": 64,
        "max_epochs": 15,
        "loss": "nonsaturating",
        "lr_g": 0.001,
        "lr_d": 0.001,
        "latent_dim": 100,
        "generator_width": 16,
        "fid": {"num_samples": 500},
        "seed": 0,
        "cache_dir": str(source_cache),
        "accelerator": "cpu",
    }
    entry, built = ensure_cached_source(cfg, MODEL, SPEC)
    again, built_again = ensure_cached_source(cfg, MODEL, SPEC)
    assert again == entry and not built_again
    return entry, json.loads((entry / "source.json").read_text())


def test_gan_source_entry_and_fid_lower_after_training(gan_source) -> None:
    entry, meta = gan_source
    for name in ("backbone.safetensors", GENERATOR_WEIGHTS, HEAD_WEIGHTS, SAMPLES):
        assert (entry / name).is_file(), name
    assert meta["kind"] == "gan" and meta["labels_used"] is False
    assert set(meta["files_sha256"]) == {GENERATOR_WEIGHTS, HEAD_WEIGHTS}  # checked on opening
    assert meta["classes_seen"] == [0, 1, 2, 3, 4] and meta["steps"] == 2 * 15 * -(
        -meta["train_images"] // 64
    )
    assert meta["fid_extractor"] == "classifier" and meta["fid_extractor_test_acc"] > 0.5
    # 15 epochs of adversarial steps on real digits make samples closer to the real test images
    assert meta["fid_trained"] < 0.75 * meta["fid_init"], meta
    assert meta["kid_mean_trained"] < meta["kid_mean_init"]


def test_source_gan_is_usable_by_finetune(make_cfg, tmp_path: Path) -> None:
    record = run_training(
        make_cfg("strategy=finetune", "source=gan", "debug=fast_dev_run"), tmp_path
    )
    assert record["source_info"]["source"] == "gan"
    assert Path(record["source_info"]["source_dir"]).name.startswith("gan-")
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0


def test_strategy_gan_linear_probe_on_multilayer_features(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("strategy=gan", "debug=fast_dev_run")
    assert cfg.source.name == "gan" and cfg.strategy.mode == "linear_probe"
    record = run_training(cfg, tmp_path)
    assert record["identity"]["strategy"] == "gan" and record["identity"]["source"] == "gan"
    assert 0.0 <= record["metrics"]["test/acc_per_class_mean"] <= 1.0
    with pytest.raises(ConfigError, match="cannot serve as a GAN discriminator"):
        run_training(make_cfg("strategy=gan", "model=vgg16", "debug=fast_dev_run"), tmp_path)


@pytest.mark.parametrize("init", ["source", "scratch"])
def test_transfer_gan_runs_end_to_end(make_cfg, tmp_path: Path, init: str) -> None:
    cfg = make_cfg("strategy=transfer_gan", f"strategy.init={init}", "debug=fast_dev_run")
    record = run_training(cfg, tmp_path)
    metrics = record["metrics"]
    for key in ("test/fid", "test/kid_mean", "init/fid", "train/d_loss", "train/g_loss"):
        assert torch.isfinite(torch.tensor(metrics[key])), key
    assert record["source_info"]["source"] == ("gan" if init == "source" else "none")
    assert (tmp_path / "results.json").is_file() and (tmp_path / SAMPLES).is_file()


def test_transfer_gan_from_source_needs_a_gan_source(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("strategy=transfer_gan", "source=pretrain", "debug=fast_dev_run")
    with pytest.raises(ConfigError, match="needs source=gan"):
        run_training(cfg, tmp_path)
    assert not (tmp_path / "results.json").exists()


TRANSFER_DIGITS = (
    "strategy=transfer_gan",
    "model.width=8",
    "data.labels_per_class=20",  # 100 target images of digits 5-9
    "source.max_epochs=15",
    "source.lr_g=0.001",
    "source.lr_d=0.001",
    "strategy.lr_g=0.001",
    "strategy.lr_d=0.001",
    "strategy.steps=60",
    "strategy.checkpoint_every=null",
    "strategy.fid.num_samples=500",
    "logger=none",
)


@pytest.mark.slow
def test_transfer_gan_beats_scratch_gan_on_few_target_images(make_cfg, tmp_path: Path) -> None:
    """Same 100 target images, same steps, same seeds: a GAN initialised from the GAN trained on
    digits 0-4 reaches a lower feature FID on digits 5-9 than one trained from scratch."""
    fid = {}
    for seed in (0, 1, 2):
        for init in ("source", "scratch"):
            out = tmp_path / f"{init}{seed}"
            cfg = make_cfg(*TRANSFER_DIGITS, f"strategy.init={init}", f"seed={seed}", out=out)
            fid[init, seed] = run_training(cfg, out)["metrics"]["test/fid"]
    print(fid)
    for seed in (0, 1, 2):
        assert fid["source", seed] < fid["scratch", seed], fid
