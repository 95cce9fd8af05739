"""``transferlab rank``: transferability scores of several sources for a tiny offline target
(digits 5-9, 5 labels per class, small_cnn), written as a ranked table; ``--against`` a real
tiny sweep of linear probes of the same sources."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import compose_config, drop_stale_log_handlers

from transferlab.commands import main
from transferlab.tasks import run_training
from transferlab.tasks.rank import parse_source, split_top_level

# three sources whose features differ: a random encoder, and two supervised pretrainings on
# digits 0-4 (1 and 3 epochs, so they are quick to build)
SOURCES = ("random", "pretrain:source.max_epochs=1", "pretrain:source.max_epochs=3")


def test_source_syntax() -> None:
    spec = parse_source("pretrain:source.classes=[0,1,2],model=resnet8")
    assert spec.kind == "pretrain"
    assert spec.all_overrides == ["source=pretrain", "source.classes=[0,1,2]", "model=resnet8"]
    assert split_top_level("a='x,y',b={c: 1, d: 2}") == ["a='x,y'", "b={c: 1, d: 2}"]
    assert parse_source("random").overrides == ()


def _rank(args: list[str], cache: Path) -> int:
    drop_stale_log_handlers()
    return main(["rank", f"paths.cache_dir={cache}", *args])


def test_rank_writes_the_table(
    tmp_path: Path, source_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three sources, one with the ImageNet head (1000 classes), one with the pretraining
    head (5 classes), one without a head (LEEP and NCE skipped with a note)."""
    out = tmp_path / "rank"
    sources = ["random", "pretrain:source.max_epochs=1", "imagenet:model=efficientnet_lite0"]
    args = [arg for s in sources for arg in ("--source", s)]
    assert _rank([*args, "--out", str(out)], source_cache) == 0
    printed = capsys.readouterr()
    record = json.loads((out / "ranking.json").read_text())
    rows = {row["source"]: row for row in record["sources"]}
    assert set(rows) == set(sources)
    assert record["target"]["train_images"] == 25  # 5 labels x 5 classes: the training split
    assert record["target"]["data.classes"] == [5, 6, 7, 8, 9]
    assert rows["imagenet:model=efficientnet_lite0"]["head_classes"] == 1000
    assert rows["imagenet:model=efficientnet_lite0"]["num_features"] == 1280
    assert rows["pretrain:source.max_epochs=1"]["head_classes"] == 5
    assert set(rows["random"]["scores"]) == {"logme", "hscore", "hscore_shrinkage"}
    assert "LEEP, NCE skipped: source=random has no classifier" in rows["random"]["notes"][0]
    for row in rows.values():
        assert set(row["seconds"]) == set(row["scores"])  # a wall time per score
        assert row["features"]["entry"] in ("built", "read", "read (a run's entry)")
    logme = sorted(rows.values(), key=lambda r: -r["scores"]["logme"])
    assert [r["source"] for r in record["sources"]] == [r["source"] for r in logme]
    assert [r["ranks"]["logme"] for r in record["sources"]] == [1, 2, 3]
    table = (out / "ranking.md").read_text()
    assert table in printed.out and "| source | dim | LogME | LEEP | NCE | H-score" in table
    assert "random: LEEP, NCE skipped" in table
    with (out / "ranking.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    # a second ranking reads every source's features from the cache
    assert _rank([*args, "--out", str(out)], source_cache) == 0
    again = json.loads((out / "ranking.json").read_text())
    assert {r["features"]["entry"] for r in again["sources"]} <= {"read", "read (a run's entry)"}
    assert {r["source"]: r["scores"] for r in again["sources"]} == {
        r["source"]: r["scores"] for r in record["sources"]
    }


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, source_cache: Path) -> Path:
    """A linear probe (2 epochs) of each of :data:`SOURCES`, seed 0, one run directory each."""
    root = tmp_path_factory.mktemp("sweep")
    for index, text in enumerate(SOURCES):
        spec = parse_source(text)
        out = root / str(index)
        overrides = ["strategy.mode=linear_probe", "trainer.max_epochs=2", *spec.all_overrides]
        run_training(compose_config("train", overrides, out, source_cache), out)
    return root


def test_rank_against_a_sweep(
    sweep: Path, tmp_path: Path, source_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rank"
    args = [arg for s in SOURCES for arg in ("--source", s)]
    assert _rank([*args, "--against", str(sweep), "--out", str(out)], source_cache) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "ranking.json").read_text())
    against = record["against"]
    accuracy = against["accuracy"]["finetune/linear_probe"]
    assert set(accuracy) == set(SOURCES) and all(a["runs"] == 1 for a in accuracy.values())
    for source, entry in accuracy.items():  # the accuracy is the run's own test accuracy
        run = json.loads((sweep / str(SOURCES.index(source)) / "results.json").read_text())
        assert entry["mean"] == pytest.approx(run["metrics"]["test/acc"])
    rows = {row["score"]: row for row in against["correlations"]}
    assert rows["logme"]["sources"] == 3 and rows["leep"]["sources"] == 2  # random: no head
    assert -1 <= rows["logme"]["tau"] <= 1 and -1 <= rows["logme"]["weighted_tau"] <= 1
    assert rows["leep"]["tau"] is None  # fewer than 3 sources have it
    assert "## Scores against fine-tuned test/acc" in printed
    assert "| finetune/linear_probe | LogME | 3 |" in printed
    # the probes' frozen-feature entries (all splits) were there first: rank read them
    entries = {r["source"]: r["features"]["entry"] for r in record["sources"]}
    assert entries["pretrain:source.max_epochs=3"] == "read (a run's entry)"
