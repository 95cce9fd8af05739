"""Fine-tuning a pretrained backbone (full, linear probe, partial, LP-FT, gradual unfreezing,
layer transfer) and training the same architecture from scratch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import torch
from lightning.pytorch.callbacks import Callback
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.modules.classifier import ClassifierModule
from transferlab.modules.ema import WeightEMA
from transferlab.modules.freezing import FREEZE_MODES, FreezeSchedule, reinitialize_stages
from transferlab.modules.peft import (
    ADAPTER_PREFIX,
    apply_peft,
    check_peft,
    lora_layers,
    restrict_trainable,
    use_plain_state_dict,
)
from transferlab.modules.registry import register_strategy
from transferlab.modules.regularizers import ModelParts, build_regularizer, check_regularizer
from transferlab.modules.weight_averaging import interpolate, wise_grid

FINETUNE_MODES = FREEZE_MODES
MethodNode = str | Mapping[str, Any] | None  # a method name, or {name: ..., <its options>}
Decay = Annotated[float, Field(gt=0.0, lt=1.0)]
# strategy.wise_alpha: an alpha in [0, 1], "auto" or a list of alphas (chosen on validation)
WiseAlpha = float | str | list[float] | None
REGULARIZER_STATE = "regularizer_state"  # a checkpoint's key for a regulariser's own state


@register_strategy("finetune", uses_source=True)
class FinetuneModule(ClassifierModule):
    """Adapt a pretrained backbone to the target task.

    ``mode`` (with ``freeze_stages``, ``lp_epochs``, ``unfreeze_every``) is the
    :class:`FreezeSchedule`: ``full``, ``linear_probe``, ``partial``, ``lp_ft`` or ``gradual``.
    In ``full`` and the unfrozen phases the backbone learns at ``backbone_lr_ratio`` x the
    head's rate. ``transfer_stages`` keeps only that many lower stages of the pretrained
    backbone and re-initialises the rest (layer transfer, Yosinski et al. 2014; null keeps all).

    The fine-tuning toolbox (docs/finetune_toolbox.md), in every mode: ``regularizer`` adds a
    loss term (``modules/regularizers.py``: l2sp, delta, bss), ``peft`` limits which backbone
    weights train (``modules/peft.py``: bitfit, norm, lora) and ``ema`` (a decay) validates
    and tests an exponential moving average of the weights. ``wise_alpha`` keeps the source's
    weights so that the run's task can interpolate toward them after the fit (WiSE-FT,
    :meth:`wise_state`). ``source_head`` is the source's classifier head (an object the source
    hands over), which ``regularizer=cotuning`` needs.
    """

    strategy_name = "finetune"
    NOT_HYPERPARAMETERS = (*ClassifierModule.NOT_HYPERPARAMETERS, "source_head")

    def __init__(
        self,
        *args: Any,
        mode: str = "full",
        backbone_lr_ratio: NonNegativeFloat = 0.1,
        freeze_stages: NonNegativeInt = 0,
        lp_epochs: NonNegativeInt = 5,
        unfreeze_every: PositiveInt = 1,
        transfer_stages: NonNegativeInt | None = None,
        regularizer: MethodNode = None,
        peft: MethodNode = None,
        ema: Decay | None = None,
        wise_alpha: WiseAlpha = None,
        source_head: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        schedule = self.check_options(
            mode=mode,
            backbone_lr_ratio=backbone_lr_ratio,
            freeze_stages=freeze_stages,
            lp_epochs=lp_epochs,
            unfreeze_every=unfreeze_every,
            regularizer=regularizer,
            peft=peft,
            wise_alpha=wise_alpha,
        )
        super().__init__(*args, freeze=schedule, **kwargs)
        stages = self.backbone.stages()
        if transfer_stages is not None and not 0 <= transfer_stages <= len(stages):
            raise ConfigError(
                f"transfer_stages={transfer_stages} but {self.backbone.name} has {len(stages)} "
                f"stages; use 0..{len(stages)} or null (all)"
            )
        kept = len(stages) if transfer_stages is None else transfer_stages
        # WiSE-FT's end point: the source's weights, less the stages re-initialised next
        self.wise_alphas = wise_grid(wise_alpha)
        self.wise_source = self.source_state(stages[kept:]) if self.wise_alphas else {}
        reinitialize_stages(stages[kept:])
        self.transfer_stages = kept
        self.mode = mode
        self.backbone_lr_ratio = backbone_lr_ratio
        # before any adapter changes the backbone: the regulariser keeps the source's state
        parts = ModelParts(self, kept, source_head)
        self.regularizer = build_regularizer(regularizer, parts)
        # the un-augmented training batches a regulariser reads before training (the task's)
        self.training_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.peft_trainable = apply_peft(self.backbone, peft)
        if lora_layers(self.backbone):  # checkpoints hold the merged, plain weights
            use_plain_state_dict(self)
        self.ema = ema

    @classmethod
    def check_options(
        cls,
        mode: str = "full",
        backbone_lr_ratio: float = 0.1,
        freeze_stages: int = 0,
        lp_epochs: int = 5,
        unfreeze_every: int = 1,
        regularizer: MethodNode = None,
        peft: MethodNode = None,
        wise_alpha: WiseAlpha = None,
        **_: Any,
    ) -> FreezeSchedule:
        """Refuse invalid option values (called before any source is built); the schedule."""
        schedule = FreezeSchedule(mode, freeze_stages, lp_epochs, unfreeze_every)
        wise_grid(wise_alpha)
        reg_name, _options = check_regularizer(regularizer)
        peft_name, _options = check_peft(peft)
        if reg_name == "l2sp" and peft_name == "lora":
            raise ConfigError(
                "regularizer=l2sp penalises how far the backbone weights move, but peft=lora "
                "keeps them frozen (only its adapters train); use peft=none|bitfit|norm with "
                "l2sp, or regularizer=delta|bss with lora"
            )
        return schedule

    def source_state(self, fresh: Iterable[nn.Module]) -> dict[str, torch.Tensor]:
        """A copy of the backbone's state as the module's keys (``backbone.*``), without the
        tensors of the ``fresh`` (re-initialised) stages: what WiSE-FT interpolates toward."""
        skip = {id(t) for stage in fresh for t in stage.state_dict(keep_vars=True).values()}
        return {
            f"backbone.{k}": v.detach().clone()
            for k, v in self.backbone.state_dict(keep_vars=True).items()
            if id(v) not in skip
        }

    def plain_state(self) -> dict[str, torch.Tensor]:
        """A copy of the module's state dict without LoRA's adapter tensors (adapted layers
        merged)."""
        return {
            k: v.detach().clone()
            for k, v in self.state_dict().items()
            if not k.startswith(ADAPTER_PREFIX)
        }

    def wise_state(self, finetuned: dict[str, torch.Tensor], alpha: float) -> dict[str, Any]:
        """WiSE-FT: ``(1 - alpha) * source + alpha * finetuned`` on the weights with a source
        counterpart (BatchNorm statistics included); the head and re-initialised stages as
        fine-tuned. ``finetuned`` is a :meth:`plain_state`; the result loads into this module
        (a LoRA layer then holds the interpolated weight as its base, its update zero)."""
        return interpolate(self.wise_source, finetuned, alpha)

    def backbone_lr_scale(self) -> float:
        return self.backbone_lr_ratio

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The backbone and head groups, plus a regulariser's own weights (Co-Tuning's source
        head) at the backbone's learning rate, as TLlib."""
        groups = super().parameter_groups()
        extra = self.regularizer.extra_parameters() if self.regularizer is not None else []
        if extra:
            groups.append({"params": extra, "lr_scale": self.backbone_lr_scale(), "name": "reg"})
        return groups

    def on_train_start(self) -> None:
        """A regulariser that reads the training images does so here, at the source weights
        (not ``on_fit_start``: that hook would keep the frozen-feature cache off)."""
        regularizer = self.regularizer
        if regularizer is None or not regularizer.needs_training_data():
            return  # none needed, or restored from the checkpoint a resumed fit started at
        if self.training_batches is None:
            raise RuntimeError("this regulariser reads the training images: set training_batches")
        precision = self.trainer.precision_plugin
        training = self.training
        self.eval()

        def features(inputs: torch.Tensor) -> torch.Tensor:
            with precision.forward_context():
                return self.features(precision.convert_input(inputs.to(self.device)))

        regularizer.prepare(self.training_batches, features)
        self.train(training)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.regularizer is not None and self.regularizer.state_dict():
            checkpoint[REGULARIZER_STATE] = self.regularizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.regularizer is not None and REGULARIZER_STATE in checkpoint:
            self.regularizer.load_state_dict(checkpoint[REGULARIZER_STATE])

    def limit_trainable(self) -> None:
        restrict_trainable(self.backbone, self.peft_trainable)

    def regularization(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if self.regularizer is None:
            return {}
        return self.regularizer.terms(images, labels, features, logits)

    def configure_callbacks(self) -> list[Callback]:
        """The weight average (``ema``) while fitting; a test reads the checkpoint's average."""
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        return [WeightEMA(self.ema)] if self.ema is not None and fitting else []


@register_strategy("scratch", uses_source=False)
class ScratchModule(ClassifierModule):
    """The same architecture trained from random initialisation: the baseline."""

    strategy_name = "scratch"
