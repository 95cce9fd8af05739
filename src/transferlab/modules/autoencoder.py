"""Autoencoder pretraining (plain, denoising, masked) and the ``strategy=autoencoder`` transfer.

:class:`AutoencoderModule` trains an encoder (a backbone's stages) and its mirrored decoder to
reconstruct unlabelled images. Variants: ``plain``; ``denoising`` (Vincent et al. 2008: Gaussian
noise or pixel dropout on the input, loss against the clean image); ``masked`` (He et al. 2022,
MAE: random patches hidden, loss on the hidden pixels only). Held-out reconstruction error is
logged next to the trivial baseline that predicts the mean training image.

:class:`AutoencoderTransferModule` is fine-tuning (any :class:`FinetuneModule` mode) of an
autoencoder source's encoder that also writes ``reconstructions.png`` (target training images
against their reconstructions by the pretrained autoencoder) into the trainer's root directory;
the source hands it the decoder (:class:`SourceAutoencoder`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from transferlab.core.errors import ConfigError
from transferlab.models.decoders import Autoencoder, build_autoencoder
from transferlab.modules.finetune import FinetuneModule
from transferlab.modules.optim import optimizer_config
from transferlab.modules.registry import register_strategy

log = logging.getLogger(__name__)

AE_VARIANTS = ("plain", "denoising", "masked")
NOISE_KINDS = ("gaussian", "dropout")
GRID_FILE = "reconstructions.png"
MIN_GRID_PIXELS = 32  # images are shown at least this wide


# ----------------------------------------------------------------------------- corruption


def patch_mask(
    batch: int,
    height: int,
    width: int,
    patch_size: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A ``(B, 1, H, W)`` bool mask, True on hidden pixels: per image, ``round(ratio * P)``
    (at least 1) of its P patches of ``patch_size`` x ``patch_size`` pixels, drawn at random."""
    rows, cols = -(-height // patch_size), -(-width // patch_size)
    patches = rows * cols
    hidden = min(patches, max(1, round(ratio * patches)))
    scores = torch.rand(batch, patches, generator=generator, device=device)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    grid = (ranks < hidden).view(batch, 1, rows, cols)
    pixels = grid.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return pixels[:, :, :height, :width]


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the pixels where ``mask`` (B, 1, H, W) is True, all channels."""
    weight = mask.to(recon.dtype).expand_as(recon)
    return ((recon - target) ** 2 * weight).sum() / weight.sum().clamp(min=1)


def _check_settings(
    variant: str, noise: str, noise_std: float, drop_prob: float, mask_ratio: float, patch: int
) -> None:
    if variant not in AE_VARIANTS:
        raise ConfigError(
            f"unknown autoencoder variant '{variant}'; valid: {', '.join(AE_VARIANTS)}"
        )
    if noise not in NOISE_KINDS:
        raise ConfigError(f"unknown denoising noise '{noise}'; valid: {', '.join(NOISE_KINDS)}")
    if noise_std < 0 or not 0 <= drop_prob < 1:
        raise ConfigError(
            f"noise_std must be >= 0 and drop_prob in [0, 1); got {noise_std}, {drop_prob}"
        )
    if not 0 < mask_ratio < 1 or patch < 1:
        raise ConfigError(
            f"masked: mask_ratio must be in (0, 1) and patch_size >= 1; got {mask_ratio}, {patch}"
        )


# ----------------------------------------------------------------------------- pretraining


class AutoencoderModule(L.LightningModule):
    """Reconstruction pretraining of ``autoencoder``; batches are ``(images, ...)``.

    Logs ``train/recon_loss`` (the variant's training loss), ``val/recon_loss`` (MSE of the
    reconstruction of clean held-out images) and ``val/mean_image_loss`` (MSE of predicting
    ``mean_image``, the mean training image: the trivial baseline).
    """

    def __init__(
        self,
        autoencoder: Autoencoder,
        mean_image: torch.Tensor,
        variant: str = "plain",
        noise: str = "gaussian",
        noise_std: float = 0.5,
        drop_prob: float = 0.25,
        mask_ratio: float = 0.5,
        patch_size: int = 4,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_settings(variant, noise, noise_std, drop_prob, mask_ratio, patch_size)
        self.autoencoder = autoencoder
        self.register_buffer("mean_image", mean_image.detach().clone())
        self.variant, self.noise = variant, noise
        self.noise_std, self.drop_prob = float(noise_std), float(drop_prob)
        self.mask_ratio, self.patch_size = float(mask_ratio), int(patch_size)
        self.optimizer_cfg = dict(optimizer or {"name": "adamw", "lr": 2e-3})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})

    def corrupt(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The variant's input for ``images`` and the mask of pixels the loss is taken on
        (None: all pixels). Hidden or dropped pixels are set to 0, the normalised mean."""
        if self.variant == "denoising" and self.noise == "gaussian":
            return images + self.noise_std * torch.randn_like(images), None
        if self.variant == "denoising":
            keep = torch.rand_like(images[:, :1]) >= self.drop_prob
            return images * keep, None
        if self.variant == "masked":
            b, _, h, w = images.shape
            mask = patch_mask(b, h, w, self.patch_size, self.mask_ratio, device=images.device)
            return images.masked_fill(mask, 0.0), mask
        return images, None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.autoencoder(images)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0]
        inputs, mask = self.corrupt(images)
        recon = self.autoencoder(inputs)
        loss = F.mse_loss(recon, images) if mask is None else masked_mse(recon, images, mask)
        self.log("train/recon_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = batch[0]
        recon = self.autoencoder(images)
        self.log("val/recon_loss", F.mse_loss(recon, images), on_epoch=True, prog_bar=True)
        baseline = F.mse_loss(self.mean_image.expand_as(images), images)
        self.log("val/mean_image_loss", baseline, on_epoch=True)

    def configure_optimizers(self) -> Any:
        params = [{"params": list(self.parameters())}]
        return optimizer_config(self.trainer, params, self.optimizer_cfg, self.scheduler_cfg)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def reconstruction_errors(
    autoencoder: Autoencoder,
    images: torch.Tensor,
    mean_image: torch.Tensor,
    batch_size: int = 512,
) -> dict[str, float]:
    """Per-pixel MSE of ``autoencoder``'s reconstructions of ``images`` and of predicting
    ``mean_image`` for every one (the trivial baseline), and their ratio."""
    was_training = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    recon_sum = base_sum = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        recon_sum += float(F.mse_loss(autoencoder(x), x, reduction="sum"))
        base_sum += float(F.mse_loss(mean_image.to(device).expand_as(x), x, reduction="sum"))
    autoencoder.train(was_training)
    count = images.numel()
    recon, base = recon_sum / count, base_sum / count
    return {
        "recon_loss": recon,
        "mean_image_loss": base,
        "recon_vs_mean_image": recon / base if base > 0 else float("nan"),
    }


@torch.no_grad()
def save_reconstruction_grid(
    module: AutoencoderModule | Autoencoder, images: torch.Tensor, path: str | Path
) -> Path:
    """A PNG grid: one column per image, rows = input, (corrupted input,) reconstruction."""
    autoencoder = module.autoencoder if isinstance(module, AutoencoderModule) else module
    was_training = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    x = images.to(device)
    rows = [x]
    if isinstance(module, AutoencoderModule) and module.variant != "plain":
        with torch.random.fork_rng():  # the same corruption in every figure, RNG untouched
            torch.manual_seed(0)
            x, _ = module.corrupt(x)
        rows.append(x)
    rows.append(autoencoder(x))
    autoencoder.train(was_training)
    channels = images.shape[1]
    grid = torch.cat([r[:, :3] if channels == 3 else r[:, :1] for r in rows]).cpu()
    scale = -(-MIN_GRID_PIXELS // grid.shape[-1])
    if scale > 1:  # tiny images (8x8 digits) are enlarged to stay visible
        grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    from torchvision.utils import make_grid, save_image  # here: only grid-writing runs need it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=len(images), normalize=True, pad_value=1.0), str(path))
    return path


# ----------------------------------------------------------------------------- transfer


@dataclass(frozen=True)
class SourceAutoencoder:
    """What an autoencoder source hands to the transfer module: its decoder's weights, the
    mean training image (the trivial baseline) and its held-out reconstruction errors."""

    decoder_state: dict[str, torch.Tensor]
    mean_image: torch.Tensor
    holdout_recon_loss: float | None = None
    holdout_mean_image_loss: float | None = None


@register_strategy("autoencoder", uses_source=True, required_source="autoencoder")
class AutoencoderTransferModule(FinetuneModule):
    """Fine-tuning (``mode``: linear_probe, full, ...) of an autoencoder source's encoder.

    At fit start, with the source's decoder (``source_autoencoder``), it writes
    ``reconstructions.png`` into the trainer's ``default_root_dir``: target training images
    against their reconstructions by the pretrained autoencoder, and adds the reconstruction
    error of those images (and the source's held-out one) to the test details. With
    ``source=random`` (the random-encoder control) there is no decoder and no grid.
    """

    strategy_name = "autoencoder"
    NOT_HYPERPARAMETERS = (*FinetuneModule.NOT_HYPERPARAMETERS, "source_autoencoder")

    def __init__(
        self, *args: Any, source_autoencoder: SourceAutoencoder | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # a tuple, so the decoder stays out of the state dict (checkpoints hold the classifier)
        self._source = (source_autoencoder,)
        self.recon_details: dict[str, Any] = {}

    def on_fit_start(self) -> None:
        super().on_fit_start()
        source = self._source[0]
        datamodule = getattr(self.trainer, "datamodule", None)
        if source is None or self.input_shape is None or datamodule is None:
            return
        images = datamodule.prepare_batch(next(iter(datamodule.train_dataloader()))[0])
        autoencoder = build_autoencoder(self.backbone, self.input_shape)
        autoencoder.decoder.load_state_dict(source.decoder_state)
        autoencoder.decoder.to(self.device)
        errors = reconstruction_errors(autoencoder, images, source.mean_image)
        self.recon_details = {
            "source_holdout_recon_loss": source.holdout_recon_loss,
            "source_holdout_mean_image_loss": source.holdout_mean_image_loss,
            **{f"target_train_{k}": v for k, v in errors.items()},
        }
        if self.trainer.is_global_zero:
            path = save_reconstruction_grid(
                autoencoder, images[:8], Path(self.trainer.default_root_dir) / GRID_FILE
            )
            log.info("reconstruction grid written to %s", path)
        self.train(self.training)  # frozen stages back in eval mode

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.test_details.update(self.recon_details)
