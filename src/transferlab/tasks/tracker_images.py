"""The images a run hands to its experiment trackers: the test confusion matrix (drawn here,
as ``confusion_matrix.png`` in the run directory) and the grids some strategies already write
(an autoencoder's ``reconstructions.png``, a GAN's ``samples.png``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CONFUSION_FILE = "confusion_matrix.png"
# grids written by strategies into the run directory, by the tag trackers show them under
GRID_FILES = {"train/reconstructions": "reconstructions.png", "train/gan_samples": "samples.png"}


def draw_confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path) -> Path:
    """Write the confusion matrix (rows: true class, columns: predicted) with its counts as a
    PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    size = 1.2 + 0.45 * len(names)
    figure = Figure(figsize=(size + 1.0, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    shown = axes.imshow(counts, cmap="Blues")
    figure.colorbar(shown, ax=axes)
    ticks = range(len(names))
    axes.set_xticks(ticks, [str(n) for n in names], rotation=45, ha="right")
    axes.set_yticks(ticks, [str(n) for n in names])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    top = counts.max() if counts.size else 0.0
    for (row, col), value in np.ndenumerate(counts):
        colour = "white" if value > top / 2 else "black"
        axes.text(col, row, f"{int(value)}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_title("test confusion matrix")
    figure.tight_layout()
    figure.savefig(path)
    return path


def run_images(record: Mapping[str, Any], run_dir: Path) -> dict[str, Path]:
    """The images of a finished run, by tag: the confusion matrix (drawn into ``run_dir`` from
    the record's test details) and the strategies' grids found in ``run_dir``."""
    images: dict[str, Path] = {}
    details = record.get("test_details") or {}
    matrix = details.get("confusion_matrix")
    if matrix:
        names = details.get("class_names") or [str(i) for i in range(len(matrix))]
        images["test/confusion_matrix"] = draw_confusion(matrix, names, run_dir / CONFUSION_FILE)
    for tag, name in GRID_FILES.items():
        if (run_dir / name).is_file():
            images[tag] = run_dir / name
    return images


def read_rgb(path: Path) -> np.ndarray:
    """A PNG as an ``uint8`` array of shape (height, width, 3)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
