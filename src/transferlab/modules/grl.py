"""The gradient reversal layer of DANN (Ganin & Lempitsky 2015) and its lambda schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _ReverseGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``-lambda`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.neg() * ctx.lambda_, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-lambda_`` on the way back."""
    return _ReverseGrad.apply(x, lambda_)


class GradientReversal(nn.Module):
    """:func:`grad_reverse` as a module (``lambda_`` may be changed between steps)."""

    def __init__(self, lambda_: float = 1.0) -> None:
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambda_)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The DANN schedule ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, -> 1 at the end,
    so the noisy early domain signal does not disturb the classifier."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
