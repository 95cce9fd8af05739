"""A multirun job killed from outside (a job dir with .hydra/ but no results.json) is listed in
the report as missing, counted in the header line and named in the notes."""

from __future__ import annotations

from pathlib import Path

from test_report import write_run

from transferlab.commands import main
from transferlab.report import build_report


def _job(root: Path, name: str) -> Path:
    """A Hydra job directory as a job leaves it when killed before writing results."""
    hydra = root / name / ".hydra"
    hydra.mkdir(parents=True, exist_ok=True)
    (hydra / "config.yaml").write_text("seed: 0\n")
    return root / name


def test_job_without_results_is_listed_missing(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    for i, seed in enumerate((0, 1)):
        write_run(sweep, str(i), "finetune", 20, seed, 0.8 + seed / 100)
        _job(sweep, str(i))
    killed = _job(sweep, "2")
    (sweep / "report-old").mkdir()  # no .hydra: not a job
    report = build_report([sweep], tmp_path / "out")
    assert report["counts"]["missing"] == 1 and report["counts"]["runs"] == 2
    assert report["missing"] == [str(killed.resolve())]
    assert any("1 missing jobs" in n and str(killed.resolve()) in n for n in report["notes"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("Runs:"))
    assert "2 found" in header and "1 missing" in header
    assert str(killed.resolve()) in markdown.split("## Notes")[1]
    assert main(["report", str(sweep), "--out", str(tmp_path / "cli")]) == 0
    assert "1 missing" in capsys.readouterr().out


def test_no_missing_jobs_no_missing_words(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep", "0", "finetune", 20, 0, 0.8)
    _job(tmp_path / "sweep", "0")
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    assert report["counts"]["missing"] == 0 and report["missing"] == []
    assert "missing" not in (tmp_path / "out" / "report.md").read_text().split("## ")[0]
