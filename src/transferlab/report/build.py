"""``build_report``: results files in, tables, plots, ``report.md`` and ``report.json`` out."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.report import plots, tables
from transferlab.report.runs import (
    PATH_KEY,
    drop_superseded,
    format_value,
    get_key,
    group_key,
    has_key,
    is_completed,
    load_runs,
    method_label,
    metric_value,
    mixed_keys,
    select_task,
)
from transferlab.report.stats import (
    DEFAULT_BUDGET_KEY,
    DEFAULT_GROUP_BY,
    DEFAULT_METRIC,
    aggregate,
    lower_is_better,
    methods_matching,
    paired_comparisons,
)

REPORT_SCHEMA = 1
DEFAULT_COMPARE = (("finetune", "scratch"),)
PLOT_FILES = {
    "budget_curve": "accuracy_vs_budget.png",
    "layer_transfer": "layer_transfer.png",
    "per_class": "per_class.png",
    "confusion": "confusion.png",
}


def _check_keys(runs: Sequence[Mapping[str, Any]], group_by: Sequence[str]) -> None:
    if not group_by:
        raise ConfigError("group_by is empty; give at least one key, e.g. strategy,mode")
    for key in group_by:
        if not has_key(runs, key):
            known = sorted({k for r in runs for k in (r.get("identity") or {})})
            raise ConfigError(
                f"group key '{key}' is in no run's identity or config; "
                f"identity keys: {', '.join(known)} (or a dotted config path)"
            )


def _check_metric(completed: Sequence[Mapping[str, Any]], metric: str) -> None:
    if completed and not any(metric_value(r, metric) is not None for r in completed):
        known = sorted(
            {
                k
                for r in completed
                for k, v in (r.get("metrics") or {}).items()
                if isinstance(v, int | float)
            }
        )
        raise ConfigError(
            f"metric '{metric}' is in no completed run; available: {', '.join(known)}"
        )


def _comparisons(
    groups: Sequence[Mapping[str, Any]], compare: Sequence[Sequence[str]] | None, notes: list
) -> list[tuple[str, str]]:
    methods = sorted({g["method"] for g in groups})
    wanted = [tuple(c) for c in (DEFAULT_COMPARE if compare is None else compare)]
    chosen = []
    for pair in wanted:
        if len(pair) != 2:
            raise ConfigError(f"a comparison is two methods (A, B), got {pair!r}")
        missing = [side for side in pair if not methods_matching(methods, side)]
        if missing and compare is None:
            notes.append(f"no paired comparison {pair[0]} − {pair[1]}: no '{missing[0]}' runs")
            continue
        if missing:
            raise ConfigError(
                f"compare {pair[0]}:{pair[1]}: no method '{missing[0]}'; "
                f"methods: {', '.join(methods)}"
            )
        chosen.append((pair[0], pair[1]))
    return chosen


def _detail_run(
    completed: Sequence[Mapping[str, Any]], metric: str, higher: bool
) -> Mapping[str, Any] | None:
    """The best completed run (by ``metric``) that has per-class test details."""
    with_details = [
        r
        for r in completed
        if metric_value(r, metric) is not None and isinstance(r.get("test_details"), Mapping)
    ]
    if not with_details:
        return None
    sign = 1.0 if higher else -1.0
    return max(with_details, key=lambda r: sign * metric_value(r, metric))


def _clean(value: Any) -> Any:
    """JSON-safe: tuples as lists, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _draw_plots(
    runs: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    metric: str,
    group_by: Sequence[str],
    budget_key: str | None,
    layer_key: str,
    variant_key: str,
    higher: bool,
    notes: list[str],
) -> dict[str, str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        notes.append("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return {}
    written: dict[str, str] = {}
    if budget_key:
        path = plots.plot_budget_curve(
            groups, out / PLOT_FILES["budget_curve"], metric, budget_key.replace("_", " ")
        )
        if path is None:
            notes.append(
                f"{metric} vs {budget_key} plot skipped: fewer than two budgets with results"
            )
        else:
            written["budget_curve"] = path.name
    path = plots.plot_layer_transfer(
        runs, out / PLOT_FILES["layer_transfer"], layer_key, variant_key, metric, budget_key
    )
    if path is None:
        notes.append(f"layer-transfer plot skipped: no completed run has '{layer_key}'")
    else:
        written["layer_transfer"] = path.name
    completed = [r for r in runs if is_completed(r)]
    run = _detail_run(completed, metric, higher)
    if run is None:
        notes.append("per-class and confusion plots skipped: no run has test_details")
        return written
    key = dict(zip(group_by, group_key(run, group_by, budget_key)))
    title = f"{method_label(key, budget_key)}"
    if budget_key:
        title += f", {budget_key}={format_value(key.get(budget_key))}"
    title += f", seed {get_key(run, 'seed')} (best {metric})"
    for name, draw in (("per_class", plots.plot_per_class), ("confusion", plots.plot_confusion)):
        path = draw(run, out / PLOT_FILES[name], title=title)
        if path is not None:
            written[name] = path.name
    written["detail_run"] = str(run[PATH_KEY])
    return written


def _markdown(report: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]) -> str:
    metric, budget_key = report["metric"], report["budget_key"]
    counts = report["counts"]
    budget_name = budget_key or "budget"
    direction = "higher" if report["higher_is_better"] else "lower"
    lines = [
        "# transferlab report",
        "",
        f"Metric `{metric}`: mean ± sample std over seeds (n = finished runs); {direction} is "
        "better, the best mean of each column in bold.",
        f"Runs: {counts['runs']} found, {counts['completed']} finished, {counts['failed']} "
        "failed (failed runs are counted and listed, never averaged).",
        "",
        f"## {metric} by method" + (f" and {budget_key}" if budget_key else ""),
        "",
        tables.pivot_markdown(groups),
        "",
    ]
    if report["paired"]:
        lines += [
            "## Paired differences (a − b on the same seeds; 95% t interval)",
            "",
            tables.paired_markdown(report["paired"], budget_name),
            "",
        ]
    lines += ["## Every group", "", tables.summary_markdown(groups, budget_name), ""]
    if counts["failed"]:
        lines += ["## Failed runs", "", tables.failed_markdown(groups), ""]
    titles = {
        "budget_curve": f"{metric} against {budget_name}",
        "layer_transfer": f"{metric} against transferred stages",
        "per_class": "per-class test accuracy",
        "confusion": "test confusion matrix",
    }
    shown = [(titles[k], v) for k, v in report["plots"].items() if k in titles]
    if shown:
        lines += ["## Plots", ""]
        lines += [f"![{t}]({f})\n" for t, f in shown]
        if "detail_run" in report["plots"]:
            run = report["plots"]["detail_run"]
            lines += [f"Per-class plots: the best run by `{metric}`, `{run}`.", ""]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in report["notes"]), ""]
    lines += [
        "Files: `summary.csv` (one row per group), `table.csv` / `table.tex` (the table "
        "above), `paired.csv`, `report.json`.",
        "",
    ]
    return "\n".join(lines)


def build_report(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    metric: str = DEFAULT_METRIC,
    compare: Sequence[Sequence[str]] | None = None,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
    layer_key: str = "transfer_stages",
    variant_key: str = "strategy.mode",
    task: str | None = None,
) -> dict[str, Any]:
    """Write the report of the runs under ``paths`` into ``out_dir`` and return its numbers.

    ``compare``: pairs (A, B) of methods or method prefixes; None compares finetune with
    scratch where both ran. ``task``: ``train``, ``eval`` or ``all``; None keeps the train runs
    when tasks mix. Raises ConfigError for no results, unknown keys, metrics or methods.
    """
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    if not runs:
        raise ConfigError(
            f"no results.json under {', '.join(map(str, paths)) or '(no paths)'}; "
            "give run or multirun directories"
        )
    runs, notes = select_task(runs, task)
    if not runs:
        raise ConfigError(f"no '{task}' runs; use task train, eval or all")
    runs, dropped = drop_superseded(runs)
    notes += dropped
    group_by = list(group_by)
    _check_keys(runs, group_by)
    completed = [r for r in runs if is_completed(r)]
    _check_metric(completed, metric)
    if budget_key and budget_key not in group_by:
        notes.append(f"'{budget_key}' is not a group key: one column for all budgets")
        budget_key = None
    mixed = mixed_keys(runs, group_by, budget_key)
    if mixed:
        notes.append(
            f"groups mix runs that differ in {', '.join(mixed)}: add them to the group keys"
        )
    higher = not lower_is_better(metric)
    groups = aggregate(runs, group_by, metric, budget_key, higher)
    paired = [
        row
        for a, b in _comparisons(groups, compare, notes)
        for row in paired_comparisons(runs, a, b, group_by, metric, budget_key)
    ]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    caption = f"{metric}: mean ± std over seeds (n runs); best per column in bold"
    tables.write_summary_csv(groups, out / "summary.csv", budget_key)
    tables.write_pivot_csv(groups, out / "table.csv")
    (out / "table.tex").write_text(tables.pivot_latex(groups, caption), encoding="utf-8")
    tables.write_paired_csv(paired, out / "paired.csv")
    drawn = _draw_plots(
        runs,
        groups,
        out,
        metric=metric,
        group_by=group_by,
        budget_key=budget_key,
        layer_key=layer_key,
        variant_key=variant_key,
        higher=higher,
        notes=notes,
    )
    n_failed = sum(g["n_failed"] for g in groups)
    report = _clean(
        {
            "schema": REPORT_SCHEMA,
            "metric": metric,
            "higher_is_better": higher,
            "group_by": group_by,
            "budget_key": budget_key,
            "counts": {"runs": len(runs), "completed": len(runs) - n_failed, "failed": n_failed},
            "groups": groups,
            "paired": paired,
            "failed": [
                {"method": g["method"], "budget": g["budget_label"], **f}
                for g in groups
                for f in g["failed"]
            ],
            "plots": drawn,
            "files": [
                "report.md",
                "summary.csv",
                "table.csv",
                "table.tex",
                "paired.csv",
                *(v for k, v in drawn.items() if k in PLOT_FILES),
            ],
            "notes": notes,
            "inputs": [str(p) for p in paths],
            "out_dir": str(out),
        }
    )
    (out / "report.md").write_text(_markdown(report, groups), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report
