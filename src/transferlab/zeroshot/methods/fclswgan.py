"""f-CLSWGAN (Xian et al., CVPR 2018): a conditional WGAN-GP generates features of a class from
its semantics, trained on seen classes with a classification loss; then a softmax classifier
learns from real seen features plus synthetic features of the unseen classes. A LightningModule
trained in phases under the run's Trainer (manual optimization), so it checkpoints and resumes
as every other gradient method does."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from transferlab.zeroshot.methods.base import ClassSet, register_method
from transferlab.zeroshot.methods.module import ZeroShotDataModule, ZeroShotModule, finite

#: the phases of one fit, in order: pretrain the seen-class classifier of the classification
#: loss, train the GAN, then the GZSL (seen + unseen) and ZSL (unseen) softmax classifiers
PHASES = ("seen_cls", "gan", "gzsl_cls", "zsl_cls")
CLS_BATCH = 256
SYNTHETIC_KEY = "fclswgan_synthetic"


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, outputs)
    )


class Generator(nn.Module):
    """``G(z, a)``: noise and class semantics -> a non-negative feature (as pooled ReLU
    features are)."""

    def __init__(self, sem_dim: int, noise_dim: int, hidden: int, feat_dim: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(_mlp(noise_dim + sem_dim, hidden, feat_dim), nn.ReLU())

    def forward(self, semantics: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(len(semantics), self.noise_dim, device=semantics.device)
        return self.net(torch.cat([noise, semantics], dim=1))


class Critic(nn.Module):
    """``D(x, a)``: a feature and its class semantics -> a Wasserstein critic score."""

    def __init__(self, sem_dim: int, hidden: int, feat_dim: int) -> None:
        super().__init__()
        self.net = _mlp(feat_dim + sem_dim, hidden, 1)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, semantics], dim=1)).squeeze(1)


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, semantics: torch.Tensor
) -> torch.Tensor:
    """WGAN-GP: ``(||grad D(x_hat)|| - 1)^2`` on random interpolates of real and fake."""
    alpha = torch.rand(len(real), 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(mixed, semantics).sum(), mixed, create_graph=True)[0]
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


@register_method("fclswgan")
class FCLSWGAN(ZeroShotModule):
    """Train the generator for ``gan_steps`` generator updates (``n_critic`` critic updates
    each; gradient penalty weight ``gp_weight``; classification loss weight ``cls_weight``
    from a softmax classifier pretrained on real seen features), synthesise ``syn_per_class``
    features per unseen class, then fit the final softmax classifiers: seen + unseen classes
    (generalized ZSL) and unseen only (ZSL).

    Under the Trainer one fit is ``cls_epochs`` epochs of the seen classifier, the GAN in
    epochs of at most ``gan_steps_per_epoch`` generator steps (each step ``n_critic + 1``
    batches of ``batch_size`` drawn with replacement, as the hand-written loop drew them), then
    ``cls_epochs`` epochs of each final classifier (shuffled batches of 256). A checkpoint
    after any epoch resumes there; the synthetic features travel in it."""

    reload_data_each_epoch = True
    #: generator steps per GAN epoch (the checkpoint interval of the GAN phase)
    gan_steps_per_epoch = 100

    def __init__(
        self,
        gan_steps: int = 2000,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        cls_weight: float = 0.01,
        hidden: int = 512,
        noise_dim: int | None = None,
        lr: float = 1e-4,
        batch_size: int = 64,
        syn_per_class: int = 300,
        cls_epochs: int = 25,
        cls_lr: float = 1e-3,
        device: str = "cpu",
    ) -> None:
        super().__init__(device)
        self.automatic_optimization = False
        self.gan_steps, self.n_critic = int(gan_steps), int(n_critic)
        self.gp_weight, self.cls_weight = float(gp_weight), float(cls_weight)
        self.hidden, self.noise_dim = int(hidden), noise_dim
        self.lr, self.batch_size = float(lr), int(batch_size)
        self.syn_per_class, self.cls_epochs = int(syn_per_class), max(1, int(cls_epochs))
        self.cls_lr = float(cls_lr)
        self.synthetic: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- phases -----------------------------------------------------------------------------

    def phase_epochs(self) -> dict[str, int]:
        gan = math.ceil(max(0, self.gan_steps) / self.gan_steps_per_epoch)
        cls = self.cls_epochs
        return dict(zip(PHASES, (cls, gan, cls, cls)))

    @property
    def epochs(self) -> int:  # type: ignore[override]
        return sum(self.phase_epochs().values())

    def phase(self, epoch: int) -> tuple[str, int]:
        """The phase of ``epoch`` and the epoch's index within it."""
        for name, count in self.phase_epochs().items():
            if epoch < count:
                return name, epoch
            epoch -= count
        return PHASES[-1], epoch  # past the end (a trainer with more epochs): the last phase

    # -- setup --------------------------------------------------------------------------------

    def setup_classes(self, x: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> None:
        super().setup_classes(x, seen, unseen)
        feat_dim, sem_dim = x.shape[1], seen.semantics.shape[1]
        self.generator = Generator(sem_dim, self.noise_dim or sem_dim, self.hidden, feat_dim)
        self.critic = Critic(sem_dim, self.hidden, feat_dim)
        self.seen_cls = nn.Linear(feat_dim, len(seen))
        self.gzsl_cls = nn.Linear(feat_dim, len(seen) + len(unseen))
        self.zsl_cls = nn.Linear(feat_dim, len(unseen))
        self.synthetic = None

    def datamodule(self, x: torch.Tensor, y: torch.Tensor) -> ZeroShotDataModule:
        return ZeroShotDataModule(x.float(), y, self.batch_size, True, loader=self.loader)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        gan = {"lr": self.lr, "betas": (0.5, 0.999)}
        return [
            torch.optim.Adam(self.seen_cls.parameters(), lr=self.cls_lr),
            torch.optim.Adam(self.critic.parameters(), **gan),
            torch.optim.Adam(self.generator.parameters(), **gan),
            torch.optim.Adam(self.gzsl_cls.parameters(), lr=self.cls_lr),
            torch.optim.Adam(self.zsl_cls.parameters(), lr=self.cls_lr),
        ]

    def loader(self, x: torch.Tensor, y: torch.Tensor) -> DataLoader:
        """The data of the current epoch's phase."""
        name, index = self.phase(self.trainer.current_epoch)
        if name == "seen_cls":
            data = TensorDataset(x, y)
        elif name == "gan":
            done = index * self.gan_steps_per_epoch
            steps = min(self.gan_steps_per_epoch, self.gan_steps - done)
            data = TensorDataset(x, y)
            draws = steps * (self.n_critic + 1) * self.batch_size
            sampler = RandomSampler(data, replacement=True, num_samples=draws)
            return DataLoader(data, batch_size=self.batch_size, sampler=sampler)
        else:
            fake, fake_y = self.synthesise_unseen()
            if name == "gzsl_cls":
                data = TensorDataset(torch.cat([x, fake]), torch.cat([y, fake_y + self.num_seen]))
            else:
                data = TensorDataset(fake, fake_y)
        return DataLoader(data, batch_size=CLS_BATCH, shuffle=True)

    # -- training -----------------------------------------------------------------------------

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        name, _ = self.phase(self.current_epoch)
        opt_seen, opt_d, opt_g, opt_gzsl, opt_zsl = self.optimizers()
        x, y = batch
        if name == "gan":
            self.seen_cls.requires_grad_(False)
            role = batch_idx % (self.n_critic + 1)
            if role < self.n_critic:  # logged once per generator step
                key = "train/critic_loss" if role == self.n_critic - 1 else None
                return self._step(opt_d, self.critic_loss(x, y), key)
            return self._step(opt_g, self.generator_loss(y), "train/generator_loss")
        if name == "seen_cls":
            self.seen_cls.requires_grad_(True)
            return self._step(opt_seen, F.cross_entropy(self.seen_cls(x), y), "train/seen_loss")
        head, opt = (self.gzsl_cls, opt_gzsl) if name == "gzsl_cls" else (self.zsl_cls, opt_zsl)
        return self._step(opt, F.cross_entropy(head(x), y), f"train/{name}_loss")

    def _step(self, optimizer: Any, loss: torch.Tensor, key: str | None) -> torch.Tensor:
        finite(loss, f"f-CLSWGAN {key or 'train/critic_loss'}")
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        if key is not None:
            self.log(key, loss.detach(), on_step=False, on_epoch=True)
        return loss.detach()

    def critic_loss(self, real: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sem = self.seen_semantics[y]
        fake = self.generator(sem).detach()
        loss = self.critic(fake, sem).mean() - self.critic(real, sem).mean()
        return loss + self.gp_weight * gradient_penalty(self.critic, real, fake, sem)

    def generator_loss(self, y: torch.Tensor) -> torch.Tensor:
        sem = self.seen_semantics[y]
        fake = self.generator(sem)
        loss = -self.critic(fake, sem).mean()
        return loss + self.cls_weight * F.cross_entropy(self.seen_cls(fake), y)

    # -- synthetic features -------------------------------------------------------------------

    @torch.no_grad()
    def synthesise(self, semantics: torch.Tensor, per_class: int) -> tuple[torch.Tensor, ...]:
        """``per_class`` generated features for each row of ``semantics`` and their labels."""
        device = self.unseen_semantics.device
        labels = torch.arange(len(semantics), device=device).repeat_interleave(per_class)
        return self.generator(semantics.to(device)[labels]), labels

    def synthesise_unseen(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The unseen classes' synthetic features (made once, at the first classifier epoch;
        on the CPU, for the data loader)."""
        if self.synthetic is None:
            fake, labels = self.synthesise(self.unseen_semantics, self.syn_per_class)
            self.synthetic = (fake.cpu(), labels.cpu())
        return self.synthetic

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.synthetic is not None:
            checkpoint[SYNTHETIC_KEY] = self.synthetic

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.synthetic = checkpoint.get(SYNTHETIC_KEY)

    # -- scoring ------------------------------------------------------------------------------

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.batched(lambda batch: F.log_softmax(self.gzsl_cls(batch.float()), dim=1), x)

    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.batched(lambda batch: F.log_softmax(self.zsl_cls(batch.float()), dim=1), x)
