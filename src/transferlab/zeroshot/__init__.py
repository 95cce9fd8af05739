"""Zero-shot recognition from class semantics: ``strategy=zeroshot`` (see docs/zeroshot.md)."""

from transferlab.zeroshot.metrics import gzsl_metrics, harmonic_mean, zsl_accuracy
from transferlab.zeroshot.semantics import class_semantics, read_attribute_csv
from transferlab.zeroshot.splits import ClassSplit, resolve_split

__all__ = [
    "ClassSplit",
    "class_semantics",
    "gzsl_metrics",
    "harmonic_mean",
    "read_attribute_csv",
    "resolve_split",
    "zsl_accuracy",
]
