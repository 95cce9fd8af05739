"""An Optuna study in a SQLite storage: a killed search is continued by re-running the same
command (src/hydra_plugins/transferlab_optuna), without alembic's log noise."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_command, cli_env, run_cli

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.transferlab_optuna._resume import (  # noqa: E402
    INTERRUPTED,
    ResumableSweeperImpl,
    close_interrupted,
    finished_trials,
)

STUDY = "digits_finetune"  # conf/hparams_search/digits_optuna.yaml


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=url)


def _stored_study_with_a_killed_trial(url: str) -> None:
    """Two finished trials (one completed, one failed by itself) and one left running."""
    study = optuna.create_study(study_name=STUDY, storage=url, direction="maximize")
    study.tell(study.ask(), 0.5)
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask()  # a command killed during this trial never tells it


def test_sqlite_storage_works_and_interrupted_trials_are_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    _stored_study_with_a_killed_trial(url)
    study = _study(url)
    assert finished_trials(study) == 2
    assert close_interrupted(study) == 1
    last = _study(url).trials[-1]
    assert last.state == TrialState.FAIL and last.user_attrs[INTERRUPTED] is True
    assert finished_trials(_study(url)) == 2  # an interrupted trial does not count


def test_rerun_runs_only_the_trials_the_study_lacks(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    _stored_study_with_a_killed_trial(url)
    seen: dict[str, int] = {}

    def parent_sweep(self: OptunaSweeperImpl, arguments: list[str]) -> None:
        seen.update(n_trials=self.n_trials, job_idx=self.job_idx)

    monkeypatch.setattr(OptunaSweeperImpl, "sweep", parent_sweep)
    impl = ResumableSweeperImpl(
        sampler=None,
        direction="maximize",
        storage=url,
        study_name=STUDY,
        n_trials=5,
        n_jobs=1,
        max_failure_rate=1.0,
        search_space=None,
        custom_search_space=None,
        params=None,
    )
    impl.sweep([])
    # 2 of 5 finished: 3 to run, numbered after the study's 3 trials
    assert seen == {"n_trials": 3, "job_idx": 3}


def test_hydra_finds_the_resumable_sweeper() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = {c.__name__ for c in Plugins.instance().discover(Sweeper)}
    assert "ResumableOptunaSweeper" in names


@pytest.mark.slow
def test_killed_study_continues_when_the_command_is_rerun(tmp_path: Path) -> None:
    sweep, url = tmp_path / "search", f"sqlite:///{tmp_path}/optuna.db"
    args = (
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweep.dir={sweep}",
        "debug=limit",
        "trainer.max_epochs=1",
        "print_config=false",
    )
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        cli_command("train.py", *args),
        env=cli_env(tmp_path),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 300
    try:  # kill the search once trial 0 is done and trial 1 has started
        while not (sweep / "1" / ".hydra" / "config.yaml").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "trial 1 never started"
            time.sleep(0.05)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    killed = _study(url)
    assert finished_trials(killed) == 1
    assert [t.state for t in killed.trials] == [TrialState.COMPLETE, TrialState.RUNNING]

    again = run_cli("train.py", *args, root=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert "1 of 3 trials finished, 1 interrupted trial(s) closed as failed; 2 to run" in output
    study = _study(url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]  # the same study, continued
    assert study.trials[1].state == TrialState.FAIL and study.trials[1].user_attrs[INTERRUPTED]
    assert finished_trials(study) == 3
    assert (sweep / "2" / "results.json").is_file() and (sweep / "3" / "results.json").is_file()
    for text in (output, (tmp_path / "first.log").read_text()):
        assert "setup plugin alembic" not in text
