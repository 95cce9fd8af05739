"""The report averages only seed repeats of one configuration (issue 14): rows by config,
debug runs left out, repeated seeds refused, uncertainty in every cell and every bold mark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import write_run

from transferlab.commands import main
from transferlab.core.errors import ConfigError
from transferlab.report import build_report, is_debug, load_runs, make_cells
from transferlab.report import plots as report_plots
from transferlab.report.grouping import check_repeated_seeds

# finetune/full at 5 labels per class, two learning rates (as two Optuna trials would give)
LR_ACC = {0.01: {0: 0.80, 1: 0.82, 2: 0.84}, 0.1: {0: 0.60, 1: 0.65, 2: 0.55}}
SCRATCH_ACC = {0: 0.70, 1: 0.71, 2: 0.69}


def _lr(lr: float) -> dict:
    return {"optimizer": {"name": "adamw", "lr": lr}}


def make_runs(root: Path) -> Path:
    """Two learning rates x seeds 0-2, scratch x seeds 0-2, a one-batch fast_dev_run recorded as
    completed (an old record) and a run recorded with status debug, all at one budget."""
    for lr, by_seed in LR_ACC.items():
        for seed, acc in by_seed.items():
            write_run(root, f"lr{lr}_s{seed}", "finetune", 5, seed, acc, strategy_cfg=_lr(lr))
    for seed, acc in SCRATCH_ACC.items():
        write_run(root, f"scratch_s{seed}", "scratch", 5, seed, acc)
    write_run(
        root,
        "fast_dev_run",
        "finetune",
        5,
        0,
        0.30,
        strategy_cfg=_lr(0.01),
        config={"trainer": {"fast_dev_run": True, "max_epochs": 1}},
    )
    write_run(root, "debug_status", "finetune", 5, 1, 0.20, strategy_cfg=_lr(0.01), status="debug")
    return root


def by_method(report: dict) -> dict[str, dict]:
    rows = {g["method"]: g for g in report["groups"]}
    assert len(rows) == len(report["groups"]), "one row per method at one budget"
    return rows


def test_two_learning_rates_are_two_rows_and_debug_runs_left_out(tmp_path: Path, capsys) -> None:
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    rows = by_method(report)
    assert set(rows) == {"finetune/full lr=0.01", "finetune/full lr=0.1", "scratch"}
    for lr, by_seed in LR_ACC.items():
        row = rows[f"finetune/full lr={lr:g}"]
        assert (row["n"], row["seeds"]) == (3, [0, 1, 2])  # never n=6, never the debug runs
        assert row["mean"] == pytest.approx(np.mean(list(by_seed.values())), abs=1e-12)
        assert row["variant"] == {"strategy.optimizer.lr": lr}
    assert report["counts"]["debug_left_out"] == 2 and report["counts"]["runs"] == 9
    # what the user sees: two named rows, and a note about the debug runs
    # bold: 3 paired seeds separate lr=0.01 from the runner-up lr=0.1
    assert "| finetune/full lr=0.01 | **0.820 ± 0.020 (n=3)** |" in printed.out
    assert "| finetune/full lr=0.1 | 0.600 ± 0.050 (n=3) |" in printed.out
    assert "| scratch | 0.700 ± 0.010 (n=3) |" in printed.out
    assert "note: left out 2 debug runs" in printed.err and "--include-debug" in printed.err
    assert "fast_dev_run/results.json" in printed.err
    assert "9 runs (0 failed, 2 debug left out)" in printed.out
    md = (out / "report.md").read_text()
    assert "finetune/full lr=0.01" in md and "2 debug runs left out" in md
    # the default comparison pairs each finetune row with scratch
    assert [(p["a"], p["n_pairs"]) for p in report["paired"]] == [
        ("finetune/full lr=0.01", 3),
        ("finetune/full lr=0.1", 3),
    ]
    table = pd.read_csv(out / "table.csv")
    assert sorted(table["strategy.optimizer.lr"].dropna()) == [0.01, 0.1]


def test_include_debug_puts_debug_runs_in_their_own_rows(tmp_path: Path, capsys) -> None:
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "report"
    code = main(["report", str(runs), "--out", str(out), "--include-debug"])
    assert code == 0
    printed = capsys.readouterr()
    rows = by_method(json.loads((out / "report.json").read_text()))
    assert rows["finetune/full lr=0.01"]["n"] == 3  # the debug runs are not averaged in
    debug = {m: g for m, g in rows.items() if "debug" in m}
    assert set(debug) == {
        "finetune/full debug lr=0.01",  # status debug, config as lr=0.01
        "finetune/full debug lr=0.01 fast_dev_run=True max_epochs=1",
    }
    assert [g["mean"] for g in debug.values()] in ([0.2, 0.3], [0.3, 0.2])
    assert "| finetune/full debug lr=0.01 fast_dev_run=True max_epochs=1 | 0.300 ± – (n=1)" in (
        printed.out
    )
    assert "2 debug runs included as their own rows" in printed.err


def test_a_repeated_seed_is_an_error_naming_the_runs(tmp_path: Path, capsys) -> None:
    runs = make_runs(tmp_path / "runs")
    again = write_run(runs, "again", "finetune", 5, 1, 0.83, strategy_cfg=_lr(0.01))
    first = runs / "lr0.01_s1" / "results.json"
    with pytest.raises(ConfigError, match="repeat a seed") as err:
        build_report([runs], tmp_path / "out")
    assert str(first) in str(err.value) and str(again) in str(err.value)
    assert "seed 1 of finetune/full lr=0.01, labels_per_class=5" in str(err.value)
    assert main(["report", str(runs), "--out", str(tmp_path / "out")]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith("error: runs with the same config repeat a seed")
    assert printed.err.count("\n") == 1 and str(again) in printed.err
    assert not (tmp_path / "out" / "report.md").exists()


def test_group_by_pools_on_purpose_and_says_what_it_pooled(tmp_path: Path, capsys) -> None:
    runs = make_runs(tmp_path / "runs")
    out = tmp_path / "report"
    argv = ["report", str(runs), "--out", str(out), "--group-by", "strategy,labels_per_class"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = by_method(json.loads((out / "report.json").read_text()))
    assert rows["finetune"]["n"] == 6 and sorted(rows["finetune"]["seeds"]) == [0, 0, 1, 1, 2, 2]
    assert rows["finetune"]["pooled"] == ["strategy.optimizer.lr"]
    assert rows["scratch"]["pooled"] == []
    assert "pooled: finetune @ 5: runs differ in strategy.optimizer.lr" in printed
    md = (out / "report.md").read_text()
    assert "- pooled: finetune @ 5: runs differ in strategy.optimizer.lr" in md
    assert "as asked (`--group-by`)" in md
    summary = pd.read_csv(out / "summary.csv")
    assert summary.set_index("method").loc["finetune", "pooled"] == "strategy.optimizer.lr"


def test_one_run_shows_a_dash_and_the_csv_holds_floats(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "a", "finetune", 5, 0, 0.75)
    write_run(tmp_path / "runs", "b", "scratch", 5, 0, 0.5)
    write_run(tmp_path / "runs", "c", "scratch", 5, 1, 0.7)
    report = build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| finetune/full | 0.750 ± – (n=1) |" in md and "± 0.000" not in md
    assert "| scratch | 0.600 ± 0.141 (n=2) |" in md
    table = pd.read_csv(tmp_path / "out" / "table.csv").set_index("method")
    for column in ("mean", "std", "ci_low", "ci_high"):
        assert table[column].dtype == np.float64, column
    assert math.isnan(table.loc["finetune/full", "std"])
    assert math.isnan(table.loc["finetune/full", "ci_low"])
    low, high = stats.t.interval(0.95, 1, loc=0.6, scale=stats.sem([0.5, 0.7]))
    assert table.loc["scratch", "ci_low"] == pytest.approx(low)
    assert table.loc["scratch", "ci_high"] == pytest.approx(high)
    assert table.loc["scratch", "n"] == 2 and table.loc["scratch", "seeds"] == "0 1"
    assert not any(g["best"] for g in report["groups"])  # seed 0 alone: no interval, no bold


# best vs runner-up: at 5 labels a margin that the paired interval separates from zero, at 20 a
# better mean that it does not
CLEAR = {
    "finetune": [0.80, 0.85, 0.90, 0.82, 0.88],
    "scratch": [0.75, 0.79, 0.86, 0.77, 0.81],
}
UNCLEAR = {"finetune": [0.90, 0.92, 0.94], "scratch": [0.91, 0.90, 0.93]}


def test_bold_only_where_the_paired_interval_excludes_zero(tmp_path: Path) -> None:
    for lpc, accs in ((5, CLEAR), (20, UNCLEAR)):
        for strategy, values in accs.items():
            for seed, acc in enumerate(values):
                write_run(tmp_path / "runs", f"{strategy}{lpc}_{seed}", strategy, lpc, seed, acc)
    report = build_report([tmp_path / "runs"], tmp_path / "out")
    rows = {(g["method"], g["budget"]): g for g in report["groups"]}
    clear = rows[("finetune/full", 5)]["best_test"]
    low, high = stats.ttest_rel(CLEAR["finetune"], CLEAR["scratch"]).confidence_interval(0.95)
    assert (clear["vs"], clear["n_pairs"]) == ("scratch", 5)
    assert (clear["ci_low"], clear["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert low > 0 and clear["excludes"]
    unclear = rows[("finetune/full", 20)]["best_test"]
    low, high = stats.ttest_rel(UNCLEAR["finetune"], UNCLEAR["scratch"]).confidence_interval()
    assert np.mean(UNCLEAR["finetune"]) > np.mean(UNCLEAR["scratch"])  # the better mean ...
    assert low < 0 < high and not unclear["excludes"]  # ... that the data do not separate
    best = {key for key, g in rows.items() if g["best"]}
    assert best == {("finetune/full", 5)}
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("**0.") == 1 and "| finetune/full | **0.850 ± 0.041 (n=5)** |" in md
    assert "| 20 | finetune/full | scratch | 3 | +0.007 |" in md
    assert "no: the interval holds 0" in md
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert tex.count(r"\textbf") == 1
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["best"].tolist() == [True, False, False, False]


def test_fingerprint_ignores_run_local_keys_and_names_what_differs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in range(3):
        local = {  # run-local: paths, logging, caches, tags; a copy of the seed
            "paths": {"output_dir": f"/runs/{seed}"},
            "logger": {"csv": {"save_dir": f"/runs/{seed}"}},
            "callbacks": {"ckpt": {"dirpath": f"/runs/{seed}/checkpoints", "monitor": "val/acc"}},
            "source": {"cache_dir": f"/cache{seed}", "seed": 0, "target": {"seed": seed}},
            "tags": [f"t{seed}"],
            "task_name": f"train{seed}",
            "seed": seed,
        }
        write_run(root, f"a{seed}", "finetune", 5, seed, 0.8 + 0.01 * seed, config=local)
        long = {**local, "trainer": {"max_epochs": 30}}
        write_run(root, f"b{seed}", "finetune", 5, seed, 0.9, config=long)
    runs = load_runs([root])
    cells = make_cells(runs, ["strategy", "mode", "labels_per_class"], "labels_per_class")
    assert sorted((c.method, len(c.runs)) for c in cells) == [
        ("finetune/full", 3),
        ("finetune/full max_epochs=30", 3),
    ]
    # pooled on purpose: the one key that differs is named, the run-local ones are not
    (pooled,) = make_cells(runs, ["strategy"], None, pool=True)
    assert pooled.pooled == ["trainer.max_epochs"]
    # a setting that happens to follow the seed is still a setting (only seed-named keys are
    # taken for copies of the seed)
    same_as_seed = [
        {
            "status": "completed",
            "identity": {"strategy": "finetune", "seed": seed},
            "metrics": {"test/acc": 0.5},
            "config": {"seed": seed, "strategy": {"freeze_stages": seed}},
            "_path": f"r{seed}",
        }
        for seed in (0, 1)
    ]
    names = sorted(c.method for c in make_cells(same_as_seed, ["strategy"], None))
    assert names == ["finetune freeze_stages=0", "finetune freeze_stages=1"]
    # records without a config are told apart by their identity
    for run, budget in zip(same_as_seed, (5, 20)):
        run.pop("config")
        run["identity"] |= {"labels_per_class": budget, "seed": 0}
    (pooled,) = make_cells(same_as_seed, ["strategy"], None, pool=True)
    assert pooled.pooled == ["identity.labels_per_class"]
    check_repeated_seeds([pooled], "test/acc", None)  # two configurations, one seed each


@pytest.mark.parametrize(
    ("status", "trainer", "debug"),
    [
        ("completed", {}, False),
        ("completed", {"limit_train_batches": None, "limit_val_batches": 1.0}, False),
        ("completed", {"fast_dev_run": True}, True),
        ("completed", {"fast_dev_run": 0}, False),
        ("completed", {"limit_train_batches": 0.25}, True),
        ("completed", {"limit_test_batches": 3}, True),  # an int is a batch count
        ("completed", {"overfit_batches": 1}, True),
        ("failed", {"fast_dev_run": True}, True),
        ("debug", {}, True),
    ],
)
def test_is_debug(status: str, trainer: dict, debug: bool) -> None:
    assert is_debug({"status": status, "config": {"trainer": trainer}}) is debug


def test_per_class_and_confusion_average_each_rows_seeds(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    per_seed = [{"a": 0.5, "b": 1.0}, {"a": 0.7, "b": 0.8}]
    confusions = [[[1, 1], [0, 2]], [[2, 0], [1, 3]]]
    for seed, (per_class, confusion) in enumerate(zip(per_seed, confusions)):
        for lr in (0.01, 0.1):
            write_run(
                root,
                f"{lr}_{seed}",
                "finetune",
                5,
                seed,
                0.7 + lr + 0.01 * seed,
                strategy_cfg=_lr(lr),
                details=True,
                per_class=per_class,
                confusion=confusion,
            )
    keys = ["strategy", "mode", "labels_per_class"]
    cells = make_cells(load_runs([root]), keys, "labels_per_class")
    (cell,) = [c for c in cells if c.method == "finetune/full lr=0.01"]
    means = report_plots.mean_per_class(cell.runs)
    assert means["a"][0] == pytest.approx(0.6) and means["b"][0] == pytest.approx(0.9)
    assert means["a"][1] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and means["a"][2] == 2
    matrix, names, count = report_plots.mean_confusion(cell.runs)
    expected = (np.array([[0.5, 0.5], [0, 1]]) + np.array([[1, 0], [0.25, 0.75]])) / 2
    assert np.allclose(matrix, expected) and names == ["a", "b"] and count == 2

    report = build_report([root], tmp_path / "out", compare=[])
    for name in ("per_class", "confusion"):
        assert (tmp_path / "out" / report["plots"][name]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "detail_run" not in report["plots"]
    assert "averaged over its seeds" in (tmp_path / "out" / "report.md").read_text()


def _with_source(path: Path, key: str) -> None:
    record = json.loads(path.read_text())
    record["source_info"] = {"source": "pretrain", "source_key": key}
    path.write_text(json.dumps(record))


def test_report_says_whether_seeds_shared_one_source(tmp_path: Path) -> None:
    """With ``source.seed=${seed}`` every seed builds its own source (its variance is in the
    std); with the default one source serves every seed: the report says which rows are which."""
    runs = tmp_path / "runs"
    for seed, acc in SCRATCH_ACC.items():
        shared = write_run(runs, f"shared_s{seed}", "finetune", 5, seed, acc)
        _with_source(shared, "one-source")
        own = write_run(
            runs, f"own_s{seed}", "finetune", 5, seed, acc, config={"source": {"seed": seed}}
        )
        _with_source(own, f"source-of-seed-{seed}")
    report = build_report([runs], tmp_path / "report")
    rows = by_method(report)
    assert all(row["n"] == 3 for row in rows.values())  # source.seed follows the seed
    notes = {n.split(":")[0]: n.rsplit(": ", 1)[1] for n in report["notes"]}
    shared_row = notes["one source shared by all seeds (its variance is not in the std)"]
    own_row = notes["a source per seed (source.seed=${seed})"]
    assert {shared_row, own_row} == set(rows)
    assert "seed=<seed>" in own_row  # the row that differs by source.seed following the seed


def test_rows_differing_in_a_chosen_option_are_named_by_it(tmp_path: Path) -> None:
    """Runs whose source differs are named ``source=gan``, not by every key of the GAN source's
    config; a source key that also differs among runs of one source still names its rows; a
    ``+`` in a compare spec stands for a space."""
    root = tmp_path / "runs"
    sources = {
        "gan": {"name": "gan", "lr_d": 5e-4, "latent_dim": 100},
        "random": {"name": "random"},
        "ae_source": {"name": "autoencoder", "data": "source", "variant": "plain"},
        "ae_pool": {"name": "autoencoder", "data": "target_pool", "variant": "plain"},
        "bare": "pretrain",  # a bare option name (source=pretrain) is that choice's name
    }
    for tag, source in sources.items():
        for seed in range(3):
            acc = 0.7 + 0.05 * list(sources).index(tag) + 0.01 * seed
            write_run(root, f"{tag}{seed}", "finetune", 20, seed, acc, config={"source": source})
    runs = load_runs([root])
    cells = make_cells(runs, ["strategy", "mode", "labels_per_class"], "labels_per_class")
    assert sorted(c.method for c in cells) == [
        "finetune/full data=source source=autoencoder",
        "finetune/full data=target_pool source=autoencoder",
        "finetune/full source=gan",
        "finetune/full source=pretrain",
        "finetune/full source=random",
    ]
    report = build_report(
        [root],
        tmp_path / "out",
        compare=[("finetune/full+source=gan", "finetune/full+source=random")],
    )
    (row,) = [p for p in report["paired"] if p["seeds"]]
    assert row["a"] == "finetune/full source=gan" and row["b"] == "finetune/full source=random"
    assert row["mean_diff"] == pytest.approx(-0.05)


def test_unset_options_of_a_choice_stay_out_of_row_names(tmp_path: Path) -> None:
    """``rank=null`` beside ``peft=none`` says nothing: left out, unless names would clash."""
    root = tmp_path / "runs"
    pefts = {
        "plain": {"name": "none", "rank": None, "alpha": None},
        "lora4": {"name": "lora", "rank": 4, "alpha": 8},
        "lora16": {"name": "lora", "rank": 16, "alpha": 32},
        "bitfit": "bitfit",
    }
    for tag, peft in pefts.items():
        for seed in range(2):
            write_run(root, f"{tag}{seed}", "finetune", 5, seed, 0.8, strategy_cfg={"peft": peft})
    cells = make_cells(
        load_runs([root]), ["strategy", "mode", "labels_per_class"], "labels_per_class"
    )
    assert sorted(c.method for c in cells) == [
        "finetune/full alpha=32 peft=lora rank=16",
        "finetune/full alpha=8 peft=lora rank=4",
        "finetune/full peft=bitfit",
        "finetune/full peft=none",
    ]


def test_runs_made_before_a_late_option_share_rows_with_runs_at_its_default(
    tmp_path: Path,
) -> None:
    """Seeds 0-1 predate ``strategy.test_time_flip`` (not in their config), seed 2 has it
    false: one row of three seeds; runs with it true are their own row, named by it."""
    root = tmp_path / "runs"
    for seed in range(3):
        flips = {} if seed < 2 else {"test_time_flip": False}
        write_run(root, f"old{seed}", "finetune", 20, seed, 0.8 + 0.01 * seed, strategy_cfg=flips)
        write_run(
            root, f"tta{seed}", "finetune", 20, seed, 0.85, strategy_cfg={"test_time_flip": True}
        )
    cells = make_cells(
        load_runs([root]), ["strategy", "mode", "labels_per_class"], "labels_per_class"
    )
    assert sorted((c.method, len(c.runs)) for c in cells) == [
        ("finetune/full test_time_flip=False", 3),
        ("finetune/full test_time_flip=True", 3),
    ]
