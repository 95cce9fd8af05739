"""``build_report``: results files in, tables, plots, ``report.md`` and ``report.json`` out."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.report import plots, tables
from transferlab.report.grouping import (
    RUN_LOCAL_CONFIG_KEYS,
    Cell,
    check_repeated_seeds,
    is_debug,
    make_cells,
    mixed_identity_keys,
)
from transferlab.report.runs import (
    EXPERIMENT_KEYS,
    PATH_KEY,
    RESULTS_FILE,
    budget_sort_key,
    drop_superseded,
    find_missing,
    has_key,
    is_completed,
    load_runs,
    metric_value,
    select_task,
)
from transferlab.report.stats import (
    CONFIDENCE,
    DEFAULT_BUDGET_KEY,
    DEFAULT_GROUP_BY,
    DEFAULT_METRIC,
    aggregate_cells,
    lower_is_better,
    methods_matching,
    paired_from_cells,
)

REPORT_SCHEMA = 2
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


def _clean(value: Any) -> Any:
    """JSON-safe: tuples as lists, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _debug_runs(
    runs: list[dict[str, Any]], include: bool, notes: list[str]
) -> tuple[list[dict[str, Any]], int]:
    """Leave debug runs out (a note says how many) unless ``include``."""
    debug = [r for r in runs if is_debug(r)]
    if not debug:
        return runs, 0
    if include:
        notes.append(f"{len(debug)} debug runs included as their own rows (named 'debug')")
        return runs, 0
    shown = ", ".join(str(r[PATH_KEY]) for r in debug[:5]) + (", ..." if len(debug) > 5 else "")
    notes.append(
        f"left out {len(debug)} debug runs (status 'debug', trainer.fast_dev_run, "
        f"overfit_batches or limit_*_batches): {shown}; --include-debug shows them as own rows"
    )
    kept = [r for r in runs if not is_debug(r)]
    if not kept:
        raise ConfigError(
            f"all {len(debug)} runs are debug runs (fast_dev_run, limit_*_batches); "
            "pass --include-debug to report them anyway"
        )
    return kept, len(debug)


def _draw_plots(
    cells: Sequence[Cell],
    groups: Sequence[Mapping[str, Any]],
    out: Path,
    *,
    metric: str,
    budget_key: str | None,
    layer_key: str,
    variant_key: str,
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
        cells, out / PLOT_FILES["layer_transfer"], layer_key, variant_key, metric, budget_key
    )
    if path is None:
        notes.append(f"layer-transfer plot skipped: no completed run has '{layer_key}'")
    else:
        written["layer_transfer"] = path.name
    ordered = sorted(cells, key=lambda c: (c.method, budget_sort_key(c.budget)))
    rows = [(c.method, c.budget, c.finished(metric)) for c in ordered]
    budget_name = budget_key or ""
    drawn = False
    for name, draw in (("per_class", plots.plot_per_class), ("confusion", plots.plot_confusion)):
        path = draw(rows, out / PLOT_FILES[name], budget_name=budget_name)
        if path is not None:
            written[name] = path.name
            drawn = True
    if not drawn:
        notes.append("per-class and confusion plots skipped: no run has test_details")
    elif sum(1 for _, _, runs in rows if runs) > plots.MAX_CONFUSION_PANELS:
        notes.append(
            f"confusion plot: the first {plots.MAX_CONFUSION_PANELS} cells only (of {len(rows)})"
        )
    return written


def _legend(report: Mapping[str, Any]) -> list[str]:
    metric = report["metric"]
    direction = "higher" if report["higher_is_better"] else "lower"
    level = f"{report['confidence']:.0%}"
    if report["pooled"]:
        grouping = (
            f"Grouped by {', '.join(report['group_by'])} as asked (`--group-by`): a cell may "
            "pool runs whose configs differ; the `pooled:` lines under the table name the "
            "config keys that differ inside each cell."
        )
    else:
        grouping = (
            "A cell averages only runs whose resolved configs are identical except for the "
            "seed and run-local keys (paths, logging, caches); runs that differ in anything "
            "else are separate rows, named by the config keys that differ (e.g. `lr=0.01`)."
        )
    return [
        f"Metric `{metric}` ({direction} is better): mean ± sample std over seeds (n = finished "
        "runs; `–` for the std of a single run).",
        grouping,
        f"**Bold**: the best mean of its column, only where the {level} paired t interval "
        "(same seeds) of its difference to the runner-up excludes zero (see *Best per column*); "
        "no bold means the data do not separate the two best rows.",
    ]


MISSING_LISTED = 20  # job dirs named one by one in the notes


def _missing_notes(missing: Sequence[Path]) -> list[str]:
    """Notes naming the job directories without a results file."""
    if not missing:
        return []
    named = ", ".join(str(m) for m in missing[:MISSING_LISTED])
    more = f" and {len(missing) - MISSING_LISTED} more" if len(missing) > MISSING_LISTED else ""
    return [
        f"{len(missing)} missing jobs (a job dir with no {RESULTS_FILE}: killed from outside "
        f"or still running; in no table): {named}{more}"
    ]


def _missing(counts: Mapping[str, Any]) -> str:
    n = counts.get("missing", 0)
    return f", {n} missing (job dirs without a results file, see Notes)" if n else ""


def _markdown(report: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]) -> str:
    metric, budget_key = report["metric"], report["budget_key"]
    counts = report["counts"]
    budget_name = budget_key or "budget"
    debug = f", {counts['debug_left_out']} debug runs left out" if counts["debug_left_out"] else ""
    lines = [
        "# transferlab report",
        "",
        *_legend(report),
        f"Runs: {counts['runs']} found, {counts['completed']} finished, {counts['failed']} "
        f"failed (failed runs are counted and listed, never averaged){_missing(counts)}"
        f"{debug}.",
        "",
        f"## {metric} by method" + (f" and {budget_key}" if budget_key else ""),
        "",
        tables.pivot_markdown(groups),
        "",
    ]
    pooled = tables.pooled_lines(groups)
    if pooled:
        lines += [*(f"- {line}" for line in pooled), ""]
    if any(g.get("best_test") for g in groups):
        lines += [
            "## Best per column (best − runner-up on the same seeds)",
            "",
            tables.best_markdown(groups, budget_name),
            "",
        ]
    if report["paired"]:
        lines += [
            "## Paired differences (a − b on the same seeds; 95% t interval)",
            "",
            tables.paired_markdown(report["paired"], budget_name),
            "",
        ]
    lines += ["## Every cell", "", tables.summary_markdown(groups, budget_name), ""]
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
        if "per_class" in report["plots"] or "confusion" in report["plots"]:
            lines += [
                "Per-class accuracy and confusion: per row (and budget), averaged over its "
                "seeds (confusion matrices normalised per true class, then averaged).",
                "",
            ]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in report["notes"]), ""]
    lines += [
        "Files: `table.csv` (one row per cell: method, budget, mean, std, n, seeds, ci_low, "
        "ci_high, best and the keys naming the row), `summary.csv` (the same with failed runs, "
        "min, max, wall time, pooled keys), `table.tex` (the table above), `paired.csv`, "
        "`report.json`.",
        "",
    ]
    return "\n".join(lines)


def _source_sharing(cells: Sequence[Cell], metric: str, notes: list[str]) -> None:
    """Say whether each row's seeds share one pretrained source (its variance is then not in
    the std) or built one each (``source.seed=${seed}``)."""
    shared, own = set(), set()
    for cell in cells:
        runs = cell.finished(metric)
        keys = {(r.get("source_info") or {}).get("source_key") for r in runs} - {None}
        if len(runs) > 1 and keys:
            (shared if len(keys) == 1 else own).add(cell.method)
    if shared:
        notes.append(
            "one source shared by all seeds (its variance is not in the std): "
            + ", ".join(sorted(shared))
        )
    if own:
        notes.append("a source per seed (source.seed=${seed}): " + ", ".join(sorted(own)))


def build_report(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    group_by: Sequence[str] | None = None,
    metric: str = DEFAULT_METRIC,
    compare: Sequence[Sequence[str]] | None = None,
    budget_key: str | None = DEFAULT_BUDGET_KEY,
    layer_key: str = "transfer_stages",
    variant_key: str = "strategy.mode",
    task: str | None = None,
    include_debug: bool = False,
) -> dict[str, Any]:
    """Write the report of the runs under ``paths`` into ``out_dir`` and return its numbers.

    ``group_by`` None: rows by :data:`DEFAULT_GROUP_BY`, split further by the runs' resolved
    configs (a cell averages one configuration over seeds; see
    :mod:`transferlab.report.grouping`); explicit keys pool every run with the same values
    and say which config keys each cell pooled. ``compare``: pairs (A, B) of methods or method
    prefixes; None compares finetune with scratch where both ran. ``task``: ``train``, ``eval``
    or ``all``; None keeps the train runs when tasks mix. ``include_debug``: keep debug runs
    (fast_dev_run, limit_*_batches), as their own rows. Raises ConfigError for no results,
    unknown keys, metrics or methods, and for a configuration that repeats a seed.
    """
    paths = [Path(p) for p in paths]
    runs = load_runs(paths)
    missing = find_missing(paths)
    if not runs:
        jobs = f" ({len(missing)} job dirs without one)" if missing else ""
        raise ConfigError(
            f"no results.json under {', '.join(map(str, paths)) or '(no paths)'}{jobs}; "
            "give run or multirun directories"
        )
    runs, notes = select_task(runs, task)
    notes += _missing_notes(missing)
    if not runs:
        raise ConfigError(f"no '{task}' runs; use task train, eval or all")
    runs, dropped = drop_superseded(runs)
    notes += dropped
    pool = group_by is not None
    group_by = list(DEFAULT_GROUP_BY if group_by is None else group_by)
    _check_keys(runs, group_by)
    runs, n_debug = _debug_runs(runs, include_debug, notes)
    completed = [r for r in runs if is_completed(r)]
    _check_metric(completed, metric)
    if budget_key and budget_key not in group_by:
        notes.append(f"'{budget_key}' is not a group key: one column for all budgets")
        budget_key = None
    cells = make_cells(runs, group_by, budget_key, pool=pool)
    check_repeated_seeds(cells, metric, budget_key)
    mixed = mixed_identity_keys(cells, [k for k in EXPERIMENT_KEYS if k not in group_by])
    if mixed:
        notes.append(
            f"groups mix runs that differ in {', '.join(mixed)}: add them to the group keys"
        )
    _source_sharing(cells, metric, notes)
    higher = not lower_is_better(metric)
    groups = aggregate_cells(cells, metric, budget_key, higher)
    paired = [
        row
        for a, b in _comparisons(groups, compare, notes)
        for row in paired_from_cells(cells, a, b, metric, budget_key)
    ]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    caption = (
        f"{metric}: mean ± std over seeds (n runs); bold: best of its column where the paired "
        f"{CONFIDENCE:.0%} interval against the runner-up excludes zero"
    )
    tables.write_summary_csv(groups, out / "summary.csv", budget_key)
    tables.write_table_csv(groups, out / "table.csv", budget_key)
    (out / "table.tex").write_text(tables.pivot_latex(groups, caption), encoding="utf-8")
    tables.write_paired_csv(paired, out / "paired.csv")
    drawn = _draw_plots(
        cells,
        groups,
        out,
        metric=metric,
        budget_key=budget_key,
        layer_key=layer_key,
        variant_key=variant_key,
        notes=notes,
    )
    n_failed = sum(g["n_failed"] for g in groups)
    report = _clean(
        {
            "schema": REPORT_SCHEMA,
            "metric": metric,
            "higher_is_better": higher,
            "confidence": CONFIDENCE,
            "group_by": group_by,
            "pooled": pool,
            "run_local_config_keys": list(RUN_LOCAL_CONFIG_KEYS),
            "include_debug": include_debug,
            "budget_key": budget_key,
            "counts": {
                "runs": len(runs),
                "completed": len(runs) - n_failed,
                "failed": n_failed,
                "missing": len(missing),
                "debug_left_out": n_debug,
            },
            "missing": [str(m) for m in missing],
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
