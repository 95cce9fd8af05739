"""``transferlab data``: the split sizes and class counts a run will train on, and a sample grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.commands import main
from transferlab.tasks.data_summary import compose_run_config, save_sample_grid, summarize_data


def test_counts_follow_the_label_budget_and_the_target_classes(tmp_path: Path) -> None:
    plain = compose_run_config(["data.labels_per_class=3", "data.classes=[5,6,7]"])
    summary, datamodule = summarize_data(plain)
    assert summary.dataset == "digits"
    assert summary.class_names == ["5", "6", "7"]
    assert summary.counts["train"] == [3, 3, 3]  # the label budget, per class
    assert sum(summary.counts["val"]) == len(datamodule.val_set) > 0
    assert all(n > 0 for n in summary.counts["test"])
    lines = summary.lines()
    assert lines[0] == "data: digits, 3 target classes"
    assert any(line.startswith("| total") and "| 9 " in line for line in lines)
    assert lines[-1].startswith("source: pretrain, trained on classes [0, 1, 2, 3, 4]")
    grid = save_sample_grid(datamodule, tmp_path / "samples.png", per_class=4)
    with Image.open(grid) as image:
        width, height = image.size
    assert width > height > 0  # 3 rows of 4 images


def test_normalisation_matches_the_training_pool() -> None:
    summary, datamodule = summarize_data(compose_run_config([]))
    images = datamodule.train_set.images  # normalised with the pool's statistics
    assert summary.mean[0] > 0.0 and summary.std[0] > 0.0
    assert abs(float(images.mean())) < 0.5


def test_data_command_prints_the_summary_and_writes_the_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "samples.png"
    args = ["data", "data.classes=[5,6,7]", "--out", str(grid), "--per-class", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "data: digits, 3 target classes"
    assert out[-1] == f"samples: {grid}" and grid.is_file()


def _three_class_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            image = rng.integers(0, 255, (10, 10), dtype=np.uint8)
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (["data.classes=[0,1]"], "source.classes=[0, 1, 2, 3, 4]: image_folder has 3 classes"),
        ([], "source.classes=[0, 1, 2, 3, 4] of image_folder, but data.classes=null"),
        (["data.clases=[0,1]"], "data.clases is not a config key (did you mean 'data.classes'?)"),
    ],
)
def test_data_command_class_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], key: str
) -> None:
    root = _three_class_folder(tmp_path / "images")
    assert main(["data", "data=image_folder", f"data.root={root}", *extra]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and key in errors[0], errors
    assert not captured.out
