"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``
(:mod:`~transferlab.cli.entry`), one job of them (:mod:`~transferlab.cli.job`), and the Hydra
callbacks around them (:mod:`~transferlab.cli.callbacks`)."""

from transferlab.cli.callbacks import MultirunSummary, OutputDirCheck
from transferlab.cli.entry import check_group_choices, check_override_keys, eval_main, train_main

__all__ = [
    "MultirunSummary",
    "OutputDirCheck",
    "check_group_choices",
    "check_override_keys",
    "eval_main",
    "train_main",
]
