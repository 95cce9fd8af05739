"""``notebooks/report.ipynb`` runs on a report built from hand-made results files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transferlab.report import build_report

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "report.ipynb"


def _write(root: Path, name: str, strategy: str, seed: int, acc: float | None) -> None:
    record = {
        "schema": 1,
        "status": "completed" if acc is not None else "failed",
        "task": "train",
        "identity": {
            "strategy": strategy,
            "mode": "full" if strategy == "finetune" else None,
            "labels_per_class": 5,
            "seed": seed,
        },
        "metrics": {"test/acc": acc} if acc is not None else {},
        "wall_time_s": 1.0,
        "test_details": {
            "per_class_acc": {"a": 0.5, "b": 1.0},
            "confusion_matrix": [[1, 1], [0, 2]],
            "class_names": ["a", "b"],
        },
    }
    if acc is None:
        record["error"] = "ValueError: broken run"
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(record))


def test_report_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    runs = tmp_path / "multirun"
    for i, (strategy, seed, acc) in enumerate(
        [("finetune", 0, 0.8), ("finetune", 1, 0.9), ("scratch", 0, 0.7), ("scratch", 1, None)]
    ):
        _write(runs, str(i), strategy, seed, acc)
    out = tmp_path / "report"
    build_report([runs], out)
    monkeypatch.setenv("TRANSFERLAB_REPORT_DIR", str(out))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "4 runs, 3 finished, 1 failed" in text
    assert "ValueError: broken run" in text
    # finetune has the best mean, but one paired seed gives no interval: no bold
    assert "| 0.850 ± 0.071 (n=2) |" in markdown and "**0.850" not in markdown
    assert "0.700 ± – (n=1, 1 failed)" in markdown
    assert "finetune/full − scratch" in markdown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # per class, confusion
