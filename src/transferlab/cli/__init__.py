"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``
(:mod:`~transferlab.cli.entry`), one job of them (:mod:`~transferlab.cli.job`), and the Hydra
callbacks around them (:mod:`~transferlab.cli.callbacks`)."""

from transferlab.core.startup import skip_torchmetrics_transformers

# before anything imports Lightning (and with it torchmetrics), also in sweep workers that
# unpickle a job from here: see transferlab/core/startup.py
skip_torchmetrics_transformers()

from transferlab.cli.callbacks import MultirunSummary, OutputDirCheck  # noqa: E402
from transferlab.cli.entry import (  # noqa: E402
    check_group_choices,
    check_override_keys,
    eval_main,
    train_main,
)

__all__ = [
    "MultirunSummary",
    "OutputDirCheck",
    "check_group_choices",
    "check_override_keys",
    "eval_main",
    "train_main",
]
