"""Autoencoder transfer: mirrored decoders, AE variants, the cached source, strategy=autoencoder."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferlab.core.errors import ConfigError, DivergenceError
from transferlab.core.store import config_hash
from transferlab.models import AE_ENCODERS, Backbone, build_autoencoder, build_backbone
from transferlab.modules.autoencoder import (
    GRID_FILE,
    AutoencoderModule,
    masked_mse,
    patch_mask,
)
from transferlab.modules.callbacks import DivergenceGuard
from transferlab.sources import ensure_cached_source, prepare_backbone
from transferlab.sources.autoencoder import (
    DECODER_WEIGHTS,
    autoencoder_identity,
    pretraining_images,
)
from transferlab.tasks import run_training, to_plain

DIGITS_SPEC = {"channels": 1, "image_size": 8, "normalize": "data"}
# a small, quick autoencoder source on digits 0-4 shared by the tests below (session cache)
AE_OVERRIDES = (
    "strategy=autoencoder",
    "source.max_epochs=5",
    "source.batch_size=64",
)


def _tiny_module(variant: str = "plain", **kwargs) -> AutoencoderModule:
    backbone = build_backbone("small_cnn", in_chans=1, input_size=8, width=4, feature_dim=8)
    return AutoencoderModule(
        build_autoencoder(backbone, (1, 8, 8)), torch.zeros(1, 8, 8), variant=variant, **kwargs
    )


# ----------------------------------------------------------------------------- decoders


@pytest.mark.parametrize("size", [28, 8])
@pytest.mark.parametrize("name", AE_ENCODERS)
def test_decoder_mirrors_every_supported_backbone(name: str, size: int) -> None:
    backbone = build_backbone(name, in_chans=1, input_size=size)
    autoencoder = build_autoencoder(backbone, (1, size, size)).eval()
    images = torch.randn(2, 1, size, size)
    features = autoencoder.encode(images)
    assert tuple(features.shape[1:]) == autoencoder.decoder.feature_shape
    assert len(autoencoder.decoder.blocks) == len(backbone.stages())
    assert autoencoder(images).shape == images.shape


def test_unsupported_backbone_lists_the_supported_ones() -> None:
    backbone = Backbone("timm", {"conv": nn.Conv2d(1, 4, 3)}, num_features=4)
    with pytest.raises(ConfigError) as info:
        build_autoencoder(backbone, (1, 8, 8))
    message = str(info.value)
    assert "\n" not in message and "cannot serve as an autoencoder encoder" in message
    assert all(name in message for name in AE_ENCODERS)


def test_mismatched_image_size_is_a_clear_error() -> None:
    backbone = build_backbone("small_cnn", in_chans=1, input_size=28, width=4, feature_dim=8)
    with pytest.raises(ConfigError, match="built for another input size"):
        build_autoencoder(backbone, (1, 32, 32))  # the fc stage is sized for 28x28
    autoencoder = build_autoencoder(backbone, (1, 28, 28))
    with pytest.raises(ConfigError, match=r"built for 1x28x28 images but got 1x32x32"):
        autoencoder(torch.zeros(1, 1, 32, 32))
    resnet = build_autoencoder(build_backbone("resnet8", in_chans=1, input_size=8), (1, 8, 8))
    with pytest.raises(ConfigError, match="the decoder takes 64x2x2 features"):
        resnet.decoder(torch.zeros(1, 64, 7, 7))
    with pytest.raises(ConfigError, match="at least 4 px"):
        build_autoencoder(build_backbone("resnet8", in_chans=1, input_size=2), (1, 2, 2))


# ----------------------------------------------------------------------------- variants


def test_patch_mask_hides_whole_patches_at_the_ratio() -> None:
    mask = patch_mask(3, 8, 8, patch_size=2, ratio=0.25, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 8, 8) and mask.dtype == torch.bool
    patches = mask.view(3, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(3, 16, 4)
    assert ((patches.all(-1)) | (~patches.any(-1))).all()  # a patch is hidden entirely or not
    assert patches.all(-1).sum(1).tolist() == [4, 4, 4]  # 25% of 16 patches in every image
    odd = patch_mask(2, 7, 7, patch_size=4, ratio=0.5)
    assert odd.shape == (2, 1, 7, 7)


def test_masked_loss_counts_only_hidden_pixels() -> None:
    target = torch.randn(2, 1, 8, 8)
    recon = torch.randn(2, 1, 8, 8)
    mask = patch_mask(2, 8, 8, patch_size=2, ratio=0.5)
    loss = masked_mse(recon, target, mask)
    assert torch.isclose(loss, ((recon - target)[mask.expand_as(recon)] ** 2).mean())
    visible_changed = torch.where(mask, recon, recon + 100.0)
    assert torch.isclose(masked_mse(visible_changed, target, mask), loss)
    hidden_changed = torch.where(mask, recon + 1.0, recon)
    assert not torch.isclose(masked_mse(hidden_changed, target, mask), loss)


def test_variants_corrupt_the_input_as_configured() -> None:
    images = torch.randn(16, 1, 8, 8)
    inputs, mask = _tiny_module("masked", mask_ratio=0.5, patch_size=2).corrupt(images)
    assert (inputs[mask] == 0).all() and torch.equal(inputs[~mask], images[~mask])
    assert mask.float().mean() == 0.5
    inputs, mask = _tiny_module("denoising", noise="dropout", drop_prob=0.5).corrupt(images)
    dropped = (inputs == 0).float().mean()
    assert mask is None and 0.35 < dropped < 0.65
    inputs, _ = _tiny_module("denoising", noise="gaussian", noise_std=0.5).corrupt(images)
    assert 0.4 < (inputs - images).std() < 0.6
    assert torch.equal(_tiny_module("plain").corrupt(images)[0], images)
    with pytest.raises(ConfigError, match="valid: plain, denoising, masked"):
        _tiny_module("sparse")


def test_non_finite_loss_stops_pretraining() -> None:
    images = torch.full((8, 1, 8, 8), float("nan"))
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[DivergenceGuard("autoencoder pretraining", "the reconstruction loss")],
    )
    with pytest.raises(DivergenceError, match="autoencoder pretraining diverged"):
        trainer.fit(_tiny_module(), DataLoader(TensorDataset(images), batch_size=4))


# ----------------------------------------------------------------------------- the source


def _ae_source(make_cfg, *extra: str) -> tuple[dict, dict]:
    plain = to_plain(make_cfg(*AE_OVERRIDES, *extra))
    return plain["source"], plain["model"]


def test_reconstruction_beats_the_mean_image_on_held_out_digits(make_cfg) -> None:
    source, model = _ae_source(make_cfg)
    entry, _ = ensure_cached_source(source, model, DIGITS_SPEC)
    meta = json.loads((entry / "source.json").read_text())
    assert meta["images_holdout"] == 60 and meta["classes_seen"] == [0, 1, 2, 3, 4]
    # the trivial baseline predicts the mean training image for every held-out image
    assert meta["holdout_recon_loss"] < 0.6 * meta["holdout_mean_image_loss"], meta
    assert (entry / DECODER_WEIGHTS).is_file() and (entry / GRID_FILE).is_file()


def test_autoencoder_source_is_cached_and_reused(make_cfg) -> None:
    source, model = _ae_source(make_cfg)
    first, _ = ensure_cached_source(source, model, DIGITS_SPEC)
    stamp = (first / "backbone.safetensors").stat().st_mtime_ns
    backbone, info = prepare_backbone(source, model, DIGITS_SPEC)
    assert info["source"] == "autoencoder" and info["source_built_now"] is False
    assert Path(info["source_dir"]) == first
    assert (first / "backbone.safetensors").stat().st_mtime_ns == stamp
    assert backbone.name == "small_cnn"


def test_source_key_ignores_the_other_data_mode(make_cfg) -> None:
    def key(*extra: str) -> str:
        source, model = _ae_source(make_cfg, *extra)
        return config_hash(autoencoder_identity(source, model, DIGITS_SPEC))

    base = key()
    assert key("seed=3") == base  # data=source: the run seed does not matter
    assert key("source.variant=masked") != base
    pool = key("source.data=target_pool")
    assert pool != base and key("source.data=target_pool", "source.classes=[0]") == pool
    assert key("source.data=target_pool", "seed=3") != pool  # its validation carve moves
    with pytest.raises(ConfigError, match="use source .* or target_pool"):
        key("source.data=target_test")


def test_target_pool_never_uses_target_validation_or_test_images(make_cfg) -> None:
    source, _ = _ae_source(make_cfg, "source.data=target_pool", "data.val_per_class=20")
    train, held, info = pretraining_images(source, DIGITS_SPEC)
    # digits 5-9 have 597 training-pool images; 5 x 20 are the target's validation split
    assert info["classes_seen"] == [5, 6, 7, 8, 9]
    assert len(train) + len(held) == info["images_train"] + info["images_holdout"] == 497
    assert info["images_holdout"] == round(0.1 * 497)


def test_divergence_keeps_the_last_good_checkpoint(make_cfg, monkeypatch, tmp_path) -> None:
    original = AutoencoderModule.training_step

    def blow_up_in_epoch_two(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        return loss * float("inf") if self.current_epoch == 1 else loss

    monkeypatch.setattr(AutoencoderModule, "training_step", blow_up_in_epoch_two)
    source, model = _ae_source(make_cfg, "source.max_epochs=2", "source.limit_train_batches=2")
    source["cache_dir"] = str(tmp_path / "cache")
    with pytest.raises(DivergenceError) as info:
        ensure_cached_source(source, model, DIGITS_SPEC)
    message = str(info.value)
    assert "\n" not in message and "the last good checkpoint is" in message
    assert Path(message.rsplit(" ", 1)[-1]).is_file()


# ----------------------------------------------------------------------------- strategy


def test_strategy_autoencoder_runs_end_to_end_on_digits(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*AE_OVERRIDES, "trainer.max_epochs=3")
    assert cfg.source.name == "autoencoder" and cfg.strategy.mode == "linear_probe"
    record = run_training(cfg, tmp_path)
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0
    assert "test/acc_per_class_mean" in record["metrics"]
    assert record["identity"]["strategy"] == "autoencoder"
    assert json.loads((tmp_path / "results.json").read_text())["metrics"]["test/acc"] >= 0
    assert (tmp_path / GRID_FILE).stat().st_size > 0
    details = record["test_details"]
    assert details["target_train_recon_loss"] < details["target_train_mean_image_loss"]


def test_command_line_source_wins_over_the_strategy_default(make_cfg, tmp_path) -> None:
    assert make_cfg("strategy=autoencoder", "data=fashion_mnist").source.name == "autoencoder"
    cfg = make_cfg("strategy=autoencoder", "source=pretrain", "debug=fast_dev_run")
    assert cfg.source.name == "pretrain"
    with pytest.raises(ConfigError, match="transfers from source=autoencoder, but source=pretrain"):
        run_training(cfg, tmp_path)
    # source=random is the random-encoder control: it runs, with no decoder and so no grid
    control = make_cfg("strategy=autoencoder", "source=random", "debug=fast_dev_run")
    record = run_training(control, tmp_path)
    assert record["source_info"]["source"] == "random" and "test/acc" in record["metrics"]
    assert not (tmp_path / GRID_FILE).exists()
