"""``transferlab soup RUN_DIR...``: model soups (Wortsman et al., ICML 2022) from finished
classifier runs that share an architecture, a source and a data split (docs/finetune_toolbox.md).

Each run's tested checkpoint (``metrics.best_checkpoint`` of its ``results.json``) is an
ingredient. Ingredients are scored on the validation split here, all in the same way; the
uniform soup averages all of them, the greedy soup adds them best first and keeps each only if
the soup's validation accuracy does not drop, so it never scores below its best ingredient on
validation. Averaged BatchNorm statistics belong to no averaged network, so a soup of two or
more ingredients has them recomputed on the training images (``bn="recompute"``, the default;
``"average"`` keeps the averaged statistics; ``bn_images`` caps the images used to a fixed
random draw, for large training sets). Each soup is tested on the runs' test split and
written as a ``results.json`` (``task: soup``) that ``transferlab report`` reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from transferlab.core.checkpoint import state_mismatch
from transferlab.core.errors import ConfigError
from transferlab.core.results import RESULTS_FILE, flat_config, read_results, write_results
from transferlab.core.specs import InputSpec
from transferlab.core.store import config_hash
from transferlab.data import ImageClassificationDataModule
from transferlab.modules import ClassifierModule
from transferlab.modules.weight_averaging import (
    average,
    greedy_soup,
    has_batchnorm,
    recompute_batchnorm,
)
from transferlab.sources import make_source
from transferlab.sources.training import quiet_trainer
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.context import merged_metrics
from transferlab.tasks.evaluate import checkpoint_datamodule

log = logging.getLogger(__name__)

SOUP_TASK = "soup"
KINDS = ("uniform", "greedy")
BN_MODES = ("recompute", "average")
BN_DRAW_SEED = 0  # the random draw of training images that bn_images keeps
WEIGHT_PREFIXES = ("backbone.", "head.")  # what a soup averages: the classifier's weights
# data keys that do not change the split or the inputs (only how batches are drawn)
BATCHING_KEYS = (
    "batch_size",
    "eval_batch_size",
    "augment",
    "num_workers",
    "min_samples_per_epoch",
    "download",
)
# what says where a run's starting weights came from
SOURCE_KEYS = ("source", "source_key", "source_path", "weights_sha256")
SAME = "a soup averages runs of one architecture, source and data split"


@dataclass
class Ingredient:
    """One finished run: its results record, tested checkpoint and weights."""

    run_dir: Path
    results: dict[str, Any]
    checkpoint: Path
    record: dict[str, Any]
    state: dict[str, torch.Tensor]
    val_acc: float = float("nan")
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.run_dir)


def results_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` named or found under ``paths``; one line for a missing path."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(RESULTS_FILE)))
        else:
            raise ConfigError(f"no such file or directory: '{path}'; give run or multirun dirs")
    return list(dict.fromkeys(p.resolve() for p in found))


def collect(paths: Iterable[str | Path]) -> tuple[list[Ingredient], list[str]]:
    """The finished classifier runs under ``paths`` (with their checkpoints) and notes on the
    records left out (failed, debug, evaluations, soups)."""
    ingredients, notes = [], []
    for path in results_files(paths):
        results = read_results(path)
        where = path.parent
        if results.get("task") != "train" or results.get("status") != "completed":
            notes.append(f"left out {where}: task {results.get('task')}, {results.get('status')}")
            continue
        best = (results.get("metrics") or {}).get("best_checkpoint")
        if not best:
            raise ConfigError(
                f"run {where} records no checkpoint (metrics.best_checkpoint); a soup needs each "
                "run's weights: train with checkpointing on (callbacks=default)"
            )
        if not Path(best).is_file():
            raise ConfigError(f"run {where}: its checkpoint {best} is missing; a soup needs it")
        payload, record = load_training_checkpoint(best)
        state = {k: v for k, v in payload["state_dict"].items() if k.startswith(WEIGHT_PREFIXES)}
        ingredients.append(Ingredient(where, results, Path(best), record, state))
    if len(ingredients) < 2:
        raise ConfigError(
            f"a soup needs at least 2 finished classifier runs; found {len(ingredients)} under "
            f"{', '.join(str(p) for p in paths)}"
        )
    return ingredients, notes


def soup_keys(ingredient: Ingredient) -> dict[str, Any]:
    """What ingredients of one soup must share, as dotted keys: the model, the source, the
    data split (data settings but batching, and the split seed) and the input."""
    cfg = ingredient.record["cfg"]
    data = {k: v for k, v in cfg["data"].items() if k not in BATCHING_KEYS}
    source = {k: ingredient.results.get("source_info", {}).get(k) for k in SOURCE_KEYS}
    seed = cfg.get("seed")
    return flat_config(
        {
            "model": cfg["model"],
            "source": source,
            "data": data,
            "seed": 0 if seed is None else seed,
            "input": dict(ingredient.record["input_spec"]),
        }
    )


def check_compatible(ingredients: Sequence[Ingredient]) -> None:
    """One line naming the first difference of architecture, source or data split (or a
    weight shape) between the first ingredient and another."""
    first = ingredients[0]
    keys = soup_keys(first)
    for other in ingredients[1:]:
        theirs = soup_keys(other)
        for key in sorted(set(keys) | set(theirs)):
            if keys.get(key) != theirs.get(key):
                raise ConfigError(
                    f"runs {first.name} and {other.name} differ in {key}: "
                    f"{keys.get(key)!r} vs {theirs.get(key)!r}; {SAME}"
                )
        problems = state_mismatch(first.state, other.state)
        if problems:
            raise ConfigError(
                f"runs {first.name} and {other.name} hold different weights "
                f"({'; '.join(problems)}); {SAME}"
            )


def bn_images_of(data: Dataset, limit: int | None) -> Dataset:
    """The training images a soup's BatchNorm statistics are recomputed on: all of ``data``, or
    at most ``limit`` of them drawn at random with a fixed seed (the same draw for every soup
    of a split)."""
    size = len(data)  # type: ignore[arg-type]
    if limit is None or limit >= size:
        return data
    generator = torch.Generator().manual_seed(BN_DRAW_SEED)
    return Subset(data, torch.randperm(size, generator=generator)[:limit].tolist())


class SoupEvaluator:
    """Loads weights into one classifier of the runs' architecture and scores them on the
    runs' validation split (a score per set of ingredients is computed once)."""

    def __init__(
        self, first: Ingredient, accelerator: str, bn: str, bn_images: int | None = None
    ) -> None:
        record = first.record
        self.datamodule: ImageClassificationDataModule = checkpoint_datamodule(
            record, record["cfg"]["data"]
        )
        spec = InputSpec.of(record["input_spec"])
        backbone = make_source({"name": "none"}).build(record["cfg"]["model"], spec)
        self.module = ClassifierModule(
            backbone,
            self.datamodule.num_classes,
            class_names=self.datamodule.class_names,
            input_shape=spec.shape,
        )
        self.accelerator = accelerator
        self.recompute = bn == "recompute" and has_batchnorm(self.module.backbone)
        self.bn_set = bn_images_of(self.datamodule.train_set, bn_images)
        self.scores: dict[tuple[int, ...], float] = {}

    def trainer(self) -> Any:
        return quiet_trainer(accelerator=self.accelerator)

    def load(self, ingredients: Sequence[Ingredient]) -> None:
        """The soup of ``ingredients`` into the module (one ingredient: its weights as they
        are, its own BatchNorm statistics included)."""
        states = [i.state for i in ingredients]
        self.module.load_state_dict(average(states) if len(states) > 1 else dict(states[0]))
        if self.recompute and len(states) > 1:
            dm = self.datamodule
            loader = dm.loader(self.bn_set, dm.eval_batch_size, shuffle=False)
            recompute_batchnorm(self.module.backbone, (images for images, _ in loader))

    def validate(self, ingredients: Sequence[Ingredient], indices: tuple[int, ...]) -> float:
        if indices not in self.scores:
            self.load(ingredients)
            results = self.trainer().validate(self.module, self.datamodule, verbose=False)
            self.scores[indices] = float(results[0]["val/acc"])
        return self.scores[indices]

    def test(self, ingredients: Sequence[Ingredient]) -> dict[str, float]:
        self.load(ingredients)
        return merged_metrics(self.trainer().test(self.module, self.datamodule, verbose=False))


def soup_record(
    kind: str,
    chosen: Sequence[Ingredient],
    ranked: Sequence[Ingredient],
    val_acc: float,
    metrics: Mapping[str, float],
    evaluator: SoupEvaluator,
    started: float,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """A soup's results record, in the format of a run's (``task: soup``)."""
    best = ranked[0]
    identity = {**best.results["identity"], "strategy": "soup", "mode": kind, "method": None}
    names = [i.name for i in chosen]
    config = {
        **best.record["cfg"],
        "strategy": {"name": "soup", "kind": kind, "bn": extra["bn"]},
    }
    return {
        "status": "completed",
        "task": SOUP_TASK,
        "run_hash": config_hash({"soup": kind, "ingredients": sorted(names)}),
        "identity": identity,
        "metrics": {"val/acc": val_acc, **metrics},
        "soup": {
            "kind": kind,
            "ingredients": names,
            "checkpoints": [str(i.checkpoint) for i in chosen],
            "candidates": [{"run": i.name, "val_acc": i.val_acc} for i in ranked],
            **extra,
        },
        "wall_time_s": round(time.time() - started, 2),
        "source_info": dict(best.results.get("source_info") or {}),
        "test_details": dict(evaluator.module.test_details),
        "config": config,
    }


def make_soups(
    paths: Sequence[str | Path],
    out: Path,
    accelerator: str = "cpu",
    bn: str = "recompute",
    bn_images: int | None = None,
) -> dict[str, Any]:
    """Build, score and test the uniform and greedy soups of the runs under ``paths``; write
    ``<out>/<kind>/results.json``. ``bn_images`` caps the training images that BatchNorm
    statistics are recomputed on (default: all). Returns ``{"ingredients": [...], "soups":
    {kind: record}, "notes": [...]}``."""
    if bn not in BN_MODES:
        raise ConfigError(f"--bn {bn} is invalid; use {' or '.join(BN_MODES)}")
    if bn_images is not None and bn_images < 1:
        raise ConfigError(f"--bn-images {bn_images} is invalid; give a positive number of images")
    started = time.time()
    ingredients, notes = collect(paths)
    check_compatible(ingredients)
    evaluator = SoupEvaluator(ingredients[0], accelerator, bn, bn_images)
    used, total = len(evaluator.bn_set), len(evaluator.datamodule.train_set)
    for index, ingredient in enumerate(ingredients):
        ingredient.val_acc = evaluator.validate([ingredient], (index,))
    order = sorted(range(len(ingredients)), key=lambda i: -ingredients[i].val_acc)
    ranked = [ingredients[i] for i in order]
    drawn = "the" if used == total else f"{used} of the {total}"
    draw = "" if used == total else " (a fixed random draw)"
    bn_note = (
        f"BatchNorm statistics recomputed on {drawn} training images{draw} for soups of 2+ "
        "ingredients"
        if evaluator.recompute
        else "BatchNorm statistics averaged"
        if has_batchnorm(evaluator.module.backbone)
        else "no BatchNorm layers"
    )

    def score(chosen: Sequence[int]) -> float:
        indices = tuple(sorted(order[i] for i in chosen))
        return evaluator.validate([ranked[i] for i in chosen], indices)

    greedy_idx, greedy_val, steps = greedy_soup(list(range(len(ranked))), score)
    all_idx = list(range(len(ranked)))
    soups: dict[str, Any] = {}
    for kind, chosen_idx in (("uniform", all_idx), ("greedy", greedy_idx)):
        chosen = [ranked[i] for i in chosen_idx]
        val_acc = score(chosen_idx) if kind == "uniform" else greedy_val
        metrics = evaluator.test(chosen)
        extra: dict[str, Any] = {"bn": bn_note}
        if evaluator.recompute:
            extra["bn_images"] = used
        if kind == "greedy":
            extra["steps"] = [{**s, "run": ranked[s["index"]].name} for s in steps]
        record = soup_record(kind, chosen, ranked, val_acc, metrics, evaluator, started, extra)
        write_results(out / kind, {**record, "run_dir": str(out / kind)})
        soups[kind] = record
    return {"ingredients": ranked, "soups": soups, "notes": [*notes, bn_note]}
