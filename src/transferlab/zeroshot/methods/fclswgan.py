"""f-CLSWGAN (Xian et al., CVPR 2018): a conditional WGAN-GP generates features of a class from
its semantics, trained on seen classes with a classification loss; then a softmax classifier
learns from real seen features plus synthetic features of the unseen classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.core.errors import DivergenceError
from transferlab.zeroshot.methods.base import (
    ClassSet,
    ZeroShotMethod,
    register_method,
    train_softmax,
)


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
class FCLSWGAN(ZeroShotMethod):
    """Train the generator for ``gan_steps`` generator updates (``n_critic`` critic updates
    each; gradient penalty weight ``gp_weight``; classification loss weight ``cls_weight``
    from a softmax classifier pretrained on real seen features), synthesise ``syn_per_class``
    features per unseen class, then fit the final softmax classifiers: seen + unseen classes
    (generalized ZSL) and unseen only (ZSL)."""

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
        self.gan_steps, self.n_critic = int(gan_steps), int(n_critic)
        self.gp_weight, self.cls_weight = float(gp_weight), float(cls_weight)
        self.hidden, self.noise_dim = int(hidden), noise_dim
        self.lr, self.batch_size = float(lr), int(batch_size)
        self.syn_per_class, self.cls_epochs = int(syn_per_class), int(cls_epochs)
        self.cls_lr = float(cls_lr)
        self.device = torch.device(device)

    def _train_gan(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> Generator:
        feat_dim, sem_dim = x.shape[1], semantics.shape[1]
        generator = Generator(sem_dim, self.noise_dim or sem_dim, self.hidden, feat_dim)
        critic = Critic(sem_dim, self.hidden, feat_dim)
        generator, critic = generator.to(self.device), critic.to(self.device)
        seen_cls = train_softmax(
            nn.Linear(feat_dim, len(semantics)).to(self.device),
            x,
            y,
            epochs=self.cls_epochs,
            lr=self.cls_lr,
        )
        seen_cls.requires_grad_(False)
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=(0.5, 0.999))
        for _ in range(self.gan_steps):
            for _ in range(self.n_critic):
                batch = torch.randint(len(x), (self.batch_size,), device=self.device)
                real, sem = x[batch], semantics[y[batch]]
                fake = generator(sem).detach()
                loss_d = critic(fake, sem).mean() - critic(real, sem).mean()
                loss_d = loss_d + self.gp_weight * gradient_penalty(critic, real, fake, sem)
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            batch = torch.randint(len(x), (self.batch_size,), device=self.device)
            sem = semantics[y[batch]]
            fake = generator(sem)
            loss_g = -critic(fake, sem).mean()
            loss_g = loss_g + self.cls_weight * F.cross_entropy(seen_cls(fake), y[batch])
            if not torch.isfinite(loss_g):
                raise DivergenceError(f"f-CLSWGAN generator loss is {loss_g.item()}")
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        return generator.eval()

    @torch.no_grad()
    def synthesise(self, semantics: torch.Tensor, per_class: int) -> tuple[torch.Tensor, ...]:
        """``per_class`` generated features for each row of ``semantics`` and their labels."""
        labels = torch.arange(len(semantics), device=self.device).repeat_interleave(per_class)
        return self.generator(semantics.to(self.device)[labels]), labels

    def fit(self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> FCLSWGAN:
        self.num_seen = len(seen)
        x, y = x.float().to(self.device), y.to(self.device)
        seen_sem = seen.semantics.float().to(self.device)
        self.generator = self._train_gan(x, y, seen_sem)
        fake, fake_y = self.synthesise(unseen.semantics.float(), self.syn_per_class)
        dim, total = x.shape[1], len(seen) + len(unseen)
        self.gzsl_cls = train_softmax(
            nn.Linear(dim, total).to(self.device),
            torch.cat([x, fake]),
            torch.cat([y, fake_y + len(seen)]),
            epochs=self.cls_epochs,
            lr=self.cls_lr,
        )
        self.zsl_cls = train_softmax(
            nn.Linear(dim, len(unseen)).to(self.device),
            fake,
            fake_y,
            epochs=self.cls_epochs,
            lr=self.cls_lr,
        )
        return self

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.gzsl_cls(x.float().to(self.device)), dim=1).cpu()

    @torch.no_grad()
    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.zsl_cls(x.float().to(self.device)), dim=1).cpu()
