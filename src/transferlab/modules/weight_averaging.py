"""Weight-space averaging of trained classifiers: WiSE-FT's interpolation toward the source
(``strategy.wise_alpha``) and model soups (``transferlab soup``).

- WiSE-FT (Wortsman et al., CVPR 2022, "Robust fine-tuning of zero-shot models"):
  ``theta = (1 - alpha) * theta_source + alpha * theta_finetuned`` on the weights that have a
  source counterpart; the rest (the new head, re-initialised stages) keeps its fine-tuned value.
- Model soups (Wortsman et al., ICML 2022, "Model soups: averaging weights of multiple
  fine-tuned models improves accuracy without increasing inference time"): the uniform average
  of every ingredient, and the greedy soup that adds ingredients in order of validation
  accuracy and keeps each only if the soup's validation accuracy does not drop.

States here are plain state dicts (``{name: tensor}``). Floating-point tensors are averaged;
integer ones (BatchNorm's ``num_batches_tracked``) keep the fine-tuned (first) value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from transferlab.core.errors import ConfigError

State = dict[str, torch.Tensor]
# the alphas ``strategy.wise_alpha=auto`` chooses among on the validation split
WISE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
T = TypeVar("T")


def wise_grid(value: Any) -> tuple[float, ...] | None:
    """The alphas a ``strategy.wise_alpha`` value asks for: one fixed alpha, the grid of
    ``auto``, or a list to choose from on validation (None: no WiSE-FT); one line otherwise."""
    if value is None:
        return None
    if value == "auto":
        return WISE_GRID
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = values and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values
    )
    if not ok:
        raise ConfigError(
            f"strategy.wise_alpha={value!r} is invalid; use a number in [0, 1] (0: the source's "
            "weights, 1: the fine-tuned ones), auto (chosen on validation among "
            f"{', '.join(str(a) for a in WISE_GRID)}), a list of such numbers, or null"
        )
    return tuple(sorted({float(v) for v in values}))


def interpolate(source: Mapping[str, torch.Tensor], finetuned: State, alpha: float) -> State:
    """``(1 - alpha) * source + alpha * finetuned`` for the floating-point tensors ``source``
    has; every other entry of ``finetuned`` as it is."""
    mixed = dict(finetuned)
    for key, start in source.items():
        end = finetuned.get(key)
        if end is None or not end.is_floating_point():
            continue
        start = start.to(device=end.device, dtype=end.dtype)
        mixed[key] = torch.lerp(start, end, alpha)
    return mixed


def average(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The uniform average of ``states`` (same keys and shapes); integer tensors from the
    first."""
    if not states:
        raise ValueError("an average of no states")
    first = states[0]
    out: State = {}
    for key, value in first.items():
        if value.is_floating_point():
            out[key] = torch.stack([s[key].to(value.device, value.dtype) for s in states]).mean(0)
        else:
            out[key] = value.clone()
    return out


def best_alpha(scores: Mapping[float, float]) -> float:
    """The alpha with the highest validation score; a tie goes to the larger alpha (closer to
    the fine-tuned model, the default without WiSE-FT)."""
    return max(scores, key=lambda a: (scores[a], a))


def greedy_soup(
    ranked: Sequence[T], score: Callable[[Sequence[T]], float]
) -> tuple[list[T], float, list[dict[str, Any]]]:
    """Wortsman et al.'s greedy soup: ``ranked`` (best validation accuracy first) are added one
    by one, each kept if ``score(soup + [it])`` is not below the soup's score so far (the soup
    of the first alone scores ``score([first])``). Returns the chosen ingredients, their
    score and one step record per candidate."""
    chosen = [ranked[0]]
    current = score(chosen)
    steps: list[dict[str, Any]] = [{"index": 0, "score": current, "kept": True}]
    for index, candidate in enumerate(ranked[1:], start=1):
        trial = score([*chosen, candidate])
        kept = trial >= current
        steps.append({"index": index, "score": trial, "kept": kept})
        if kept:
            chosen.append(candidate)
            current = trial
    return chosen, current, steps


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def recompute_batchnorm(module: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm layer's running statistics of ``module`` by the plain average
    over ``batches`` (inputs of ``module``), as ``torch.optim.swa_utils.update_bn`` does; the
    module's train/eval mode is restored. Returns how many inputs were seen."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = {m: m.momentum for m in norms}
    was_training = module.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    module.train()
    seen = 0
    device = next(module.parameters()).device
    with torch.no_grad():
        for inputs in batches:
            module(inputs.to(device))
            seen += len(inputs)
    for norm, momentum in momenta.items():
        norm.momentum = momentum
    module.train(was_training)
    return seen
