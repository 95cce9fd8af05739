"""scripts/paired_from_published.py: paired intervals from a published report.json."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paired_from_published.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paired_from_published", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(path: Path) -> Path:
    groups = [
        {"method": "finetune full", "budget_label": "5", "seeds": [0, 1, 2, 3],
         "values": [0.70, 0.72, 0.69, 0.75]},
        {"method": "scratch", "budget_label": "5", "seeds": [1, 2, 3, 4],
         "values": [0.60, 0.66, 0.70, 0.50]},
    ]  # fmt: skip
    path.write_text(json.dumps({"metric": "test/acc", "groups": groups}), encoding="utf-8")
    return path


def test_pairs_on_common_seeds_with_the_t_interval(tmp_path: Path) -> None:
    report = _report(tmp_path / "report.json")
    out = tmp_path / "paired.csv"
    assert (
        _script().main([str(report), "--compare", "finetune+full:scratch", "--out", str(out)]) == 0
    )
    with open(out, encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    diffs = np.array([0.72 - 0.60, 0.69 - 0.66, 0.75 - 0.70])  # seeds 1, 2, 3
    low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
    assert row["seeds"] == "1 2 3" and row["unpaired_a"] == "0" and row["unpaired_b"] == "4"
    assert float(row["mean_diff"]) == pytest.approx(diffs.mean(), abs=1e-12)
    assert float(row["ci_low"]) == pytest.approx(low, abs=1e-12)
    assert float(row["ci_high"]) == pytest.approx(high, abs=1e-12)
    assert "finetune full − scratch" in (tmp_path / "paired.md").read_text(encoding="utf-8")


def test_an_unknown_row_is_one_line_naming_the_rows(tmp_path: Path) -> None:
    report = _report(tmp_path / "report.json")
    with pytest.raises(SystemExit) as info:
        _script().main([str(report), "--compare", "lp:scratch"])
    assert str(info.value) == (
        "error: no row named 'lp' in the report; its rows are: finetune full, scratch"
    )
    assert not (tmp_path / "paired.csv").exists()


def test_rows_pair_at_each_budget_both_have(tmp_path: Path) -> None:
    groups = [
        {"method": "a", "budget_label": "5", "seeds": [0, 1], "values": [0.5, 0.7]},
        {"method": "a", "budget_label": "20", "seeds": [0, 1], "values": [0.9, 0.8]},
        {"method": "a", "budget_label": "all", "seeds": [0, 1], "values": [0.9, 0.9]},
        {"method": "b", "budget_label": "5", "seeds": [0, 1], "values": [0.4, 0.4]},
        {"method": "b", "budget_label": "20", "seeds": [0, 1], "values": [0.8, 0.8]},
    ]
    rows = _script().paired_rows({"metric": "test/acc", "groups": groups}, [("a", "b")])
    assert [row["budget_label"] for row in rows] == ["5", "20"]  # "all": b has no such row
    assert [row["mean_diff"] for row in rows] == pytest.approx([0.2, 0.05])


def test_rows_with_no_common_budget_are_one_line() -> None:
    groups = [
        {"method": "a", "budget_label": "5", "seeds": [0], "values": [0.5]},
        {"method": "b", "budget_label": "20", "seeds": [0], "values": [0.4]},
    ]
    with pytest.raises(SystemExit, match=r"rows 'a' \(budgets 5\) and 'b' \(budgets 20\) share no"):
        _script().paired_rows({"metric": "test/acc", "groups": groups}, [("a", "b")])


def test_two_reports_pool_their_rows(tmp_path: Path) -> None:
    first = _report(tmp_path / "first.json")
    other = {"method": "lora", "budget_label": "5", "seeds": [0, 1], "values": [0.80, 0.70]}
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"metric": "test/acc", "groups": [other]}), encoding="utf-8")
    out = tmp_path / "paired.csv"
    _script().main([str(first), str(second), "--compare", "lora:finetune+full", "--out", str(out)])
    with open(out, encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["seeds"] == "0 1"
    assert float(row["mean_diff"]) == pytest.approx(((0.80 - 0.70) + (0.70 - 0.72)) / 2)


def test_a_row_in_two_reports_is_one_line(tmp_path: Path) -> None:
    first, second = _report(tmp_path / "a.json"), _report(tmp_path / "b.json")
    with pytest.raises(SystemExit) as info:
        _script().main([str(first), str(second), "--compare", "finetune+full:scratch"])
    assert str(info.value).startswith("error: row 'finetune full' is in both")
