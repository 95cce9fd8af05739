"""Self-supervised pretraining of a backbone on unlabelled image batches (``source=ssl``).

The methods take lightly's losses, projection/prediction heads and momentum utilities
(``pip install -e '.[ssl]'``), on the backbone's pooled features:

- ``simclr`` (Chen et al. 2020): NT-Xent between the projections of two views;
- ``moco`` (MoCo v2, He et al. 2020): NT-Xent of a query against a momentum encoder's key and
  a memory bank of earlier keys;
- ``byol`` (Grill et al. 2020): predict a momentum encoder's projection of the other view;
- ``simsiam`` (Chen & He 2021): the same with a stop-gradient instead of a momentum encoder;
- ``barlowtwins`` (Zbontar et al. 2021) and ``vicreg`` (Bardes et al. 2022): redundancy
  reduction / variance-invariance-covariance between the two views' projections.

The two views come from :class:`TwoViewAugment`, a batched augmentation of the in-memory,
already normalised float batches (per-image random resized crop and flip, intensity jitter and
Gaussian blur). lightly's view transforms are per-image PIL/torchvision pipelines for uint8 or
[0, 1] images (their colour jitter clamps to [0, 1], their blur goes through PIL): they do not
fit normalised batches, and per-image calls cost more than a small CNN's training step
(docs/ssl.md). :func:`knn_accuracy` is the weighted cosine kNN probe of the features.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.core.schema import typed
from transferlab.models.features import pooled_features
from transferlab.modules.optim import optimizer_config

INSTALL_HINT = "pip install -e '.[ssl]'"


def lightly_parts() -> tuple[Any, Any, Any]:
    """lightly's ``loss``, ``models.modules`` and ``models.utils`` modules; one ConfigError
    line naming the install command when lightly is missing."""
    try:
        from lightly import loss
        from lightly.models import modules, utils
    except ImportError:
        raise ConfigError(f"source=ssl needs the lightly library: {INSTALL_HINT}") from None
    return loss, modules, utils


@dataclass(frozen=True)
class SSLMethod:
    """A method as lightly's parts: its projection head, prediction head (None: none), loss
    (class names in lightly), whether a momentum encoder gives the targets, and whether the
    loss takes ``temperature`` (and a memory bank: ``memory_bank_size``)."""

    projection: str
    prediction: str | None
    loss: str
    momentum: bool = False
    temperature: bool = False
    memory_bank: bool = False


SSL_METHODS: Registry[SSLMethod] = Registry("source.method")
SSL_METHODS.register(
    "simclr", SSLMethod("SimCLRProjectionHead", None, "NTXentLoss", temperature=True)
)
SSL_METHODS.register(
    "moco",
    SSLMethod(
        "MoCoProjectionHead", None, "NTXentLoss", momentum=True, temperature=True, memory_bank=True
    ),
)
SSL_METHODS.register(
    "byol",
    SSLMethod("BYOLProjectionHead", "BYOLPredictionHead", "NegativeCosineSimilarity", True),
)
SSL_METHODS.register(
    "simsiam",
    SSLMethod("SimSiamProjectionHead", "SimSiamPredictionHead", "NegativeCosineSimilarity"),
)
SSL_METHODS.register("barlowtwins", SSLMethod("BarlowTwinsProjectionHead", None, "BarlowTwinsLoss"))
SSL_METHODS.register("vicreg", SSLMethod("BarlowTwinsProjectionHead", None, "VICRegLoss"))


# ----------------------------------------------------------------------------- two views


class TwoViewAugment(nn.Module):
    """Random views of a float batch (B, C, H, W), each image with its own draw: a resized
    crop of ``min_scale``-1 of its area (aspect 3/4-4/3) and a horizontal flip (``hflip``) in
    one resampling, with probability 0.8 an intensity jitter ``x * a + b`` (``a`` in 1 +-
    ``jitter``, ``b`` in +-``jitter``, normalised units), and with probability ``blur_prob``
    a Gaussian blur of sigma in ``blur_sigma`` px. Draws come from torch's generators."""

    @typed("source.augment")
    def __init__(
        self,
        min_scale: PositiveFloat = 0.25,
        hflip: bool = True,
        jitter: NonNegativeFloat = 0.4,
        blur_prob: NonNegativeFloat = 0.5,
        blur_sigma: Sequence[PositiveFloat] = (0.1, 1.5),
    ) -> None:
        super().__init__()
        sigma = tuple(float(s) for s in blur_sigma)
        if not 0 < min_scale <= 1 or blur_prob > 1 or len(sigma) != 2 or sigma[0] > sigma[1]:
            raise ConfigError(
                "source.augment: min_scale must be in (0, 1], blur_prob in [0, 1] and "
                f"blur_sigma a (low, high) range; got {min_scale}, {blur_prob}, {blur_sigma}"
            )
        self.min_scale, self.hflip, self.jitter = float(min_scale), hflip, float(jitter)
        self.blur_prob, self.blur_sigma = float(blur_prob), sigma

    def _crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        b, device = x.shape[0], x.device
        area = torch.empty(b, device=device).uniform_(self.min_scale, 1.0)
        log_ratio = torch.empty(b, device=device).uniform_(math.log(3 / 4), math.log(4 / 3))
        width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
        height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)
        flip = torch.rand(b, device=device) < 0.5 if self.hflip else torch.zeros(b, dtype=bool)
        theta[:, 0, 0] = torch.where(flip.to(device), -width, width)
        theta[:, 1, 1] = height
        theta[:, 0, 2] = (torch.rand(b, device=device) * 2 - 1) * (1 - width)
        theta[:, 1, 2] = (torch.rand(b, device=device) * 2 - 1) * (1 - height)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        radius = min(math.ceil(2 * self.blur_sigma[1]), (min(h, w) - 1) // 2)
        if radius < 1:
            return x
        low, high = self.blur_sigma
        sigma = torch.empty(b, device=x.device).uniform_(low, high)
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
        blurred = torch.rand(b, device=x.device) < self.blur_prob
        kernel = torch.where(blurred[:, None], kernel, (offsets == 0).to(x.dtype)[None])
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, k)
        y = F.pad(x.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
        y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)  # rows
        y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)  # columns
        return y.view(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One random view of every image of ``x``."""
        x = self._crop_flip(x)
        if self.jitter:
            b = x.shape[0]
            on = (torch.rand(b, 1, 1, 1, device=x.device) < 0.8).to(x.dtype)
            scale = 1 + on * self.jitter * (torch.rand_like(on) * 2 - 1)
            shift = on * self.jitter * (torch.rand_like(on) * 2 - 1)
            x = x * scale + shift
        return self._blur(x) if self.blur_prob else x


# ----------------------------------------------------------------------------- kNN probe


def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.1,
) -> float:
    """Accuracy of the weighted cosine kNN classifier (Wu et al. 2018): each query's ``k``
    most similar bank features vote for their labels with weight ``exp(sim / temperature)``."""
    bank, queries = F.normalize(bank.float(), dim=1), F.normalize(queries.float(), dim=1)
    classes = int(max(bank_labels.max(), query_labels.max())) + 1
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(queries), 1024):
        sim, idx = (queries[start : start + 1024] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), classes).scatter_add_(
            1, bank_labels[idx], (sim / temperature).exp()
        )
        correct += int((votes.argmax(1) == query_labels[start : start + 1024]).sum())
    return correct / max(1, len(queries))


@dataclass(frozen=True)
class KnnProbe:
    """The labelled images of a kNN probe: the bank (training images) and the queries
    (held-out images), with ``k`` and ``temperature``."""

    bank: torch.Tensor
    bank_labels: torch.Tensor
    queries: torch.Tensor
    query_labels: torch.Tensor
    k: int = 20
    temperature: float = 0.1

    def accuracy(self, backbone: nn.Module, device: torch.device | str = "cpu") -> float:
        """The kNN accuracy of ``backbone``'s pooled features (eval mode)."""
        bank = pooled_features(backbone, self.bank, device=device)
        queries = pooled_features(backbone, self.queries, device=device)
        return knn_accuracy(
            bank, self.bank_labels, queries, self.query_labels, self.k, self.temperature
        )


# ----------------------------------------------------------------------------- the module


class SSLModule(L.LightningModule):
    """Self-supervised pretraining of ``backbone`` with ``method`` (:data:`SSL_METHODS`) on
    batches ``(images, ...)`` (labels unused). Logs ``train/ssl_loss`` and, with a ``knn``
    probe, ``val/knn_acc`` at the end of every training epoch (kept in ``knn_history``)."""

    def __init__(
        self,
        backbone: nn.Module,
        method: str = "simclr",
        projection_dim: PositiveInt = 128,
        hidden_dim: PositiveInt = 512,
        temperature: PositiveFloat = 0.5,
        momentum: float = 0.99,
        memory_bank_size: PositiveInt = 4096,
        augment: Mapping[str, Any] | None = None,
        knn: KnnProbe | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.method_name = str(method)
        self.method = SSL_METHODS.get(self.method_name)
        if not 0 <= momentum < 1:
            raise ConfigError(f"source.momentum={momentum} is invalid; use a number in [0, 1)")
        loss, heads, utils = lightly_parts()
        self._update_momentum = utils.update_momentum
        self.backbone = backbone
        in_dim = int(backbone.num_features)
        self.projection = getattr(heads, self.method.projection)(in_dim, hidden_dim, projection_dim)
        self.prediction = (
            getattr(heads, self.method.prediction)(projection_dim, hidden_dim, projection_dim)
            if self.method.prediction
            else None
        )
        self.momentum_encoder: nn.Module | None = None
        if self.method.momentum:
            self.momentum_encoder = nn.Sequential(
                copy.deepcopy(self.backbone), copy.deepcopy(self.projection)
            )
            utils.deactivate_requires_grad(self.momentum_encoder)
        loss_kwargs: dict[str, Any] = {}
        if self.method.temperature:
            loss_kwargs["temperature"] = float(temperature)
        if self.method.memory_bank:
            loss_kwargs["memory_bank_size"] = (int(memory_bank_size), int(projection_dim))
        self.criterion = getattr(loss, self.method.loss)(**loss_kwargs)
        self.base_momentum = float(momentum)
        self.augment = TwoViewAugment(**dict(augment or {}))
        self._knn = (knn,)  # a tuple: the probe's images stay out of the state dict
        self.knn_history: list[float] = []
        self.optimizer_cfg = dict(optimizer or {"name": "adamw", "lr": 2e-3})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(images))

    @torch.no_grad()
    def _target(self, images: torch.Tensor) -> torch.Tensor:
        assert self.momentum_encoder is not None
        return self.momentum_encoder(images).detach()

    def _momentum_step(self) -> None:
        """Move the momentum encoder towards the online one; the rate follows a cosine
        schedule from ``momentum`` to 1 over the run (BYOL)."""
        if self.momentum_encoder is None:
            return
        total = max(1, int(self.trainer.estimated_stepping_batches))
        progress = min(1.0, self.global_step / total)
        rate = 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2
        online = nn.Sequential(self.backbone, self.projection)
        self._update_momentum(online, self.momentum_encoder, rate)

    def ssl_loss(self, images: torch.Tensor) -> torch.Tensor:
        """The method's loss on two random views of ``images``."""
        x0, x1 = self.augment(images), self.augment(images)
        z0, z1 = self.project(x0), self.project(x1)
        if self.prediction is not None:  # BYOL, SimSiam: predict the other view's target
            if self.momentum_encoder is not None:
                t0, t1 = self._target(x0), self._target(x1)
            else:
                t0, t1 = z0.detach(), z1.detach()
            p0, p1 = self.prediction(z0), self.prediction(z1)
            return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        if self.momentum_encoder is not None:  # MoCo: queries against momentum keys
            return 0.5 * (
                self.criterion(z0, self._target(x1)) + self.criterion(z1, self._target(x0))
            )
        return self.criterion(z0, z1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self._momentum_step()
        loss = self.ssl_loss(batch[0])
        self.log("train/ssl_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        probe = self._knn[0]
        if probe is None:
            return
        acc = probe.accuracy(self.backbone, self.device)
        self.knn_history.append(acc)
        self.log("val/knn_acc", acc, prog_bar=True)

    def configure_optimizers(self) -> Any:
        params = [{"params": [p for p in self.parameters() if p.requires_grad]}]
        return optimizer_config(self.trainer, params, self.optimizer_cfg, self.scheduler_cfg)
