"""The report over hand-made results files with known numbers (no training)."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import REPO, run_cli
from scipy import stats

from transferlab.commands import main
from transferlab.core.errors import ConfigError
from transferlab.report import aggregate, build_report, get_key, load_runs, paired_comparisons
from transferlab.report.tables import pivot, pivot_markdown, summary_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STD_3 = math.sqrt(((0.80 - 0.83) ** 2 + (0.82 - 0.83) ** 2 + (0.87 - 0.83) ** 2) / 2)


def write_run(
    root: Path,
    name: str,
    strategy: str,
    lpc: int | None,
    seed: int,
    acc: float | None,
    *,
    mode: str | None = None,
    status: str = "completed",
    wall: float = 10.0,
    details: bool = False,
    strategy_cfg: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    per_class: dict[str, float] | None = None,
    confusion: list[list[int]] | None = None,
) -> Path:
    """One ``<root>/<name>/results.json`` shaped like ``transferlab.core.results.write_results``;
    ``config`` is merged into the record's config (one level deep: ``{"trainer": {...}}``)."""
    mode = mode if mode is not None else ("full" if strategy == "finetune" else None)
    record: dict[str, Any] = {
        "schema": 1,
        "status": status,
        "task": "train",
        "identity": {
            "strategy": strategy,
            "mode": mode,
            "model": "small_cnn",
            "source": "pretrain",
            "source_key": "k",
            "dataset": "fashion_mnist",
            "classes": [5, 6, 7, 8, 9],
            "labels_per_class": lpc,
            "label_fraction": None,
            "seed": seed,
            "tags": [],
        },
        "metrics": {} if acc is None else {"test/acc": acc, "test/loss": 1.0 - acc},
        "config": {
            "strategy": {
                "name": strategy,
                "mode": mode,
                "freeze_stages": 1,
                **(strategy_cfg or {}),
            },
            "model": {"name": "small_cnn"},
            "data": {"labels_per_class": lpc},
        },
        "versions": {},
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict) and isinstance(record["config"].get(section), dict):
            record["config"][section].update(values)
        else:
            record["config"][section] = values
    if status in ("completed", "debug"):
        record["wall_time_s"] = wall
        record["epochs_trained"] = 30
    else:
        record["error"] = "RuntimeError: boom"
    if details:
        record["test_details"] = {
            "per_class_acc": per_class or {"Sandal": 0.9, "Shirt": 0.6, "Sneaker": 0.95},
            "confusion_matrix": confusion or [[9, 1, 0], [2, 6, 2], [0, 1, 19]],
            "class_names": list(per_class or {}) or ["Sandal", "Shirt", "Sneaker"],
        }
    path = root / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    return path


# finetune/full and scratch: labels per class -> seed -> test/acc (None: a failed run)
FINETUNE = {5: {0: 0.80, 1: 0.82, 2: 0.87}, 20: {0: 0.90, 1: 0.92}, 100: {0: 0.95}, None: {0: 0.97}}
SCRATCH = {
    5: {0: 0.78, 1: 0.81, 2: 0.80},
    20: {0: 0.91, 1: 0.94, 3: 0.95},
    None: {0: None, 1: 0.96},
}


def make_sweep(root: Path) -> Path:
    """A multirun directory: numbered run dirs, one failed run, one corrupt file, one empty dir."""
    i = 0
    for strategy, table in (("finetune", FINETUNE), ("scratch", SCRATCH)):
        for lpc, by_seed in table.items():
            for seed, acc in by_seed.items():
                status = "failed" if acc is None else "completed"
                write_run(
                    root,
                    str(i),
                    strategy,
                    lpc,
                    seed,
                    acc,
                    status=status,
                    wall=10.0 + i,
                    details=(strategy, lpc, seed) == ("finetune", None, 0),
                )
                i += 1
    (root / str(i)).mkdir()  # a run that never wrote results.json
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def built(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("report")
    return build_report([sweep], out), out


def group(groups: list[dict], method: str, budget: Any) -> dict:
    (found,) = [g for g in groups if g["method"] == method and g["budget"] == budget]
    return found


def test_load_runs_recursive_skips_bad_json(sweep: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="transferlab.report"):
        runs = load_runs([sweep, sweep / "0"])  # the same file twice is loaded once
    assert len(runs) == 15
    assert [r.message for r in caplog.records if "broken" in r.message]
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].message


def test_get_key_identity_then_config(sweep: Path) -> None:
    run = json.loads((sweep / "0" / "results.json").read_text())
    assert get_key(run, "strategy") == "finetune"  # identity, not the config section
    assert get_key(run, "labels_per_class") == 5
    assert get_key(run, "strategy.freeze_stages") == 1  # dotted config path
    assert get_key(run, "freeze_stages") == 1  # a bare name found in one config section
    assert get_key(run, "model.name") == "small_cnn"
    assert get_key(run, "nothing.here", "x") == "x"


def test_aggregate_exact_numbers(sweep: Path) -> None:
    groups = aggregate(load_runs([sweep]))
    g = group(groups, "finetune/full", 5)
    assert (g["n"], g["n_failed"], g["seeds"]) == (3, 0, [0, 1, 2])
    assert g["mean"] == pytest.approx(0.83, abs=1e-12)
    assert g["std"] == pytest.approx(STD_3, abs=1e-12)
    assert g["std"] == pytest.approx(0.0360555127546, abs=1e-12)
    assert (g["min"], g["max"]) == (0.80, 0.87)
    assert g["wall_time_mean_s"] == pytest.approx(11.0)  # runs 0, 1, 2: 10, 11, 12 s
    low, high = stats.t.interval(0.95, 2, loc=0.83, scale=STD_3 / math.sqrt(3))
    assert (g["ci_low"], g["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    one = group(groups, "finetune/full", 100)
    assert (one["n"], one["std"], one["ci_low"]) == (1, None, None)  # no spread from one run


def test_trainable_parameters_averaged_and_shown(tmp_path: Path) -> None:
    for seed, (count, fraction) in enumerate([(1000, 0.01), (3000, 0.03)]):
        path = write_run(tmp_path, str(seed), "finetune", 5, seed, 0.8)
        record = json.loads(path.read_text())
        record.update(trainable_params=count, trainable_fraction=fraction)
        path.write_text(json.dumps(record))
    write_run(tmp_path, "old", "scratch", 5, 0, 0.7)  # a run that recorded no count
    groups = aggregate(load_runs([tmp_path]))
    tuned = group(groups, "finetune/full", 5)
    assert tuned["trainable_params_mean"] == pytest.approx(2000)
    assert tuned["trainable_fraction_mean"] == pytest.approx(0.02)
    assert group(groups, "scratch", 5)["trainable_params_mean"] is None
    table = summary_markdown(groups, "labels_per_class")
    assert "| 2,000 (2%) |" in table
    assert "trainable params" in table.splitlines()[0]


def test_failed_runs_counted_not_averaged(built: tuple[dict, Path]) -> None:
    report, out = built
    g = group(report["groups"], "scratch", None)
    assert (g["n"], g["n_failed"], g["mean"]) == (1, 1, 0.96)
    assert g["failed"][0]["error"] == "RuntimeError: boom" and g["failed"][0]["seed"] == 0
    assert report["counts"] == {
        "runs": 15,
        "completed": 14,
        "failed": 1,
        "missing": 0,
        "debug_left_out": 0,
    }
    assert len(report["failed"]) == 1
    text = (out / "report.md").read_text()
    assert "RuntimeError: boom" in text and "0.960 ± – (n=1, 1 failed)" in text
    assert "± 0.000" not in text


def test_paired_difference_against_scipy(sweep: Path) -> None:
    rows = paired_comparisons(load_runs([sweep]), "finetune", "scratch")
    by_budget = {r["budget"]: r for r in rows}
    diffs = [0.80 - 0.78, 0.82 - 0.81, 0.87 - 0.80]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    five = by_budget[5]
    assert (five["a"], five["b"], five["n_pairs"], five["seeds"]) == (
        "finetune/full",
        "scratch",
        3,
        [0, 1, 2],
    )
    assert five["mean_diff"] == pytest.approx(mean, abs=1e-12)
    assert five["ci_low"] == pytest.approx(mean - half, abs=1e-12)
    assert five["ci_high"] == pytest.approx(mean + half, abs=1e-12)
    # seed 3 ran only for scratch: reported, not used
    twenty = by_budget[20]
    assert (twenty["n_pairs"], twenty["seeds"], twenty["unpaired_b"]) == (2, [0, 1], [3])
    assert twenty["mean_diff"] == pytest.approx(-0.015, abs=1e-12)
    # all labels: scratch seed 0 failed, so no pair (finetune has only seed 0, scratch seed 1)
    every = by_budget[None]
    assert (every["n_pairs"], every["seeds"], every["ci_low"]) == (0, [], None)
    assert every["unpaired_a"] == [0] and every["unpaired_b"] == [1]
    assert by_budget[100]["n_pairs"] == 0 and by_budget[100]["unpaired_a"] == [0]


def test_best_per_column_and_budget_order(built: tuple[dict, Path]) -> None:
    report, out = built
    columns, rows = pivot(report["groups"])
    assert columns == ["5", "20", "100", "all"]  # numeric order, "all" last
    # no column separates its two best rows: 3 and 2 pairs whose intervals hold 0, a column with
    # one row (100), a column without common seeds (all): nothing in bold
    assert not any(g["best"] for g in report["groups"])
    five = group(report["groups"], "finetune/full", 5)["best_test"]
    diffs = [0.80 - 0.78, 0.82 - 0.81, 0.87 - 0.80]
    low, high = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert (five["vs"], five["n_pairs"], five["excludes"]) == ("scratch", 3, False)
    assert (five["ci_low"], five["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert low < 0 < high
    twenty = group(report["groups"], "scratch", 20)["best_test"]  # best mean 0.933 over 0.910
    assert (twenty["vs"], twenty["seeds"], twenty["excludes"]) == ("finetune/full", [0, 1], False)
    assert group(report["groups"], "finetune/full", 100)["best_test"] is None  # no runner-up
    assert group(report["groups"], "finetune/full", None)["best_test"]["n_pairs"] == 0
    md = pivot_markdown(report["groups"])
    assert "| 0.830 ± 0.036 (n=3) |" in md and "0.933 ± 0.021 (n=3)" in md and "**" not in md
    text = (out / "report.md").read_text()
    assert "only where the 95% paired t interval" in text and "excludes zero" in text
    assert "| 5 | finetune/full | scratch | 3 | +0.033 |" in text  # the best-per-column table
    tex = (out / "table.tex").read_text()
    assert r"0.830 $\pm$ 0.036 (n=3)" in tex and r"\textbf{" not in tex
    assert r"0.950 $\pm$ -- (n=1)" in tex
    summary = pd.read_csv(out / "summary.csv")
    assert not summary["best"].any()


def test_lower_is_better_metric(sweep: Path) -> None:
    groups = aggregate(load_runs([sweep]), metric="test/loss")
    test = group(groups, "scratch", 20)["best_test"]  # the lower mean loss
    assert test["vs"] == "finetune/full" and test["mean_diff"] == pytest.approx(-0.015)
    assert group(groups, "finetune/full", 20)["best_test"] is None


def test_files_written_and_consistent(built: tuple[dict, Path]) -> None:
    report, out = built
    for name in ("report.md", "summary.csv", "table.csv", "table.tex", "paired.csv", "report.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text()) == report
    with open(out / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == len(report["groups"]) == 7
    for row, g in zip(summary, report["groups"]):
        assert row["method"] == g["method"] and row["budget"] == g["budget_label"]
        assert int(row["n"]) == g["n"] and int(row["n_failed"]) == g["n_failed"]
        assert (float(row["mean"]) if row["mean"] else None) == g["mean"]
    assert [r["labels_per_class"] for r in summary[:4]] == ["5", "20", "100", "all"]
    # table.csv: one row per cell, the numbers in their own columns, then the row's keys
    table = pd.read_csv(out / "table.csv")
    assert list(table.columns[:9]) == [
        "method",
        "budget",
        "mean",
        "std",
        "n",
        "seeds",
        "ci_low",
        "ci_high",
        "best",
    ]
    assert {"strategy", "mode", "labels_per_class"} <= set(table.columns)
    for column in ("mean", "std", "ci_low", "ci_high"):
        assert table[column].dtype == float, column
    assert len(table) == 7 and table["n"].dtype == int
    md = (out / "report.md").read_text()
    for row, g in zip(table.itertuples(), report["groups"]):
        assert (row.method, row.n) == (g["method"], g["n"])
        if g["mean"] is not None:
            assert row.mean == pytest.approx(g["mean"], abs=1e-12)
            assert f"{row.mean:.3f} ± " in md
    tex = (out / "table.tex").read_text()
    assert tex.count(r"\\") == 1 + len(pivot(report["groups"])[1]) and r"finetune/full" in tex
    with open(out / "paired.csv", newline="") as fh:
        paired = list(csv.DictReader(fh))
    assert [(r["budget"], r["n_pairs"], r["seeds"]) for r in paired] == [
        ("5", "3", "0 1 2"),
        ("20", "2", "0 1"),
        ("100", "0", ""),
        ("all", "0", ""),
    ]
    assert float(paired[0]["mean_diff"]) == pytest.approx(report["paired"][0]["mean_diff"])


def test_plots_are_png(built: tuple[dict, Path]) -> None:
    report, out = built
    assert {"budget_curve", "per_class", "confusion"} <= set(report["plots"])
    for key in ("budget_curve", "per_class", "confusion"):
        assert (out / report["plots"][key]).read_bytes()[:8] == PNG_SIGNATURE
    assert "layer_transfer" not in report["plots"]  # no run has transfer_stages: a note
    assert any("layer-transfer plot skipped" in n for n in report["notes"])
    assert f"]({report['plots']['budget_curve']})" in (out / "report.md").read_text()


def test_layer_transfer_plot(tmp_path: Path) -> None:
    i = 0
    for mode in ("partial", "full"):
        for k in (1, 2, 3):
            for seed in (0, 1):
                write_run(
                    tmp_path / "runs",
                    str(i),
                    "finetune",
                    5,
                    seed,
                    0.7 + 0.05 * k,
                    mode=mode,
                    strategy_cfg={"transfer_stages": k},
                )
                i += 1
    report = build_report([tmp_path / "runs"], tmp_path / "out", compare=[])
    assert (tmp_path / "out" / report["plots"]["layer_transfer"]).read_bytes()[:8] == PNG_SIGNATURE
    assert report["paired"] == [] and not (tmp_path / "out" / "per_class.png").exists()


def test_user_errors(sweep: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no results.json"):
        build_report([tmp_path], tmp_path / "out")
    with pytest.raises(ConfigError, match="group key 'stratgy'"):
        build_report([sweep], tmp_path / "out", group_by=["stratgy"])
    with pytest.raises(ConfigError, match="metric 'test/acc2'.*available: test/acc"):
        build_report([sweep], tmp_path / "out", metric="test/acc2")
    with pytest.raises(ConfigError, match="no method 'linear'"):
        build_report([sweep], tmp_path / "out", compare=[("finetune", "linear")])


def test_cli_empty_dir_exit_2_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no results.json") and "\n" not in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_cli_bad_compare_one_line(sweep: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(sweep), "--out", str(tmp_path), "--compare", "finetune"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --compare expects A:B (e.g. finetune:scratch), got 'finetune'"


def test_cli_report(sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rep"
    code = main(
        [
            "report",
            str(sweep),
            "--out",
            str(out),
            "--group-by",
            "strategy,labels_per_class",
            "--compare",
            "finetune:scratch",
            "--metric",
            "test/acc",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| finetune | 0.830 ± 0.036 (n=3) |" in printed
    assert "bold: best of its column where the paired 95% interval" in printed
    assert "pooled:" not in printed  # the runs of each cell have one config
    report = json.loads((out / "report.json").read_text())
    assert report["group_by"] == ["strategy", "labels_per_class"] and len(report["paired"]) == 4


def test_python_m_default_out(sweep: Path, tmp_path: Path) -> None:
    target = tmp_path / "sweep"
    write_run(target, "0", "finetune", 5, 0, 0.8)
    write_run(target, "1", "scratch", 5, 0, 0.7)
    # in the repository root, where pytest runs: a relative PYTHONPATH=src still finds the code
    proc = run_cli("-m", "transferlab", "report", str(target), root=tmp_path, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (target / "report" / "report.md").is_file()
    empty = run_cli("-m", "transferlab", "report", str(tmp_path / "x"), root=tmp_path, cwd=REPO)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1


def test_note_when_groups_mix_experiments(sweep: Path, tmp_path: Path) -> None:
    report = build_report([sweep], tmp_path, group_by=["model", "labels_per_class"])
    assert "groups mix runs that differ in strategy, mode" in " ".join(report["notes"])
    assert [g["method"] for g in report["groups"]] == ["small_cnn"] * 4
    assert report["paired"] == []  # no method is called finetune or scratch: a note, no error


def test_layer_transfer_plot_splits_lines_by_several_variant_keys(tmp_path) -> None:
    from transferlab.report import plots

    runs = []
    for source in ([0, 1], [2, 3]):
        for k in (1, 2):
            for seed in (0, 1):
                runs.append(
                    {
                        "status": "completed",
                        "identity": {"transfer_stages": k, "seed": seed},
                        "metrics": {"test/acc": 0.5 + 0.1 * k},
                        "config": {"strategy": {"mode": "partial"}, "source": {"classes": source}},
                    }
                )
    path = plots.plot_layer_transfer(
        runs,
        tmp_path / "l.png",
        "transfer_stages",
        "strategy.mode,source.classes",
        "test/acc",
        budget_key="transfer_stages",
    )
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
