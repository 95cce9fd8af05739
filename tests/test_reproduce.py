"""One-command reproductions: a real (small) multirun through the report, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from transferlab.report import build_report


def test_report_on_a_real_multirun_has_one_row_per_configuration(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        "strategy=finetune,scratch",
        "seed=0,1",
        "trainer.max_epochs=3",
        "print_config=false",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
        root=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = build_report([sweep], tmp_path / "report")
    rows = {(g["method"], g["budget_label"]): g["n"] for g in report["groups"]}
    assert rows == {("finetune/full", "5"): 2, ("scratch", "5"): 2}
    (paired,) = report["paired"]
    assert paired["n_pairs"] == 2 and paired["seeds"] == [0, 1]
    assert (tmp_path / "report" / "report.md").is_file()


@pytest.mark.slow  # 37-55 s on 2 cores: in the slow suite (CI runs it)
def test_reproduce_fmnist_budgets_quick_runs_offline(tmp_path: Path) -> None:
    proc = run_cli("scripts/reproduce_fmnist_budgets.sh", "--quick", root=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "logs" / "reproduce" / "fmnist_budgets_quick" / "report"
    summary = json.loads((out / "report.json").read_text())
    cells = {(g["method"], g["budget_label"]) for g in summary["groups"]}
    assert cells == {(m, b) for m in ("finetune/full", "scratch") for b in ("5", "20")}
    assert all(g["n"] == 1 and g["mean"] > 0.5 for g in summary["groups"])
    assert (out / "accuracy_vs_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
