"""``transferlab data [overrides]``: what a run's data will be, before training on it.

The target data set composed exactly as ``python train.py [overrides]`` composes it (same split
seed, label budget, input size and normalisation), summarised as split sizes and per-class
counts, with a labelled grid of sample training images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from transferlab.core.config import config_dir, register_resolvers
from transferlab.core.specs import InputSpec
from transferlab.data.datamodule import ImageClassificationDataModule
from transferlab.data.target import target_datamodule
from transferlab.sources import Source, check_source_overlap, make_source
from transferlab.tasks.classify import source_kind_for

SPLITS = ("train", "val", "test")
RUN_KEYS = ("data", "source", "model", "strategy")


@dataclass(frozen=True)
class DataSummary:
    """Split sizes and per-class counts of a run's target data."""

    dataset: str
    class_names: list[str]
    input_shape: tuple[int, int, int]
    mean: list[float]
    std: list[float]
    counts: dict[str, list[int]]  # split -> images per class (in class order)
    source: dict[str, Any]  # the source's kind and, where it trains on classes, which

    def lines(self) -> list[str]:
        """A Markdown table of the counts, then the input and the source, one fact a line."""
        head = ["class", *SPLITS]
        rows = [
            [name, *(str(self.counts[s][i]) for s in SPLITS)]
            for i, name in enumerate(self.class_names)
        ]
        rows.append(["total", *(str(sum(self.counts[s])) for s in SPLITS)])
        widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
        fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
        table = [fmt.format(*head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        table += [fmt.format(*r) for r in rows]
        channels, height, width = self.input_shape
        stats = ", ".join(f"{m:.4f}/{s:.4f}" for m, s in zip(self.mean, self.std, strict=True))
        return [
            f"data: {self.dataset}, {len(self.class_names)} target classes",
            *table,
            f"input: {channels}x{height}x{width}, normalisation mean/std per channel: {stats}",
            "train = the labelled training split (data.labels_per_class / label_fraction); "
            "val chooses epochs and hyperparameters; test is only for the final numbers",
            f"source: {_source_line(self.source)}",
        ]


def _source_line(source: Mapping[str, Any]) -> str:
    kind = source.get("name")
    if source.get("classes") is None:
        return str(kind)
    where = source.get("dataset") or "the target's data set"
    return f"{kind}, trained on classes {source['classes']} of {where}"


def compose_run_config(overrides: Sequence[str], extra: Sequence[str] = ()) -> dict[str, Any]:
    """The ``data``, ``source``, ``model``, ``strategy`` and ``seed`` of ``conf/train.yaml``
    with ``overrides``, resolved to plain containers, plus the dotted keys ``extra`` (e.g.
    ``paths.cache_dir``) nested under their sections."""
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    # only the parts that decide the data: the run directory (a Hydra runtime value) is not set
    plain = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in RUN_KEYS} | {
        "seed": cfg.get("seed")
    }
    for key in extra:
        section, _, name = key.rpartition(".")
        plain.setdefault(section, {})[name] = OmegaConf.select(cfg, key)
    return plain


def run_data(
    plain: Mapping[str, Any],
) -> tuple[ImageClassificationDataModule, InputSpec, Source, dict[str, Any]]:
    """The target data module a run of ``plain`` would train on (set up), its input spec,
    the run's source and the class-overlap record; a source trained on the target's classes
    is refused as ``train.py`` refuses it (one line naming the keys)."""
    kind = source_kind_for(plain) if "strategy" in plain else plain["source"].get("name")
    source = make_source(plain["source"] if kind != "none" else {"name": "none"})
    min_size = int(plain["model"].get("min_input_size", 1))
    datamodule, spec = target_datamodule(
        plain["data"], plain.get("seed"), source.requirement.with_min_size(min_size)
    )
    overlap = check_source_overlap(source, datamodule)
    return datamodule, spec, source, overlap


def run_datamodule(plain: Mapping[str, Any]) -> ImageClassificationDataModule:
    """The target data module a run of ``plain`` would train on (see :func:`run_data`)."""
    return run_data(plain)[0]


def summarize_data(plain: Mapping[str, Any]) -> tuple[DataSummary, ImageClassificationDataModule]:
    """The summary of the target data of a run of ``plain``, and its data module."""
    datamodule = run_datamodule(plain)
    sets = {"train": datamodule.train_set, "val": datamodule.val_set, "test": datamodule.test_set}
    classes = datamodule.num_classes
    counts = {
        name: torch.bincount(dataset.labels, minlength=classes).tolist()
        for name, dataset in sets.items()
    }
    source = {k: plain["source"].get(k) for k in ("name", "classes", "dataset")}
    if "strategy" in plain and source_kind_for(plain) == "none":  # strategy=scratch
        source = {"name": "none (the strategy uses no source)", "classes": None}
    summary = DataSummary(
        dataset=datamodule.dataset_name,
        class_names=list(datamodule.class_names),
        input_shape=tuple(int(v) for v in datamodule.input_shape),
        mean=[float(v) for v in datamodule.mean],
        std=[float(v) for v in datamodule.std],
        counts=counts,
        source=source,
    )
    return summary, datamodule


def save_sample_grid(
    datamodule: ImageClassificationDataModule, path: Path, per_class: int = 8
) -> Path:
    """A PNG grid of up to ``per_class`` training images of each class, a row per class, the
    rows labelled with the class names (images shown as the model sees them, un-normalised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = datamodule.train_set.labels
    mean = torch.tensor(datamodule.mean).view(-1, 1, 1)
    std = torch.tensor(datamodule.std).view(-1, 1, 1)
    names = datamodule.class_names
    fig, axes = plt.subplots(
        len(names), per_class, figsize=(per_class * 1.1, len(names) * 1.15), squeeze=False
    )
    for row, name in enumerate(names):
        chosen = torch.nonzero(labels == row).flatten()[:per_class]
        images = datamodule.train_set.inputs(chosen)
        for col in range(per_class):
            ax = axes[row][col]
            ax.set_axis_off()
            if col < len(chosen):
                image = (images[col].float() * std + mean).clamp(0, 1)
                shown = image.permute(1, 2, 0).squeeze(-1).numpy()
                ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
        axes[row][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
