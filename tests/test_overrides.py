"""Overrides a researcher expects to work: any Trainer argument under ``trainer.``, and keys that
only some options of a swept group have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from hydra.core.global_hydra import GlobalHydra

from transferlab.core.overrides import expand_overrides


@pytest.fixture(autouse=True)
def _fresh_hydra() -> None:
    GlobalHydra.instance().clear()


def test_any_trainer_argument_is_force_added() -> None:
    args, dropped = expand_overrides(
        "train", ["trainer.fast_dev_run=true", "trainer.max_epochs=2", "seed=1"], multirun=False
    )
    # max_epochs is in the trainer config already: it stays a plain override
    assert args == ["++trainer.fast_dev_run=true", "trainer.max_epochs=2", "seed=1"]
    assert dropped == {}


def test_misspelt_trainer_key_is_left_for_the_key_check() -> None:
    args, _ = expand_overrides("train", ["trainer.max_epoch=3"], multirun=False)
    assert args == ["trainer.max_epoch=3"]


def test_key_of_some_swept_strategies_is_dropped_where_absent() -> None:
    args, dropped = expand_overrides(
        "train",
        ["-m", "strategy=finetune,scratch", "strategy.backbone_lr_ratio=1.0"],
        multirun=True,
    )
    assert args == ["-m", "strategy=finetune,scratch", "++strategy.backbone_lr_ratio=1.0"]
    assert dropped == {"strategy": {"scratch": ["strategy.backbone_lr_ratio"]}}


def test_sweep_declared_by_an_experiment_file_counts() -> None:
    _, dropped = expand_overrides(
        "train", ["-m", "experiment=fmnist_budgets", "strategy.backbone_lr_ratio=1.0"], True
    )
    assert dropped == {"strategy": {"scratch": ["strategy.backbone_lr_ratio"]}}
    # a Trainer argument the trainer config lacks does not hide the experiment's sweep
    _, dropped = expand_overrides(
        "train",
        [
            "-m",
            "experiment=fmnist_budgets",
            "strategy.backbone_lr_ratio=1.0",
            "trainer.fast_dev_run=true",
        ],
        True,
    )
    assert dropped == {"strategy": {"scratch": ["strategy.backbone_lr_ratio"]}}


def test_single_run_and_unknown_keys_are_not_rewritten() -> None:
    single = ["strategy=scratch", "strategy.backbone_lr_ratio=1.0"]
    assert expand_overrides("train", single, multirun=False) == (single, {})
    typo = ["-m", "strategy=finetune,scratch", "strategy.backbone_lr_ratoi=1.0"]
    assert expand_overrides("train", typo, multirun=True) == (typo, {})


def test_sweep_across_strategies_runs_every_job(tmp_path: Path) -> None:
    proc = run_cli(
        "train.py",
        "-m",
        "strategy=finetune,scratch",
        "source=random",
        "strategy.backbone_lr_ratio=1.0",
        "trainer.fast_dev_run=true",
        root=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "note: strategy.backbone_lr_ratio does not apply to strategy=scratch" in output, output
    assert "all 2 jobs finished" in output, output[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("results.json"))]
    assert len(records) == 2
    by_strategy = {r["config"]["strategy"]["name"]: r for r in records}
    assert by_strategy["finetune"]["config"]["strategy"]["backbone_lr_ratio"] == 1.0
    assert "backbone_lr_ratio" not in by_strategy["scratch"]["config"]["strategy"]
    assert {r["status"] for r in records} == {"debug"}  # fast_dev_run is recorded as debug
