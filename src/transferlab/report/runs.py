"""Finding, loading and reading results files: the runs a report is made of."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transferlab.core.errors import ConfigError

log = logging.getLogger("transferlab.report")

RESULTS_FILE = "results.json"
PATH_KEY = "_path"  # added to each loaded run: the results file it came from
ALL_LABEL = "all"  # how a budget of None (all labels) is shown
_MISSING = object()


def _natural_key(path: Path) -> list[Any]:
    """Sort ``run/10`` after ``run/9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``results.json`` named directly or found recursively under the given paths."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.setdefault(path.resolve(), None)
        elif path.is_dir():
            for item in sorted(path.rglob(RESULTS_FILE), key=_natural_key):
                found.setdefault(item.resolve(), None)
        else:
            raise ConfigError(f"no such file or directory: '{path}'; give run or multirun dirs")
    return list(found)


def find_missing(paths: Iterable[str | Path]) -> list[Path]:
    """Job directories (Hydra's ``.hydra/config.yaml`` inside) under the given directories that
    hold no ``results.json``: jobs killed from outside, or still running."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            continue
        for config in sorted(path.rglob(".hydra/config.yaml"), key=_natural_key):
            job = config.parent.parent
            if not (job / RESULTS_FILE).exists():
                found.setdefault(job.resolve(), None)
    return list(found)


def load_runs(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Load the results files under ``paths`` (files or directories, searched recursively).

    A file that is not valid JSON, or not a results record, is skipped with one warning line.
    Each run gets its file's path under ``"_path"``.
    """
    runs = []
    for path in find_results(paths):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            log.warning("warning: skipping %s: unreadable JSON (%s)", path, err)
            continue
        if not isinstance(record, dict) or "status" not in record:
            log.warning("warning: skipping %s: not a results record (no 'status')", path)
            continue
        record[PATH_KEY] = str(path)
        runs.append(record)
    return runs


def _lookup(container: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        if not isinstance(container, Mapping) or part not in container:
            return _MISSING
        container = container[part]
    return container


def get_key(run: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``key`` (a dotted path) from the run's identity, else its config, else the record.

    A bare name found nowhere else also matches a key one level inside the config when exactly
    one section has it (``freeze_stages`` -> ``strategy.freeze_stages``).
    """
    parts = key.split(".")
    for container in (run.get("identity"), run.get("config"), run):
        value = _lookup(container, parts)
        if value is not _MISSING:
            return value
    config = run.get("config")
    if len(parts) == 1 and isinstance(config, Mapping):
        hits = [sec[key] for sec in config.values() if isinstance(sec, Mapping) and key in sec]
        if len(hits) == 1:
            return hits[0]
    return default


def has_key(runs: Iterable[Mapping[str, Any]], key: str) -> bool:
    """Whether any run has a value (even null) for ``key``."""
    return any(get_key(run, key, _MISSING) is not _MISSING for run in runs)


FINISHED_STATUSES = ("completed", "debug")


def is_completed(run: Mapping[str, Any]) -> bool:
    """A run that finished (its metrics can be averaged): ``completed``, or ``debug`` (a run
    under a debug setting; the report leaves those out unless asked)."""
    return run.get("status") in FINISHED_STATUSES


def metric_value(run: Mapping[str, Any], metric: str) -> float | None:
    """The run's ``metric`` (from ``metrics``, else by :func:`get_key`) as a float, or None."""
    metrics = run.get("metrics") or {}
    value = metrics.get(metric) if metric in metrics else get_key(run, metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def hashable(value: Any) -> Any:
    """Lists (e.g. ``classes``) as tuples, so that values can be dictionary keys."""
    if isinstance(value, list | tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value


def budget_value(run: Mapping[str, Any], budget_key: str) -> Any:
    """The run's label budget; ``labels_per_class: null`` with a label fraction says so."""
    value = get_key(run, budget_key)
    if budget_key == "labels_per_class" and value is None:
        fraction = get_key(run, "label_fraction")
        if fraction is not None:
            return f"fraction={fraction:g}"
    return hashable(value)


def group_key(
    run: Mapping[str, Any], group_by: Sequence[str], budget_key: str | None
) -> tuple[Any, ...]:
    """The values of ``group_by`` for one run (hashable)."""
    return tuple(
        budget_value(run, k) if k == budget_key else hashable(get_key(run, k)) for k in group_by
    )


def format_value(value: Any) -> str:
    """A group value as text: None -> ``all``, lists joined by commas, floats short."""
    if value is None:
        return ALL_LABEL
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def method_label(key: Mapping[str, Any], budget_key: str | None) -> str:
    """The row name of a group: its non-budget values joined by ``/`` (``finetune/full``)."""
    values = [v for k, v in key.items() if k != budget_key]
    if not values:
        return "(all runs)"
    return "/".join(format_value(v) for v in values if v is not None) or "(unknown)"


def budget_sort_key(value: Any) -> tuple[int, Any]:
    """Numbers ascending, then other text, then ``all`` (None) last."""
    if value is None:
        return (2, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def select_task(runs: list[dict[str, Any]], task: str | None) -> tuple[list[dict], list[str]]:
    """Keep the runs of one task (``train``/``eval``); None keeps train runs when tasks mix."""
    notes: list[str] = []
    tasks = sorted({str(r.get("task")) for r in runs})
    if task is None:
        if len(tasks) <= 1 or "train" not in tasks:
            return runs, notes
        task = "train"
    if task == "all":
        return runs, notes
    kept = [r for r in runs if r.get("task") == task]
    if len(kept) < len(runs):
        notes.append(
            f"kept the {len(kept)} '{task}' runs; {len(runs) - len(kept)} runs of other tasks "
            f"({', '.join(t for t in tasks if t != task)}) left out"
        )
    return kept, notes


def drop_superseded(runs: list[dict[str, Any]]) -> tuple[list[dict], list[str]]:
    """Drop repeated records of one configuration (same ``run_hash``): a finished one wins over
    failed attempts, and of several finished ones the first found is kept."""
    by_hash: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("run_hash"):
            by_hash.setdefault(run["run_hash"], []).append(run)
    dropped: set[int] = set()
    for same in by_hash.values():
        done = [r for r in same if is_completed(r)]
        if done:
            dropped.update(id(r) for r in same if r is not done[0])
    kept = [r for r in runs if id(r) not in dropped]
    notes = []
    if dropped:
        names = ", ".join(r[PATH_KEY] for r in runs if id(r) in dropped)
        notes.append(
            f"left out {len(dropped)} repeated records of finished configurations: {names}"
        )
    return kept, notes


# identity keys that make two runs different experiments (a cell should not mix them)
EXPERIMENT_KEYS = (
    "strategy",
    "mode",
    "model",
    "source",
    "dataset",
    "classes",
    "labels_per_class",
    "label_fraction",
)
