"""Unsupervised domain adaptation: a source-trained classifier adapted with unlabelled target
images (DANN, Tent, pseudo-labels), beside the source-only and target-supervised bounds."""

from transferlab.adapt.grl import GradientReversal, dann_lambda, grad_reverse
from transferlab.adapt.methods import (
    ADAPT_METHODS,
    AdaptModule,
    DANNModule,
    PseudoLabelModule,
    TentModule,
)

__all__ = [
    "ADAPT_METHODS",
    "AdaptModule",
    "DANNModule",
    "GradientReversal",
    "PseudoLabelModule",
    "TentModule",
    "dann_lambda",
    "grad_reverse",
]
