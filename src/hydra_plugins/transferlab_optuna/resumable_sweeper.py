"""``ResumableOptunaSweeper``: hydra-optuna-sweeper's ``OptunaSweeper`` whose study, when kept
in a storage (``hydra.sweeper.storage=sqlite:///...`` with a ``study_name``), is continued by
re-running the same command: ``n_trials`` counts the study's finished trials, trials a killed
command left running are closed as failed (``interrupted``) and run again, and new trials'
job directories follow the study's trial numbers.

Hydra finds sweepers in the ``hydra_plugins`` namespace only, hence this package. Without the
``[scale]`` extra it defines nothing (and Hydra's plugin scan stays quiet)."""

from __future__ import annotations

import logging
from typing import Any

# optuna imports alembic (its storage migrations), which logs a "setup plugin ..." line per
# plugin at INFO; Hydra imports optuna (the sampler) before the sweeper is built, so this is
# set when Hydra scans its plugins
logging.getLogger("alembic").setLevel(logging.WARNING)

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # hydra-optuna-sweeper is not installed
    OptunaSweeper = None

if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """The Optuna sweeper with a study that a re-run of the command continues."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # the parent's constructor only builds its implementation: this one replaces it
            from ._resume import ResumableSweeperImpl

            self.sweeper = ResumableSweeperImpl(*args, **kwargs)
