"""A GAN trained with Lightning manual optimization: one generator and one discriminator
optimizer, losses ``nonsaturating`` (Goodfellow et al. 2014), ``hinge`` (Miyato et al. 2018)
or ``wgan_gp`` (Gulrajani et al. 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from transferlab.core.errors import ConfigError
from transferlab.models import backbone_kwargs
from transferlab.models.generators import (
    DCGANGenerator,
    Discriminator,
    build_discriminator,
    check_discriminator_backbone,
    check_generator_fits,
)
from transferlab.modules.callbacks import check_finite

GAN_LOSSES = ("nonsaturating", "hinge", "wgan_gp")
SAMPLES_FILE = "samples.png"


def discriminator_loss(loss: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> Any:
    """The discriminator's (critic's) loss without the gradient penalty."""
    if loss == "nonsaturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def generator_loss(loss: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss: non-saturating log D(G(z)), or -D(G(z)) for hinge and WGAN."""
    if loss == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def gradient_penalty(
    discriminator: Discriminator, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 on random interpolates of real and fake images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


class GANModule(L.LightningModule):
    """Adversarial training of ``generator`` against ``discriminator``.

    Each training batch makes one discriminator step; every ``n_critic``-th batch also makes a
    generator step. Logs ``train/d_loss`` and ``train/g_loss``. Both optimizers' states are in
    the checkpoint, so a resumed run continues where it stopped. A non-finite loss raises
    :class:`DivergenceError` before any optimizer step, so the weights and the checkpoints
    saved before stay good. At the end of training a grid from fixed noise is written to
    ``sample_dir/samples.png``.
    """

    def __init__(
        self,
        generator: DCGANGenerator,
        discriminator: Discriminator,
        loss: str = "nonsaturating",
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_critic: int = 1,
        gp_weight: float = 10.0,
        num_samples: int = 64,
        sample_dir: str | Path | None = None,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if loss not in GAN_LOSSES:
            raise ConfigError(f"unknown GAN loss '{loss}'; valid: {', '.join(GAN_LOSSES)}")
        if n_critic < 1 or lr_g <= 0 or lr_d <= 0:
            raise ConfigError("GAN: n_critic must be >= 1 and learning rates > 0")
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self.loss_name = loss
        self.lr_g, self.lr_d, self.betas = float(lr_g), float(lr_d), tuple(betas)
        self.n_critic, self.gp_weight = int(n_critic), float(gp_weight)
        self.sample_dir = Path(sample_dir) if sample_dir is not None else None
        noise = torch.randn(
            num_samples, generator.latent_dim, generator=torch.Generator().manual_seed(noise_seed)
        )
        self.register_buffer("fixed_noise", noise)
        self._shape_checked = False
        self.d_steps = 0  # discriminator steps so far (saved in checkpoints)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, device=self.device)

    def _check_finite(self, name: str, value: torch.Tensor) -> None:
        """Before any optimizer step, so a diverged loss never reaches the weights."""
        check_finite(
            value,
            f"step {self.global_step}",
            what="GAN training",
            name=name,
            kept="the weights were not updated and checkpoints saved before stay as they were",
            hint="lower strategy.lr_g/lr_d or use strategy.loss=hinge",
        )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not self._shape_checked:
            check_generator_fits(self.generator, real.shape[1:])
            self._shape_checked = True
        opt_g, opt_d = self.optimizers()
        fake = self.generator(self._noise(real.shape[0]))

        d_loss = discriminator_loss(
            self.loss_name, self.discriminator(real), self.discriminator(fake.detach())
        )
        if self.loss_name == "wgan_gp":
            d_loss = d_loss + self.gp_weight * gradient_penalty(
                self.discriminator, real, fake.detach()
            )
        self._check_finite("the discriminator loss", d_loss)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.d_steps += 1
        self.log("train/d_loss", d_loss.detach(), on_step=True, on_epoch=True, prog_bar=True)

        if self.d_steps % self.n_critic == 0:
            g_loss = generator_loss(self.loss_name, self.discriminator(fake))
            self._check_finite("the generator loss", g_loss)
            opt_g.zero_grad()
            self.manual_backward(g_loss)
            opt_g.step()
            self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gan_d_steps"] = self.d_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.d_steps = int(checkpoint.get("gan_d_steps", 0))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = self.betas if self.loss_name != "wgan_gp" else (0.0, 0.9)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.lr_d, betas=betas),
        ]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
        """``n`` generated images (normalised input space), from seeded noise, in eval mode."""
        was_training = self.generator.training
        self.generator.eval()
        rng = torch.Generator().manual_seed(seed)
        chunks = []
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), self.generator.latent_dim, generator=rng)
            chunks.append(self.generator(z.to(self.device)).cpu())
        self.generator.train(was_training)
        return torch.cat(chunks)

    @torch.no_grad()
    def save_samples(self, path: str | Path) -> Path:
        """A PNG grid of the generator's images from the fixed noise."""
        from torchvision.utils import save_image  # here: only grid-writing runs need it

        was_training = self.generator.training
        self.generator.eval()
        images = self.generator.pixels(self.fixed_noise).cpu()
        self.generator.train(was_training)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, path, nrow=int(len(images) ** 0.5), padding=1)
        return path

    def on_train_end(self) -> None:
        if self.sample_dir is not None:
            self.save_samples(self.sample_dir / SAMPLES_FILE)


def gan_module_from_cfg(
    cfg: Mapping[str, Any],
    generator: DCGANGenerator,
    discriminator: Discriminator,
    sample_dir: str | Path | None = None,
) -> GANModule:
    """A :class:`GANModule` with the training options of a ``strategy``/``source`` config."""
    return GANModule(
        generator,
        discriminator,
        loss=str(cfg.get("loss", "nonsaturating")),
        lr_g=float(cfg.get("lr_g", 2e-4)),
        lr_d=float(cfg.get("lr_d", 2e-4)),
        betas=tuple(cfg.get("betas", (0.5, 0.999))),
        n_critic=int(cfg.get("n_critic", 1)),
        gp_weight=float(cfg.get("gp_weight", 10.0)),
        sample_dir=sample_dir,
        noise_seed=int(cfg.get("seed", 0) or 0),
    )


def build_gan_networks(
    model_cfg: Mapping[str, Any],
    gan_cfg: Mapping[str, Any],
    image_shape: tuple[int, int, int],
    mean: list[float],
    std: list[float],
) -> tuple[DCGANGenerator, Discriminator]:
    """The generator (sized to ``image_shape``) and the discriminator whose trunk is the
    configured backbone (``model_cfg``)."""
    check_discriminator_backbone(str(model_cfg["name"]))
    generator = DCGANGenerator(
        int(gan_cfg.get("latent_dim", 100)),
        image_shape[0],
        image_shape[1],
        width=int(gan_cfg.get("generator_width", 16)),
        mean=mean,
        std=std,
    )
    discriminator = build_discriminator(
        str(model_cfg["name"]),
        image_shape,
        small_input=model_cfg.get("small_input"),
        **backbone_kwargs(model_cfg),
    )
    return generator, discriminator


@torch.no_grad()
def recalibrate_batchnorm(
    trunk: torch.nn.Module, images: torch.Tensor, batch_size: int = 256
) -> None:
    """Re-estimate the trunk's BatchNorm running statistics on real images only (adversarial
    training mixes real and generated batches into them)."""
    norms = [m for m in trunk.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = trunk.training
    device = next(trunk.parameters()).device
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches
    trunk.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            trunk(images[start : start + batch_size].to(device))
    for norm in norms:
        norm.momentum = 0.1
    trunk.train(was_training)
