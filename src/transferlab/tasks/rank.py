"""``transferlab rank``: transferability scores of several sources for one target, before any
fine-tuning (docs/ranking.md).

The target (data set, classes, label budget, seed) is composed from ``train.py`` overrides, each
source from the same overrides plus ``source=<kind>`` and its own overrides. Each source's
frozen pooled features of the labelled training images (never validation or test) come from
the frozen-feature cache (tasks/feature_cache.py); the scores of
:mod:`transferlab.metrics.transferability` are computed on them, LEEP and NCE through the
source's own classifier where it has one (:meth:`Source.head`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from transferlab.core.errors import ConfigError
from transferlab.core.results import package_versions
from transferlab.core.store import atomic_write_text
from transferlab.metrics.transferability import SCORES
from transferlab.models import Backbone
from transferlab.sources.base import NoSourceHead
from transferlab.sources.training import quiet_trainer
from transferlab.tasks.data_summary import compose_run_config, run_data
from transferlab.tasks.feature_cache import (
    feature_entry,
    feature_identity,
    load_or_compute,
    read_entry,
)
from transferlab.tasks.frozen_features import compile_features, compute_all

log = logging.getLogger(__name__)

# what the target is: the same for every source (a source's overrides may not change it)
TARGET_KEYS = (
    "data.dataset",
    "data.root",
    "data.classes",
    "data.labels_per_class",
    "data.label_fraction",
    "data.val_per_class",
    "data.val_fraction",
    "seed",
)
TARGET_GROUPS = ("data", "experiment")
# config keys beyond the run keys that ranking reads
EXTRA_KEYS = ("paths.cache_dir", "trainer.accelerator", "trainer.precision")
SORT_BY = "logme"
RANK_FILES = ("ranking.md", "ranking.csv", "ranking.json")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SourceSpec:
    """One ``--source KIND[:OVERRIDE,OVERRIDE...]``: the ``source=`` option and the
    overrides that make it (``model=...``, ``source.classes=[0,1]``, ``data.image_size=64``)."""

    text: str
    kind: str
    overrides: tuple[str, ...]

    @property
    def all_overrides(self) -> list[str]:
        return [f"source={self.kind}", *self.overrides]


def split_top_level(text: str) -> list[str]:
    """``text`` split at commas outside brackets and quotes (``a=[1,2],b=3`` -> 2 parts)."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parse_source(text: str) -> SourceSpec:
    """A :class:`SourceSpec` from ``KIND[:OVERRIDE,OVERRIDE...]``; one line when malformed or
    when an override would change the target."""
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if not kind or "=" in kind:
        raise ConfigError(
            f"--source expects KIND[:KEY=VALUE,...] (e.g. imagenet:model=efficientnet_lite0), "
            f"got '{text}'"
        )
    overrides = tuple(split_top_level(rest))
    for override in overrides:
        key = _override_key(override)
        if "=" not in override:
            raise ConfigError(f"--source '{text}': '{override}' is not KEY=VALUE")
        if key in TARGET_KEYS or key in TARGET_GROUPS or key in ("source", "data"):
            raise ConfigError(
                f"--source '{text}': {key} belongs to the target, not a source; give it "
                f"before the sources (transferlab rank {key}=... --source ...)"
            )
    return SourceSpec(text, kind, overrides)


@dataclass
class RankPlan:
    """The composed configs of a ranking: one per source, all with the same target."""

    target_overrides: list[str]
    specs: list[SourceSpec]
    configs: list[dict[str, Any]]

    @property
    def target(self) -> dict[str, Any]:
        return target_of(self.configs[0])


def select(plain: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted ``key`` in a plain config (None when absent)."""
    value: Any = plain
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def target_of(plain: Mapping[str, Any]) -> dict[str, Any]:
    """The target keys (:data:`TARGET_KEYS`) of a composed config."""
    return {key: select(plain, key) for key in TARGET_KEYS}


def plan_ranking(target_overrides: Sequence[str], sources: Sequence[str]) -> RankPlan:
    """Parse the ``sources`` and compose each one's config on ``target_overrides``; one line
    for no source, a repeated one, or one that changes the target."""
    if not sources:
        raise ConfigError("give at least one --source (e.g. --source random --source pretrain)")
    specs = [parse_source(text) for text in sources]
    seen: set[str] = set()
    for spec in specs:
        if spec.text in seen:
            raise ConfigError(f"--source '{spec.text}' is given twice")
        seen.add(spec.text)
    configs = [
        compose_run_config([*target_overrides, *spec.all_overrides], EXTRA_KEYS) for spec in specs
    ]
    first = target_of(configs[0])
    for spec, plain in zip(specs[1:], configs[1:], strict=True):
        changed = [k for k, v in target_of(plain).items() if v != first[k]]
        if changed:
            key = changed[0]
            raise ConfigError(
                f"--source '{spec.text}' changes the target ({key}={select(plain, key)!r}, "
                f"the first source has {first[key]!r}): sources share one target"
            )
    return RankPlan(list(target_overrides), specs, configs)


def _features(
    backbone: Backbone, plain: Mapping[str, Any], datamodule: Any, spec: Any
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The frozen pooled features of the labelled training images: from a run's cache entry
    of all splits if one exists, else from (or into) a training-split-only entry."""
    trainer = quiet_trainer(
        accelerator=str(select(plain, "trainer.accelerator") or "cpu"),
        precision=select(plain, "trainer.precision") or "32-true",
    )
    identity = feature_identity(
        backbone, plain["model"], plain["data"], datamodule, spec, str(trainer.precision)
    )
    cache_dir = Path(str(select(plain, "paths.cache_dir")))
    started = time.perf_counter()
    entry = feature_entry(cache_dir, backbone.name, identity)
    features = read_entry(entry)
    how = "read (a run's entry)"
    if features is None:
        identity = {**identity, "splits": ["train"]}
        compiled = compile_features(plain.get("perf"), datamodule, ("train",))
        if compiled:
            identity["compiled"] = True
        entry = feature_entry(cache_dir, backbone.name, identity)
        features, how = load_or_compute(
            entry,
            identity,
            lambda: compute_all(backbone, datamodule, trainer, ("train",), compile=compiled),
        )
    seconds = time.perf_counter() - started
    return features["train"], {"entry": how, "path": str(entry), "seconds": round(seconds, 3)}


def _head_probabilities(
    source: Any, info: Mapping[str, Any], backbone: Backbone, features: torch.Tensor
) -> tuple[np.ndarray | None, str | None]:
    """The source head's softmax over the features, or None and why there is none."""
    try:
        head = source.classifier_head(info, backbone).eval()
    except NoSourceHead as err:
        return None, str(err)
    with torch.no_grad():
        logits = head.float().cpu()(features.float())
    return torch.softmax(logits.double(), dim=1).numpy(), None


def _timed(compute: Callable[[], float]) -> tuple[float, float]:
    """``compute()`` and its wall time, with one BLAS thread: on a busy 2-core VM a
    multi-threaded OpenBLAS took 0.4-3.5 s for the SVD of 100 x 1280 features that one thread
    does in 0.01 s (docs/ranking.md)."""
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        value = compute()
    return value, time.perf_counter() - started


def score_source(spec: SourceSpec, plain: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
    """Build one source, read or compute its features, and compute every score."""
    started = time.perf_counter()
    progress(f"{spec.text}: preparing the source (a missing built source is trained first)")
    datamodule, input_spec, source, _ = run_data(plain)
    seed = plain.get("seed")
    if seed is not None:
        L.seed_everything(int(seed), workers=True, verbose=False)
    backbone, info = source.prepare(plain["model"], input_spec)
    features, feature_info = _features(backbone, plain, datamodule, input_spec)
    labels = datamodule.train_set.labels.numpy()
    progress(
        f"{spec.text}: {features.shape[0]} x {features.shape[1]} features "
        f"({feature_info['entry']}, {feature_info['seconds']:.1f} s)"
    )
    row: dict[str, Any] = {
        "source": spec.text,
        "kind": spec.kind,
        "model": str(plain["model"]["name"]),
        "num_features": int(features.shape[1]),
        "features": feature_info,
        "scores": {},
        "seconds": {},
        "notes": [],
        "target": {
            "class_names": list(datamodule.class_names),
            "train_images": len(datamodule.train_set),
        },
    }
    if not torch.isfinite(features).all():
        row["notes"].append("its features are not finite: not scored")
        return row
    probabilities, no_head = _head_probabilities(source, info, backbone, features)
    row["head_classes"] = None if probabilities is None else int(probabilities.shape[1])
    if no_head is not None:
        names = ", ".join(s.title for s in SCORES.values() if s.needs_head)
        row["notes"].append(f"{names} skipped: {no_head}")
    values = features.double().numpy()
    for name, score in SCORES.items():
        if score.needs_head and probabilities is None:
            continue
        inputs = probabilities if score.needs_head else values
        value, seconds = _timed(lambda score=score, inputs=inputs: score.compute(inputs, labels))
        # 10 significant digits: rounding noise (a degenerate H-score's C - 1 +- 1e-15) ties
        row["scores"][name], row["seconds"][name] = float(f"{value:.10g}"), round(seconds, 4)
    row["source_s"] = round(time.perf_counter() - started, 3)
    return row


def add_ranks(rows: list[dict[str, Any]]) -> None:
    """Each row's rank by each score (1 = best; ties share the better rank)."""
    for row in rows:
        row["ranks"] = {}
    for name in SCORES:
        scored = [row for row in rows if row["scores"].get(name) is not None]
        for row in scored:
            value = row["scores"][name]
            row["ranks"][name] = 1 + sum(int(o["scores"][name] > value) for o in scored)


def rank_sources(
    target_overrides: Sequence[str],
    sources: Sequence[str],
    progress: Progress | None = None,
    plan: RankPlan | None = None,
) -> dict[str, Any]:
    """Score each source (``KIND[:OVERRIDE,...]``) for the target of ``target_overrides``;
    the ranking record (``write_ranking`` writes it as Markdown, CSV and JSON)."""
    started = time.perf_counter()
    plan = plan or plan_ranking(target_overrides, sources)
    progress = progress or log.info
    rows = [
        score_source(spec, plain, progress)
        for spec, plain in zip(plan.specs, plan.configs, strict=True)
    ]
    add_ranks(rows)
    rows.sort(key=lambda r: (r["ranks"].get(SORT_BY) is None, r["ranks"].get(SORT_BY, 0)))
    target = [row.pop("target") for row in rows][0]
    notes = []
    train_images, dims = target["train_images"], [r["num_features"] for r in rows]
    if any(train_images <= d + 1 for d in dims):
        notes.append(
            f"H-score: with {train_images} training images and up to {max(dims)} feature "
            "dimensions, cov(f) is singular and the plain H-score is C - 1 for any features "
            "of full rank; H-score (shrunk) uses a Ledoit-Wolf covariance instead"
        )
    if len(rows) < 3:
        notes.append(f"{len(rows)} sources: a ranking of fewer than 3 sources says little")
    return {
        "target": {
            **plan.target,
            "overrides": plan.target_overrides,
            **target,
            "split": "the labelled training split only (no validation or test images)",
        },
        "scores": {name: score.title for name, score in SCORES.items()},
        "sort_by": SORT_BY,
        "sources": rows,
        "notes": notes,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "machine": {"cpus": os.cpu_count(), "cuda": torch.cuda.is_available()},
        "versions": package_versions(),
    }


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ranking_markdown(record: Mapping[str, Any]) -> str:
    """The ranking as Markdown: scores with their ranks, then the seconds per score."""
    target, names = record["target"], list(record["scores"])
    titles = [record["scores"][n] for n in names]
    lines = [
        f"# Source ranking: {target['data.dataset']} classes {target['data.classes']}, "
        f"{target['data.labels_per_class']} labels per class, seed {target['seed']} "
        f"({target['train_images']} training images)",
        "",
        "| source | dim | " + " | ".join(titles) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in record["sources"]:
        cells = [
            "-" if row["scores"].get(n) is None else f"{row['scores'][n]:.4f} ({row['ranks'][n]})"
            for n in names
        ]
        lines.append(f"| {row['source']} | {row['num_features']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Rows by {record['scores'][record['sort_by']]}; (k): the source's rank by that score "
        "(1 = best). Wall time per source and score (s):",
        "",
        "| source | features | " + " | ".join(titles) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in record["sources"]:
        times = [_number(row["seconds"].get(n), 3) for n in names]
        feature = f"{row['features']['seconds']:.2f} ({row['features']['entry']})"
        lines.append(f"| {row['source']} | {feature} | " + " | ".join(times) + " |")
    notes = [*record["notes"]]
    notes += [f"{row['source']}: {note}" for row in record["sources"] for note in row["notes"]]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    against = record.get("against")
    if against:
        lines += ["", *against_markdown(against)]
    return "\n".join(lines) + "\n"


def against_markdown(against: Mapping[str, Any]) -> list[str]:
    """The rank correlations of the scores with fine-tuned accuracy, as Markdown lines."""
    lines = [
        f"## Scores against fine-tuned {against['metric']}",
        "",
        "| recipe | score | sources | Kendall tau (p) | weighted tau |",
        "|---|---|---|---|---|",
    ]
    for row in against["correlations"]:
        tau = "-" if row["tau"] is None else f"{row['tau']:.3f} ({row['p_value']:.3f})"
        lines.append(
            f"| {row['recipe']} | {row['title']} | {row['sources']} | {tau} | "
            f"{_number(row['weighted_tau'], 3)} |"
        )
    lines += ["", "| recipe | source | runs | mean |", "|---|---|---|---|"]
    for recipe, sources in against["accuracy"].items():
        for label, entry in sources.items():
            lines.append(f"| {recipe} | {label} | {entry['runs']} | {entry['mean']:.4f} |")
    lines += [f"- {note}" for note in against["notes"]]
    return lines


def ranking_csv(record: Mapping[str, Any]) -> str:
    """One row per source: its scores, ranks and seconds per score."""
    names = list(record["scores"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["source", "kind", "model", "num_features", "head_classes", "features_entry", "features_s"]
        + [f"{n}{suffix}" for n in names for suffix in ("", "_rank", "_s")]
        + ["notes"]
    )
    for row in record["sources"]:
        writer.writerow(
            [
                row["source"],
                row["kind"],
                row["model"],
                row["num_features"],
                row.get("head_classes"),
                row["features"]["entry"],
                row["features"]["seconds"],
            ]
            + [
                v
                for n in names
                for v in (row["scores"].get(n), row["ranks"].get(n), row["seconds"].get(n))
            ]
            + ["; ".join(row["notes"])]
        )
    return out.getvalue()


def write_ranking(record: Mapping[str, Any], out: str | Path) -> list[Path]:
    """``ranking.md``, ``ranking.csv`` and ``ranking.json`` of ``record`` in ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    texts = (ranking_markdown(record), ranking_csv(record), json.dumps(record, indent=2))
    paths = [folder / name for name in RANK_FILES]
    for path, text in zip(paths, texts, strict=True):
        atomic_write_text(path, text)
    return paths
