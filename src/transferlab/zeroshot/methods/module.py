"""Zero-shot methods as LightningModules: the shared skeleton.

:class:`ZeroShotModule` fits under a Lightning Trainer on a :class:`ZeroShotDataModule` (the
seen-class training inputs) and scores inputs against class semantics. Closed-form methods
(:class:`ClosedFormModule`) accumulate sufficient statistics in ``training_step`` over one
epoch and solve in ``on_train_epoch_end``; gradient methods train with their own optimizer,
checkpoints and resume as every other strategy does; a method of several phases (f-CLSWGAN)
gets each epoch's data from its own ``loader`` (``reload_data_each_epoch``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from transferlab.core.errors import ConfigError, DivergenceError
from transferlab.zeroshot.methods.base import ClassSet, ZeroShotMethod

SCORE_BATCH = 1024
# a closed-form fit has no optimizer by design
warnings.filterwarnings("ignore", message=r".*configure_optimizers. returned .None.")


def finite(loss: torch.Tensor, what: str = "zero-shot training") -> torch.Tensor:
    """``loss``, or a DivergenceError naming ``what`` when it is not finite."""
    if not torch.isfinite(loss):
        raise DivergenceError(f"{what} diverged (loss {loss.item()})")
    return loss


class ZeroShotDataModule(L.LightningDataModule):
    """The seen-class training inputs of one fit (features, or preprocessed images) and their
    class columns; shuffled with the global RNG so a resumed fit continues the same stream.
    ``loader`` (given the inputs and labels) replaces the plain shuffled loader: a method whose
    epochs differ (phases) builds each epoch's loader itself."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        loader: Callable[[torch.Tensor, torch.Tensor], DataLoader] | None = None,
    ) -> None:
        super().__init__()
        if len(x) != len(y) or len(x) == 0:
            raise ConfigError(
                f"zero-shot fit needs training inputs ({len(x)} inputs, {len(y)} labels)"
            )
        self.x, self.y = x, y
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.loader = loader

    def train_dataloader(self) -> DataLoader:
        if self.loader is not None:
            return self.loader(self.x, self.y)
        return DataLoader(
            TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=self.shuffle
        )


def bare_trainer(max_epochs: int, device: str = "cpu") -> L.Trainer:
    """A trainer without loggers, checkpoints or progress bar (fits outside a run: tests)."""
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="gpu" if str(device).startswith("cuda") else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


class ZeroShotModule(L.LightningModule, ZeroShotMethod):
    """A zero-shot method as a LightningModule. Subclasses build their parameters in
    :meth:`setup_classes` and score with :meth:`compatibility` (``(N, K)`` for ``(K, a)``
    semantics); ``fit`` runs the Trainer. Columns: seen classes first, then unseen."""

    #: epochs of one fit (closed forms: 1) and the batch size of its data module
    epochs = 1
    batch_size = 4096
    shuffle = False
    #: whether each epoch has its own data (the trainer then rebuilds the loader each epoch)
    reload_data_each_epoch = False

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.score_device = torch.device(device)

    def setup_classes(self, x: torch.Tensor, seen: ClassSet, unseen: ClassSet) -> None:
        """Remember the classes' semantics (buffers: they travel in checkpoints)."""
        self.num_seen = len(seen)
        self.register_buffer("seen_semantics", seen.semantics.float())
        self.register_buffer("unseen_semantics", unseen.semantics.float())

    def datamodule(self, x: torch.Tensor, y: torch.Tensor) -> ZeroShotDataModule:
        return ZeroShotDataModule(x, y, self.batch_size, self.shuffle)

    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        seen: ClassSet,
        unseen: ClassSet,
        trainer: L.Trainer | None = None,
        ckpt_path: str | None = None,
    ) -> ZeroShotModule:
        """Fit on seen-class inputs ``x`` with column labels ``y`` under ``trainer`` (a bare
        one by default), continuing from ``ckpt_path`` if given."""
        self.setup_classes(x, seen, unseen)
        trainer = trainer or bare_trainer(self.epochs, str(self.score_device))
        if self.reload_data_each_epoch:
            trainer.reload_dataloaders_every_n_epochs = 1
        trainer.fit(self, datamodule=self.datamodule(x, y), ckpt_path=ckpt_path)
        return self.eval()

    def compatibility(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def batched(
        self, score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """``score`` of ``x`` in batches on the scoring device, on the CPU."""
        self.to(self.score_device).eval()
        return torch.cat(
            [score(batch.to(self.score_device)).cpu() for batch in x.split(SCORE_BATCH)]
        )

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        semantics = torch.cat([self.seen_semantics, self.unseen_semantics])
        return self.batched(lambda batch: self.compatibility(batch, semantics), x)

    def zsl_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.batched(lambda batch: self.compatibility(batch, self.unseen_semantics), x)


@dataclass
class SufficientStats:
    """What the closed forms need from ``N`` inputs ``X`` ``(N, d)`` of ``K`` classes, summed
    batch by batch in float64: ``X^T X`` ``(d, d)``, per-class sums ``(K, d)`` and counts."""

    xtx: torch.Tensor
    class_sums: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def zeros(cls, dim: int, classes: int, device: torch.device | str = "cpu") -> SufficientStats:
        z = dict(dtype=torch.float64, device=device)
        return cls(
            torch.zeros(dim, dim, **z), torch.zeros(classes, dim, **z), torch.zeros(classes, **z)
        )

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, classes: int) -> SufficientStats:
        return cls.zeros(x.shape[1], classes, x.device).add(x, y)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> SufficientStats:
        x64 = x.reshape(len(x), -1).double()
        self.xtx += x64.T @ x64
        self.class_sums.index_add_(0, y, x64)
        self.counts += torch.bincount(y, minlength=len(self.counts)).double()
        return self

    def cpu(self) -> SufficientStats:
        return SufficientStats(self.xtx.cpu(), self.class_sums.cpu(), self.counts.cpu())

    def class_means(self) -> torch.Tensor:
        return self.class_sums / self.counts.clamp(min=1)[:, None]

    def mean(self) -> torch.Tensor:
        """The mean input ``(d,)``."""
        return self.class_sums.sum(dim=0) / self.counts.sum().clamp(min=1)

    def centred(self) -> SufficientStats:
        """The statistics of the inputs minus their mean."""
        mean, n = self.mean(), self.counts.sum()
        return SufficientStats(
            self.xtx - n * torch.outer(mean, mean),
            self.class_sums - self.counts[:, None] * mean,
            self.counts,
        )


class ClosedFormModule(ZeroShotModule):
    """A method solved in closed form: one epoch accumulates :class:`SufficientStats`, its end
    calls :meth:`solve`, which returns the weights (a buffer: ``self.weights``)."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self.automatic_optimization = False

    def configure_optimizers(self) -> None:
        return None

    def on_train_epoch_start(self) -> None:
        self.stats: SufficientStats | None = None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        if self.stats is None:
            self.stats = SufficientStats.zeros(x.shape[1], self.num_seen, x.device)
        self.stats.add(x, y)

    def on_train_epoch_end(self) -> None:
        weights = self.solve(self.stats.cpu())
        self.register_buffer("weights", weights.float().to(self.device))
        self.stats = None

    def solve(self, stats: SufficientStats) -> torch.Tensor:
        raise NotImplementedError
