"""WiSE-FT after the fit (``strategy.wise_alpha``, docs/finetune_toolbox.md): the weights the
test would use (the best-on-validation checkpoint, the EMA average where ``ema`` is set) are
interpolated toward the source's, ``(1 - alpha) * source + alpha * finetuned``, at the alpha
given or the one of a grid that scores best on the validation split; the test then runs with
those weights. The checks that refuse WiSE-FT without source weights live here too."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import ConfigError
from transferlab.core.store import atomic_write
from transferlab.modules.weight_averaging import best_alpha, wise_grid
from transferlab.tasks.checkpoints import write_payload

log = logging.getLogger(__name__)

# sources whose weights are no pretrained end point to interpolate toward
NO_SOURCE_WEIGHTS = ("none", "random")
WISE_CHECKPOINT = "wise.ckpt"  # next to the fine-tuned best checkpoint: the weights tested


def check_wise(strategy_cfg: Mapping[str, Any], source_kind: str) -> tuple[float, ...] | None:
    """The alphas of ``strategy.wise_alpha`` (None: off); one line when the run has no source
    weights to interpolate toward."""
    alphas = wise_grid(strategy_cfg.get("wise_alpha"))
    if alphas is None:
        return None
    if source_kind in NO_SOURCE_WEIGHTS:
        raise ConfigError(
            f"strategy.wise_alpha interpolates toward the source's pretrained weights, but "
            f"source={source_kind} has none; use source=pretrain|imagenet|checkpoint or "
            "strategy.wise_alpha=null"
        )
    if strategy_cfg.get("transfer_stages") == 0:
        raise ConfigError(
            "strategy.wise_alpha interpolates toward the source's weights, but "
            "transfer_stages=0 keeps none of them; use transfer_stages >= 1 (null: all) or "
            "strategy.wise_alpha=null"
        )
    return alphas


def validation_accuracy(trainer: L.Trainer, module: L.LightningModule, data: Any) -> float:
    """``val/acc`` of ``module`` as it is, on ``data``'s validation split."""
    results = trainer.validate(module, datamodule=data, verbose=False)
    return float(results[0]["val/acc"])


def wise_step(
    module: Any,
    alphas: tuple[float, ...],
    make_validator: Callable[[], L.Trainer],
    images: L.LightningDataModule,
) -> Callable[[str | None], dict[str, Any]]:
    """What the run does between fit and test: ``step(best_checkpoint)`` loads the weights the
    test would use, scores each alpha on ``images``' validation split (a bare trainer from
    ``make_validator``: no callbacks, so no EMA swaps in its own average) and leaves the
    chosen interpolation in ``module``; it returns the results record's ``wise`` entry."""

    def step(best: str | None) -> dict[str, Any]:
        payload = read_checkpoint(best) if best is not None else None
        if payload is not None:
            module.load_state_dict(payload["state_dict"])
        finetuned = module.plain_state()
        validator = make_validator()
        scores: dict[float, float] = {}
        for alpha in alphas:
            module.load_state_dict(module.wise_state(finetuned, alpha))
            scores[alpha] = validation_accuracy(validator, module, images)
            log.info("WiSE-FT alpha %.2f: val/acc %.4f", alpha, scores[alpha])
        chosen = best_alpha(scores)
        module.load_state_dict(module.wise_state(finetuned, chosen))
        how = "given" if len(alphas) == 1 else "chosen on the validation split"
        log.info("WiSE-FT: testing alpha %.2f (%s)", chosen, how)
        record = {
            "alpha": chosen,
            "alpha_from": how,
            "val_acc": {str(a): s for a, s in scores.items()},
            "finetuned_checkpoint": best,
            "checkpoint": None,
        }
        if payload is not None and best is not None:
            record["checkpoint"] = str(save_weights(payload, module, Path(best)))
        return record

    return step


def save_weights(payload: dict[str, Any], module: Any, best: Path) -> Path:
    """``wise.ckpt`` beside ``best``: its payload (run record included, so ``eval.py``,
    ``transferlab export`` and ``source=checkpoint`` read it) with the interpolated weights.
    The raw weights an EMA run keeps for resuming do not belong to these and are left out."""
    path = best.with_name(WISE_CHECKPOINT)
    saved = {k: v for k, v in payload.items() if k != "current_model_state"}
    saved["state_dict"] = module.state_dict()
    atomic_write(path, lambda handle: write_payload(saved, handle))
    return path
