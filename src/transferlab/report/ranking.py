"""``transferlab rank --against <sweep dirs>``: do the transferability scores predict the
fine-tuned accuracy of the same sources? Kendall tau and weighted tau per score and recipe
(``strategy/mode``), from the sweeps' ``results.json`` files (docs/ranking.md).

A run belongs to a ranked source when its source kind, its ``source`` and ``model`` configs
and the target's data keys are those the ranking composed (paths and the seed aside); a
source's accuracy is the mean over its runs (seeds) of one recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy.stats import kendalltau, weightedtau

from transferlab.core.errors import ConfigError
from transferlab.report.grouping import flatten, is_debug, is_run_local
from transferlab.report.runs import get_key, is_completed, load_runs, metric_value
from transferlab.tasks.rank import RankPlan, plan_ranking, rank_sources, write_ranking

DEFAULT_METRIC = "test/acc"
MIN_SOURCES = 3
# the target's data keys a run must share with the ranking (its input size included: the
# same ImageNet weights at two input sizes are two sources)
MATCH_DATA_KEYS = (
    "dataset",
    "root",
    "classes",
    "labels_per_class",
    "label_fraction",
    "image_size",
    "channels",
    "normalize",
)
# source keys that do not change what the source is
IGNORED_SOURCE_KEYS = ("source.accelerator", "source.allow_overlap")
_ABSENT = "<absent>"


def source_signature(plain: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted config leaves a run must share to be a fine-tuning of this source."""
    leaves = {
        **flatten({"source": plain["source"], "model": plain["model"]}),
        **flatten({"data": {k: plain["data"].get(k, _ABSENT) for k in MATCH_DATA_KEYS}}),
    }
    return {k: v for k, v in leaves.items() if not is_run_local(k) and k not in IGNORED_SOURCE_KEYS}


def _same(key: str, mine: Any, theirs: Any, seeds: tuple[Any, Any]) -> bool:
    """Equal values, or a copy of each run's own seed (``source.target.seed: ${seed}``)."""
    if mine == theirs:
        return True
    return "seed" in key.rsplit(".", 1)[-1] and (mine, theirs) == seeds


def run_matches(run: Mapping[str, Any], kind: str, signature: Mapping[str, Any], seed: Any) -> bool:
    """Whether ``run`` fine-tuned the source of ``signature`` (of source kind ``kind``)."""
    if get_key(run, "identity.source") != kind:
        return False
    config = run.get("config")
    if not isinstance(config, Mapping):
        return False
    leaves = flatten(config)
    seeds = (seed, config.get("seed"))
    return all(_same(k, v, leaves.get(k, _ABSENT), seeds) for k, v in signature.items())


def recipe_of(run: Mapping[str, Any]) -> str:
    """``strategy/mode`` of a run (``finetune/linear_probe``)."""
    parts = (get_key(run, "identity.strategy"), get_key(run, "identity.mode"))
    return "/".join(str(p) for p in parts if p is not None)


def match_sweeps(
    plan: RankPlan, paths: Sequence[str | Path], metric: str = DEFAULT_METRIC
) -> dict[str, Any]:
    """The fine-tuned ``metric`` of each ranked source in the sweeps under ``paths``, per
    recipe: ``{"metric", "accuracy": {recipe: {source: {"runs", "mean", "values"}}},
    "notes"}``. One line (ConfigError) for fewer than 3 sources, no finished run, a source
    without any run, or no recipe with a run of every source."""
    if len(plan.specs) < MIN_SOURCES:
        raise ConfigError(
            f"--against needs at least {MIN_SOURCES} sources to correlate rankings, got "
            f"{len(plan.specs)}"
        )
    runs = [
        r
        for r in load_runs(paths)
        if is_completed(r) and not is_debug(r) and metric_value(r, metric) is not None
    ]
    where = ", ".join(str(p) for p in paths)
    if not runs:
        raise ConfigError(f"--against: no finished run with {metric} under {where}")
    seed = plan.configs[0].get("seed")
    table: dict[str, dict[str, list[float]]] = {}
    for spec, plain in zip(plan.specs, plan.configs, strict=True):
        signature = source_signature(plain)
        found = [r for r in runs if run_matches(r, spec.kind, signature, seed)]
        if not found:
            raise ConfigError(
                f"--against: the sweeps ({where}) have no finished run for source "
                f"'{spec.text}' (source={spec.kind}, model={plain['model']['name']}, same "
                "target and source settings); fine-tune it there or leave it out"
            )
        for run in found:
            table.setdefault(recipe_of(run), {}).setdefault(spec.text, []).append(
                float(metric_value(run, metric))
            )
    notes, accuracy = [], {}
    for recipe, by_source in sorted(table.items()):
        missing = [s.text for s in plan.specs if s.text not in by_source]
        if missing:
            notes.append(f"no tau for {recipe}: the sweeps have no run of it for '{missing[0]}'")
            continue
        accuracy[recipe] = {
            s.text: {
                "runs": len(by_source[s.text]),
                "mean": sum(by_source[s.text]) / len(by_source[s.text]),
                "values": by_source[s.text],
            }
            for s in plan.specs
        }
    if not accuracy:
        raise ConfigError(f"--against: {notes[0]}")
    return {"metric": metric, "accuracy": accuracy, "notes": notes}


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def correlations(record: Mapping[str, Any], against: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Kendall tau (with its p-value) and weighted tau between each score and each recipe's
    mean accuracy, over the sources that have the score (None below 3, or a constant)."""
    rows = []
    for recipe, by_source in against["accuracy"].items():
        for name, title in record["scores"].items():
            pairs = [
                (row["scores"][name], by_source[row["source"]]["mean"])
                for row in record["sources"]
                if row["scores"].get(name) is not None
            ]
            tau = p_value = weighted = None
            scores, accuracy = [p[0] for p in pairs], [p[1] for p in pairs]
            varied = len(set(scores)) > 1 and len(set(accuracy)) > 1
            if len(pairs) >= MIN_SOURCES and varied:
                result = kendalltau(scores, accuracy)
                tau, p_value = _finite(result.statistic), _finite(result.pvalue)
                weighted = _finite(weightedtau(scores, accuracy).statistic)
            rows.append(
                {
                    "recipe": recipe,
                    "score": name,
                    "title": title,
                    "sources": len(pairs),
                    "tau": tau,
                    "p_value": p_value,
                    "weighted_tau": weighted,
                }
            )
    return rows


def rank(
    target_overrides: Sequence[str],
    sources: Sequence[str],
    out: str | Path | None = None,
    against: Sequence[str | Path] | None = None,
    metric: str = DEFAULT_METRIC,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Rank ``sources`` for the target of ``target_overrides`` (``transferlab rank``): the
    ranking record, with ``record["against"]`` (tau per score and recipe) when ``against``
    names sweep directories; written to ``out`` (ranking.md/csv/json) when given. The sweeps
    are matched before any feature is computed, so a missing run fails at once."""
    plan = plan_ranking(target_overrides, sources)
    matched = match_sweeps(plan, against, metric) if against else None
    record = rank_sources(target_overrides, sources, progress=progress, plan=plan)
    if matched is not None:
        record["against"] = {**matched, "correlations": correlations(record, matched)}
    if out is not None:
        record["files"] = [str(p) for p in write_ranking(record, out)]
    return record
