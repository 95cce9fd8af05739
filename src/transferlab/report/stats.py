"""Aggregation over seeds, the best of each column, and paired comparisons between methods."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from transferlab.report.grouping import Cell, make_cells
from transferlab.report.runs import (
    PATH_KEY,
    budget_sort_key,
    format_value,
    get_key,
    is_completed,
    metric_value,
)

DEFAULT_GROUP_BY = ("strategy", "mode", "labels_per_class")
DEFAULT_METRIC = "test/acc"
DEFAULT_BUDGET_KEY = "labels_per_class"
CONFIDENCE = 0.95


def lower_is_better(metric: str) -> bool:
    """Losses, errors, times and image-quality distances (FID, KID) are better low; everything
    else (accuracies) high."""
    name = metric.lower()
    return any(word in name for word in ("loss", "error", "time", "nll", "fid", "kid"))


def _t_interval(mean: float, sd: float, n: int, confidence: float) -> tuple[float, float]:
    """The t interval of a mean from ``n`` values with sample std ``sd`` (n >= 2)."""
    if sd == 0:
        return mean, mean
    low, high = scipy_stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return float(low), float(high)


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, sample std (ddof=1), min, max and the t interval of the mean (``ci_low``,
    ``ci_high``); std and the interval are None for one value, everything but n for none."""
    n = len(values)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "min": None, "max": None}
    out |= {"ci_low": None, "ci_high": None}
    if n == 0:
        return out
    described = pd.Series(values, dtype=float).describe()
    out |= {k: float(described[k]) for k in ("mean", "min", "max")}
    if n > 1:
        out["std"] = float(described["std"])
        out["ci_low"], out["ci_high"] = _t_interval(out["mean"], out["std"], n, confidence)
    return out


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


def cells_for(
    runs: Sequence[Mapping[str, Any]],
    group_by: Sequence[str] | None,
    budget_key: str | None,
) -> tuple[list[Cell], str | None]:
    """The cells of ``runs``: ``group_by`` None splits the default keys' groups by config,
    explicit keys pool. Returns the cells and the budget key (None unless in the group keys)."""
    pool = group_by is not None
    keys = list(DEFAULT_GROUP_BY if group_by is None else group_by)
    budget_key = budget_key if budget_key in keys else None
    return make_cells(runs, keys, budget_key, pool=pool), budget_key


# per-run numbers a cell reports as their mean: row key -> results.json field
_RUN_MEANS = {
    "wall_time_mean_s": "wall_time_s",
    "trainable_params_mean": "trainable_params",
    "trainable_fraction_mean": "trainable_fraction",
}


def _number(value: Any) -> float:
    """``value`` as a float, NaN when it is not a number (or is a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return np.nan
    return float(value)


def _finite(value: Any) -> float | None:
    """``value`` as a float, None for NaN."""
    return None if pd.isna(value) else float(value)


def aggregate_cells(
    cells: Sequence[Cell],
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
    higher_is_better: bool | None = None,
) -> list[dict[str, Any]]:
    """One row per cell over seeds: n, mean, std, min, max, the t interval of the mean, the
    mean wall time, seeds and values, and the failed runs (counted, never averaged); then
    :func:`mark_best`. Rows also carry the mean trainable-parameter count and fraction (runs
    that recorded them). A completed run without ``metric`` counts as failed."""
    records = []
    for index, cell in enumerate(cells):
        for run in cell.finished(metric):
            records.append(
                {
                    "cell": index,
                    "value": metric_value(run, metric),
                    **{column: _number(run.get(field)) for column, field in _RUN_MEANS.items()},
                }
            )
    frame = pd.DataFrame(records, columns=["cell", "value", *_RUN_MEANS])
    values = frame.groupby("cell")["value"].agg(list)
    means = frame.groupby("cell")[list(_RUN_MEANS)].mean()
    rows = []
    for index, cell in enumerate(cells):
        done = cell.finished(metric)
        failed = [r for r in cell.runs if not any(r is d for d in done)]
        run_means = {key: _finite(means[key].get(index, np.nan)) for key in _RUN_MEANS}
        rows.append(
            {
                "key": cell.key,
                "method": cell.method,
                "label": cell.label,
                "variant": dict(cell.variant),
                "budget": cell.budget,
                "budget_label": format_value(cell.budget) if budget_key else metric,
                **summarize(values.get(index, [])),
                "n_failed": len(failed),
                **run_means,
                "seeds": [_seed(r) for r in done],
                "values": list(values.get(index, [])),
                "runs": [r.get(PATH_KEY) for r in done],
                "failed": [_failure(r, metric) for r in failed],
                "fingerprint": cell.fingerprint,
                "pooled": list(cell.pooled),
            }
        )
    rows.sort(key=lambda r: (r["method"], budget_sort_key(r["budget"])))
    if higher_is_better is None:
        higher_is_better = not lower_is_better(metric)
    mark_best(rows, higher_is_better)
    return rows


def aggregate(
    runs: Sequence[Mapping[str, Any]],
    group_by: Sequence[str] | None = None,
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
    higher_is_better: bool | None = None,
) -> list[dict[str, Any]]:
    """The table rows of ``runs`` (see :func:`cells_for` and :func:`aggregate_cells`)."""
    cells, budget_key = cells_for(runs, group_by, budget_key)
    return aggregate_cells(cells, metric, budget_key, higher_is_better)


def _unique_by_seed(seeds: Sequence[Any], values: Sequence[float]) -> dict[Any, float]:
    """Values by seed, without seeds that appear more than once (a pooled cell)."""
    counts: dict[Any, int] = {}
    for seed in seeds:
        counts[seed] = counts.get(seed, 0) + 1
    return {s: v for s, v in zip(seeds, values) if counts[s] == 1 and s is not None}


def mark_best(
    rows: list[dict[str, Any]],
    higher_is_better: bool = True,
    confidence: float = CONFIDENCE,
) -> None:
    """Set ``best`` on the row with the best mean of each budget column only where the paired
    t interval (same seeds) of its difference to the runner-up (the second-best mean) excludes
    zero; the row with the best mean gets ``best_test`` (runner-up, pairs, interval) either
    way. A column with one row has no runner-up and no bold."""
    sign = 1.0 if higher_is_better else -1.0
    for row in rows:
        row["best"] = False
        row["best_test"] = None
    columns: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["mean"] is not None:
            columns.setdefault(row["budget_label"], []).append(row)
    for members in columns.values():
        ranked = sorted(members, key=lambda r: -sign * r["mean"])
        if len(ranked) < 2:
            continue
        best, runner = ranked[0], ranked[1]
        a = _unique_by_seed(best["seeds"], best["values"])
        b = _unique_by_seed(runner["seeds"], runner["values"])
        seeds = sorted(set(a) & set(b), key=_seed_order)
        test = paired_difference([a[s] - b[s] for s in seeds], confidence)
        low, high = test["ci_low"], test["ci_high"]
        excludes = low is not None and (low > 0 if higher_is_better else high < 0)
        best["best_test"] = {"vs": runner["method"], "seeds": seeds, **test, "excludes": excludes}
        best["best"] = excludes


def methods_matching(methods: Sequence[str], spec: str) -> list[str]:
    """The method labels that ``spec`` names: the label itself, a prefix of ``a/b`` parts, or a
    label whose row is named apart by config values (``finetune/full`` -> ``finetune/full
    lr=0.01``). ``+`` in ``spec`` stands for a space (``gan/linear_probe+source=gan``), so a
    spec passes through shell word splitting."""
    specs = {spec, spec.replace("+", " ")}
    return [m for m in methods if any(m == s or m.startswith((s + "/", s + " ")) for s in specs)]


def paired_difference(diffs: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean of paired differences, their sample std and the t interval of the mean."""
    n = len(diffs)
    if n == 0:
        return {"n_pairs": 0, "mean_diff": None, "sd_diff": None, "ci_low": None, "ci_high": None}
    arr = np.asarray(diffs, dtype=float)
    mean = float(arr.mean())
    if n == 1:
        return {"n_pairs": 1, "mean_diff": mean, "sd_diff": None, "ci_low": None, "ci_high": None}
    sd = float(arr.std(ddof=1))
    low, high = _t_interval(mean, sd, n, confidence)
    return {"n_pairs": n, "mean_diff": mean, "sd_diff": sd, "ci_low": low, "ci_high": high}


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


def paired_from_cells(
    cells: Sequence[Cell],
    a: str,
    b: str,
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
) -> list[dict[str, Any]]:
    """``a`` minus ``b`` on the same seeds, for each row matching ``a`` and ``b`` (see
    :func:`methods_matching`) and each budget. Seeds found on one side only, or more than once
    on a side, are listed under ``unpaired_a`` / ``unpaired_b`` and not used."""
    by_cell = {(c.method, format_value(c.budget)): c for c in cells}
    budgets: dict[str, Any] = {}
    for cell in cells:
        budgets.setdefault(format_value(cell.budget), cell.budget)
    order = sorted(budgets, key=lambda label: budget_sort_key(budgets[label]))
    methods = sorted({c.method for c in cells})
    rows = []
    for ma in methods_matching(methods, a):
        for mb in methods_matching(methods, b):
            if ma == mb:
                continue
            for label in order:
                cell_a, cell_b = by_cell.get((ma, label)), by_cell.get((mb, label))
                if cell_a is None and cell_b is None:
                    continue
                va, rep_a = _by_seed(cell_a.runs if cell_a else [], metric)
                vb, rep_b = _by_seed(cell_b.runs if cell_b else [], metric)
                seeds = sorted(set(va) & set(vb), key=_seed_order)
                rows.append(
                    {
                        "a": ma,
                        "b": mb,
                        "budget": budgets[label],
                        "budget_label": label if budget_key else metric,
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


def paired_comparisons(
    runs: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    group_by: Sequence[str] | None = None,
    metric: str = DEFAULT_METRIC,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
) -> list[dict[str, Any]]:
    """:func:`paired_from_cells` over the cells of ``runs`` (see :func:`cells_for`)."""
    cells, budget_key = cells_for(runs, group_by, budget_key)
    return paired_from_cells(cells, a, b, metric, budget_key)
