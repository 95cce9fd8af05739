"""Semi-supervised transfer: fine-tuning on the labelled target images plus the unlabelled
target pool. FixMatch (Sohn et al. 2020) and the pseudo-label baseline (Lee 2013)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt

from transferlab.core.registry import Registry
from transferlab.data.strong_augment import StrongAugment
from transferlab.modules.finetune import FinetuneModule
from transferlab.modules.pseudo_labels import pseudo_label_loss
from transferlab.modules.registry import register_strategy

Threshold = Annotated[float, Field(gt=0.0, le=1.0)]
Batch = Mapping[str, Any]


@dataclass(frozen=True)
class SemisupMethod:
    """Which unlabelled view gives the pseudo-labels (``label_view``) and which one is trained
    on them (``train_view``)."""

    label_view: str
    train_view: str
    doc: str

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.label_view, self.train_view)))


SEMISUP_METHODS: Registry[SemisupMethod] = Registry("strategy.method")
SEMISUP_METHODS.register(
    "fixmatch",
    SemisupMethod("weak", "strong", "pseudo-labels of weak views train the strong views"),
)
SEMISUP_METHODS.register(
    "pseudo_label",
    SemisupMethod("weak", "weak", "pseudo-labels train the same (weak) view (Lee 2013)"),
)


@register_strategy("semisup", uses_source=True)
class SemisupModule(FinetuneModule):
    """Fine-tuning (every ``strategy=finetune`` option: modes, ``backbone_lr_ratio``, ...) whose
    training batches also hold ``mu`` x as many unlabelled target images.

    Loss: cross-entropy on the labelled batch (``loss_x``) + ``lambda_u`` x the cross-entropy
    of the ``train_view`` against the hard pseudo-labels of the ``label_view`` where their
    confidence is at least ``threshold`` (``loss_u``, averaged over all unlabelled images);
    ``mask_rate`` is the fraction above the threshold. ``strong_augment`` holds the options of
    :class:`StrongAugment` (applied by the data side: see ``data/unlabelled_pool.py``).
    """

    strategy_name = "semisup"

    def __init__(
        self,
        *args: Any,
        method: str = "fixmatch",
        threshold: Threshold = 0.95,
        lambda_u: NonNegativeFloat = 1.0,
        mu: PositiveInt = 7,
        strong_augment: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.check_semisup(method, strong_augment)
        super().__init__(*args, **kwargs)
        self.method = method
        self.semisup = SEMISUP_METHODS.get(method)
        self.threshold = float(threshold)
        self.lambda_u = float(lambda_u)
        self.mu = int(mu)
        self.strong_augment = dict(strong_augment or {})

    @staticmethod
    def check_semisup(method: str, strong_augment: Mapping[str, Any] | None) -> None:
        """One ConfigError line for an unknown method or strong-augmentation option."""
        SEMISUP_METHODS.get(str(method))
        StrongAugment(**dict(strong_augment or {}))

    @classmethod
    def check_options(
        cls,
        method: str = "fixmatch",
        strong_augment: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        cls.check_semisup(method, strong_augment)
        return super().check_options(**options)

    @property
    def views(self) -> tuple[str, ...]:
        """The unlabelled views a training batch must hold."""
        return self.semisup.views

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch["labelled"]
        views = batch["unlabelled"]
        label_view, train_view = self.semisup.label_view, self.semisup.train_view
        separate = label_view != train_view
        if separate:  # the pseudo-labels' view needs no gradient
            with torch.no_grad():
                label_logits = self(views[label_view])
        features = self.features(torch.cat([images, views[train_view]]))
        logits = self.head(features)
        n = len(images)
        labelled_logits, unlabelled_logits = logits[:n], logits[n:]
        if not separate:
            label_logits = unlabelled_logits.detach()
        loss_x = F.cross_entropy(labelled_logits, labels, label_smoothing=self.label_smoothing)
        probabilities = label_logits.float().softmax(dim=1)
        loss_u, mask = pseudo_label_loss(probabilities, unlabelled_logits, self.threshold)
        terms = self.regularization(images, labels, features[:n], labelled_logits)
        loss = loss_x + self.lambda_u * loss_u + sum(terms.values())
        self.train_acc(labelled_logits, labels)
        epoch = {"on_step": False, "on_epoch": True, "batch_size": n}
        self.log("train/loss", loss, prog_bar=True, **epoch)
        self.log("train/acc", self.train_acc, **epoch)
        self.log("train/loss_x", loss_x, **epoch)
        self.log("train/loss_u", loss_u, **epoch)
        self.log("train/mask_rate", mask.mean(), **epoch)
        for name, value in terms.items():
            self.log(f"train/{name}", value, **epoch)
        return loss
