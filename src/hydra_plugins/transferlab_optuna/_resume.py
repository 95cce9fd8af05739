"""Continuing a stored Optuna study (imported when a sweep starts, not by Hydra's plugin
scan)."""

from __future__ import annotations

import logging
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

log = logging.getLogger(__name__)

# the user attribute that marks a trial a killed command left running
INTERRUPTED = "interrupted"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def close_interrupted(study: optuna.Study) -> int:
    """Close the trials still ``RUNNING`` (or ``WAITING``) in ``study`` as ``FAIL`` with the
    user attribute ``interrupted``: one command runs a study at a time, so they are a killed
    command's. The number closed."""
    storage = study._storage
    stale = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.RUNNING, TrialState.WAITING)
    ]
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        storage.set_trial_state(trial._trial_id, TrialState.FAIL)
    return len(stale)


def finished_trials(study: optuna.Study) -> int:
    """The trials of ``study`` that count towards ``n_trials``: completed, pruned or failed by
    themselves (not interrupted)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in _FINISHED and not t.user_attrs.get(INTERRUPTED)
    )


def load_stored_study(storage: Any, study_name: str | None) -> optuna.Study | None:
    """The study ``study_name`` in ``storage``, or None (no storage, or no such study yet)."""
    if storage is None or not study_name:
        return None
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # optuna 2.10: the study does not exist yet
        return None


class ResumableSweeperImpl(OptunaSweeperImpl):
    """``OptunaSweeperImpl`` that first continues a stored study: it closes interrupted trials,
    runs only the trials ``n_trials`` still lacks and numbers jobs after the study's trials."""

    def sweep(self, arguments: list[str]) -> None:
        study = load_stored_study(self.storage, self.study_name)
        if study is not None:
            closed = close_interrupted(study)
            done = finished_trials(study)
            remaining = max(0, self.n_trials - done)
            log.info(
                "continuing study %s: %d of %d trials finished%s; %d to run",
                self.study_name,
                done,
                self.n_trials,
                f", {closed} interrupted trial(s) closed as failed" if closed else "",
                remaining,
            )
            self.n_trials = remaining
            self.job_idx = len(study.trials)
        super().sweep(arguments)
