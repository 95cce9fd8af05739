"""Aggregation over seeds and paired comparisons between methods."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from transferlab.report.runs import (
    PATH_KEY,
    budget_sort_key,
    format_value,
    get_key,
    group_key,
    is_completed,
    method_label,
    metric_value,
)

DEFAULT_GROUP_BY = ("strategy", "mode", "labels_per_class")
DEFAULT_METRIC = "test/acc"
DEFAULT_BUDGET_KEY = "labels_per_class"


def lower_is_better(metric: str) -> bool:
    """Losses, errors, times and image-quality distances (FID, KID) are better low; everything
    else (accuracies) high."""
    name = metric.lower()
    return any(word in name for word in ("loss", "error", "time", "nll", "fid", "kid"))


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, sample std (ddof=1; 0 for one value), min and max; None where n == 0."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if n > 1 else 0.0
    return {
        "n": n,
        "mean": float(arr.mean()),
        "std": std,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def _seed(run: Mapping[str, Any]) -> Any:
    return get_key(run, "seed")


def _failure(run: Mapping[str, Any], metric: str) -> dict[str, Any]:
    error = run.get("error") or (f"finished without '{metric}'" if is_completed(run) else "")
    return {
        "path": run.get(PATH_KEY),
        "seed": _seed(run),
        "status": run.get("status"),
        "error": error,
    }


def aggregate(
    runs: Sequence[Mapping[str, Any]],
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
    higher_is_better: bool | None = None,
) -> list[dict[str, Any]]:
    """One row per group of ``group_by`` values, over seeds: n, mean, std, min, max, the mean
    wall time, the seeds, and the failed runs (counted, never averaged). ``best`` marks the best
    mean of each budget (ties all marked); a completed run without ``metric`` counts as failed."""
    budget_key = budget_key if budget_key in group_by else None
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_key(run, group_by, budget_key), []).append(run)
    rows = []
    for values, members in groups.items():
        key = dict(zip(group_by, values))
        done = [r for r in members if is_completed(r) and metric_value(r, metric) is not None]
        failed = [r for r in members if not any(r is d for d in done)]
        walls = [
            float(r["wall_time_s"]) for r in done if isinstance(r.get("wall_time_s"), int | float)
        ]
        budget = key.get(budget_key) if budget_key else None
        rows.append(
            {
                "key": key,
                "method": method_label(key, budget_key),
                "budget": budget,
                "budget_label": format_value(budget) if budget_key else metric,
                **summarize([metric_value(r, metric) for r in done]),
                "n_failed": len(failed),
                "wall_time_mean_s": float(np.mean(walls)) if walls else None,
                "seeds": [_seed(r) for r in done],
                "runs": [r.get(PATH_KEY) for r in done],
                "failed": [_failure(r, metric) for r in failed],
            }
        )
    rows.sort(key=lambda r: (r["method"], budget_sort_key(r["budget"])))
    if higher_is_better is None:
        higher_is_better = not lower_is_better(metric)
    mark_best(rows, higher_is_better)
    return rows


def mark_best(rows: list[dict[str, Any]], higher_is_better: bool = True) -> None:
    """Set ``best`` on the rows holding the best mean of their budget column."""
    sign = 1.0 if higher_is_better else -1.0
    best: dict[Any, float] = {}
    for row in rows:
        if row["mean"] is not None:
            b = row["budget_label"]
            best[b] = max(best.get(b, -math.inf), sign * row["mean"])
    for row in rows:
        target = best.get(row["budget_label"])
        row["best"] = (
            row["mean"] is not None
            and target is not None
            and math.isclose(sign * row["mean"], target, rel_tol=0, abs_tol=1e-12)
        )


def methods_matching(methods: Sequence[str], spec: str) -> list[str]:
    """The method labels that ``spec`` names: the label itself or a prefix of ``a/b`` parts."""
    return [m for m in methods if m == spec or m.startswith(spec + "/")]


def paired_difference(diffs: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean of paired differences, its sample std and the t-distribution confidence interval."""
    n = len(diffs)
    if n == 0:
        return {"n_pairs": 0, "mean_diff": None, "sd_diff": None, "ci_low": None, "ci_high": None}
    arr = np.asarray(diffs, dtype=float)
    mean = float(arr.mean())
    if n == 1:
        return {"n_pairs": 1, "mean_diff": mean, "sd_diff": None, "ci_low": None, "ci_high": None}
    sd = float(arr.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {
        "n_pairs": n,
        "mean_diff": mean,
        "sd_diff": sd,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def _by_seed(runs: Sequence[Mapping[str, Any]], metric: str) -> tuple[dict[Any, float], list]:
    """Completed runs' metric by seed; seeds that appear more than once are returned apart."""
    values: dict[Any, list[float]] = {}
    for run in runs:
        value = metric_value(run, metric)
        if is_completed(run) and value is not None:
            values.setdefault(_seed(run), []).append(value)
    single = {s: v[0] for s, v in values.items() if len(v) == 1}
    repeated = [s for s, v in values.items() if len(v) > 1]
    return single, repeated


def _seed_order(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))


def paired_comparisons(
    runs: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
) -> list[dict[str, Any]]:
    """``a`` minus ``b`` on the same seeds, for each method matching ``a`` and ``b`` (see
    :func:`methods_matching`) and each budget. Seeds found on one side only, or more than once
    on a side, are listed under ``unpaired_a`` / ``unpaired_b`` and not used."""
    budget_key = budget_key if budget_key in group_by else None
    cells: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for run in runs:
        key = dict(zip(group_by, group_key(run, group_by, budget_key)))
        budget = key.get(budget_key) if budget_key else None
        cells.setdefault((method_label(key, budget_key), budget), []).append(run)
    methods = sorted({m for m, _ in cells})
    budgets = sorted({bud for _, bud in cells}, key=budget_sort_key)
    rows = []
    for ma in methods_matching(methods, a):
        for mb in methods_matching(methods, b):
            if ma == mb:
                continue
            for budget in budgets:
                if (ma, budget) not in cells and (mb, budget) not in cells:
                    continue
                va, rep_a = _by_seed(cells.get((ma, budget), []), metric)
                vb, rep_b = _by_seed(cells.get((mb, budget), []), metric)
                seeds = sorted(set(va) & set(vb), key=_seed_order)
                rows.append(
                    {
                        "a": ma,
                        "b": mb,
                        "budget": budget,
                        "budget_label": format_value(budget) if budget_key else metric,
                        **paired_difference([va[s] - vb[s] for s in seeds]),
                        "seeds": seeds,
                        "unpaired_a": sorted(
                            [s for s in va if s not in vb] + rep_a, key=_seed_order
                        ),
                        "unpaired_b": sorted(
                            [s for s in vb if s not in va] + rep_b, key=_seed_order
                        ),
                    }
                )
    return rows
