"""``transferlab data``: the split sizes and class counts a run will train on, and a sample grid."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

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
