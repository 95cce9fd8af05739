"""PNG plots of a report, drawn without pyplot (no global backend state; Agg canvas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from transferlab.report.runs import (
    ALL_LABEL,
    budget_sort_key,
    format_value,
    get_key,
    hashable,
    is_completed,
    metric_value,
)
from transferlab.report.stats import summarize

_DPI = 120


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_budget_curve(
    groups: Sequence[Mapping[str, Any]],
    path: str | Path,
    metric: str = "test/acc",
    budget_name: str = "labels per class",
) -> Path | None:
    """The metric against the label budget, one line per method with ± std bands (log x; the
    ``all`` budget at the right). None (nothing written) with fewer than two budgets."""
    groups = [g for g in groups if g["mean"] is not None]
    numeric = sorted({g["budget"] for g in groups if budget_sort_key(g["budget"])[0] == 0})
    has_all = any(g["budget"] is None for g in groups)
    if not numeric or len(numeric) + has_all < 2:
        return None
    x_all = numeric[-1] * 4 if numeric[-1] > 0 else 1.0
    position = {b: float(b) for b in numeric} | ({None: x_all} if has_all else {})
    fig = _figure()
    ax = fig.add_subplot()
    methods = sorted({g["method"] for g in groups})
    for method in methods:
        points = sorted(
            (
                (position[g["budget"]], g["mean"], np.nan if g["std"] is None else g["std"])
                for g in groups
                if g["method"] == method and g["budget"] in position and g["mean"] is not None
            ),
            key=lambda p: p[0],
        )
        if not points:
            continue
        x, mean, std = (np.asarray(v, dtype=float) for v in zip(*points))
        std = np.nan_to_num(std)  # one run: no band
        (line,) = ax.plot(x, mean, marker="o", label=method)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xscale("log")
    ticks = sorted(position.values())
    ax.set_xticks(ticks, [format_value(b) for b in sorted(position, key=budget_sort_key)])
    ax.minorticks_off()
    ax.set_xlabel(budget_name + (f" ('{ALL_LABEL}' = every label)" if has_all else ""))
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _matches(config_key: str, key: str) -> bool:
    return config_key == key or config_key.endswith("." + key)


def plot_layer_transfer(
    cells: Sequence[Any],
    path: str | Path,
    k_key: str = "transfer_stages",
    variant_key: str = "strategy.mode",
    metric: str = "test/acc",
    budget_key: str | None = "labels_per_class",
) -> Path | None:
    """The metric against the number of transferred stages ``k``, one line per variant (e.g.
    frozen / fine-tuned; ``variant_key`` may name several comma-separated keys; and per budget
    when runs span several, and per config that sets rows apart). ``cells``: the report's
    cells (:class:`transferlab.report.grouping.Cell`: a point averages the runs of one cell),
    or plain runs (averaged by line and k alone). None when no run has ``k``."""
    if all(isinstance(c, Mapping) for c in cells):
        cells = [SimpleNamespace(runs=list(cells), variant={})]
    values: dict[tuple[str, Any], list[float]] = {}
    sources: dict[tuple[str, Any], set[int]] = {}
    variant_keys = [key.strip() for key in variant_key.split(",") if key.strip()]
    if budget_key == k_key:
        budget_key = None
    runs = [r for cell in cells for r in cell.runs]
    budgets = {hashable(get_key(r, budget_key)) for r in runs} if budget_key else set()
    for index, cell in enumerate(cells):
        extra = [
            (f"{k.rsplit('.', 1)[-1]}={format_value(v)}" if k != "debug" else "debug")
            for k, v in (getattr(cell, "variant", None) or {}).items()
            if not _matches(k, k_key) and not any(_matches(k, key) for key in variant_keys)
        ]
        for run in cell.runs:
            k, value = get_key(run, k_key), metric_value(run, metric)
            if not is_completed(run) or value is None or not isinstance(k, int | float):
                continue
            label = ", ".join(format_value(hashable(get_key(run, key))) for key in variant_keys)
            if len(budgets) > 1:
                label += f", {budget_key}={format_value(hashable(get_key(run, budget_key)))}"
            label = " ".join([label, *extra])
            values.setdefault((label, k), []).append(value)
            sources.setdefault((label, k), set()).add(index)
    if not values:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    for label in sorted({lab for lab, _ in values}):
        ks = sorted(k for lab, k in values if lab == label)
        summaries = [summarize(values[(label, k)]) for k in ks]
        mean = np.array([s["mean"] for s in summaries])
        std = np.array([s["std"] or 0.0 for s in summaries])
        pooled = any(len(sources[(label, k)]) > 1 for k in ks)
        (line,) = ax.plot(ks, mean, marker="o", label=label + (" (pooled)" if pooled else ""))
        ax.fill_between(ks, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"transferred stages k ({k_key})")
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(title=variant_key, fontsize="small")
    return _save(fig, path)


def _details(run: Mapping[str, Any]) -> Mapping[str, Any]:
    details = run.get("test_details")
    return details if isinstance(details, Mapping) else {}


def mean_per_class(runs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float | None, int]]:
    """Per class over ``runs``: the mean test accuracy, its std over runs (None for one) and
    the number of runs with that class."""
    by_class: dict[str, list[float]] = {}
    for run in runs:
        per_class = _details(run).get("per_class_acc")
        if isinstance(per_class, Mapping):
            for name, acc in per_class.items():
                if isinstance(acc, int | float) and not isinstance(acc, bool):
                    by_class.setdefault(str(name), []).append(float(acc))
    out = {}
    for name, accs in by_class.items():
        s = summarize(accs)
        out[name] = (s["mean"], s["std"], s["n"])
    return out


def mean_confusion(runs: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[str], int] | None:
    """The mean row-normalised confusion matrix over ``runs`` (those whose matrix has the shape
    and class names of the first), its class names and the number of runs averaged."""
    matrices, names = [], None
    for run in runs:
        details = _details(run)
        matrix = details.get("confusion_matrix")
        if not matrix:
            continue
        counts = np.asarray(matrix, dtype=float)
        run_names = [str(c) for c in details.get("class_names") or range(counts.shape[0])]
        if names is None:
            names = run_names
        if run_names != names or counts.shape != (len(names), len(names)):
            continue
        matrices.append(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1))
    if not matrices:
        return None
    return np.mean(matrices, axis=0), names, len(matrices)


def plot_per_class(
    rows: Sequence[tuple[str, Any, Sequence[Mapping[str, Any]]]],
    path: str | Path,
    budget_name: str = "",
) -> Path | None:
    """Grouped bars of per-class test accuracy, one bar per row (method) averaged over its
    seeds (error bar: std over seeds), one panel per budget. ``rows``: (row name, budget,
    runs). None when no run has per-class numbers."""
    panels: dict[Any, list[tuple[str, dict]]] = {}
    for name, budget, runs in rows:
        means = mean_per_class(runs)
        if means:
            panels.setdefault(budget, []).append((name, means))
    if not panels:
        return None
    budgets = sorted(panels, key=budget_sort_key)
    n_classes = max(len(m) for bars in panels.values() for _, m in bars)
    n_bars = max(len(bars) for bars in panels.values())
    width = max(6.0, 0.25 * n_classes * max(n_bars, 2) + 3)
    fig = _figure(width, 3.4 * len(budgets) + 0.6)
    axes = fig.subplots(len(budgets), 1, squeeze=False)[:, 0]
    for ax, budget in zip(axes, budgets):
        bars = panels[budget]
        classes: dict[str, None] = {}
        for _, means in bars:
            classes.update(dict.fromkeys(means))
        names = list(classes)
        step = 0.8 / len(bars)
        for i, (label, means) in enumerate(bars):
            x = np.arange(len(names)) - 0.4 + step * (i + 0.5)
            mean = [means[c][0] if c in means else np.nan for c in names]
            err = [(means[c][1] or 0.0) if c in means else 0.0 for c in names]
            runs = max((means[c][2] for c in means), default=0)
            ax.bar(x, mean, step, yerr=err, capsize=2, label=f"{label} (n={runs})")
        rotate = len(names) > 6
        ax.set_xticks(
            range(len(names)),
            names,
            rotation=45 if rotate else 0,
            ha="right" if rotate else "center",
        )
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("test accuracy")
        title = "per-class test accuracy, mean ± std over seeds"
        if budget_name:
            title += f", {budget_name}={format_value(budget)}"
        ax.set_title(title, fontsize="small")
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


MAX_CONFUSION_PANELS = 24


def plot_confusion(
    rows: Sequence[tuple[str, Any, Sequence[Mapping[str, Any]]]],
    path: str | Path,
    budget_name: str = "",
) -> Path | None:
    """One panel per (row, budget): the test confusion matrix, row-normalised per run and
    averaged over the row's seeds (rows: true class, columns: predicted; text: the mean
    fraction). At most :data:`MAX_CONFUSION_PANELS` panels. None when no run has one."""
    panels = []
    for name, budget, runs in rows:
        mean = mean_confusion(runs)
        if mean is not None:
            panels.append((name, budget, *mean))
    if not panels:
        return None
    panels = panels[:MAX_CONFUSION_PANELS]
    n = max(p[2].shape[0] for p in panels)
    cols = min(len(panels), 3)
    grid_rows = -(-len(panels) // cols)
    side = max(3.6, 0.5 * n + 1.6)
    fig = _figure(side * cols + 1.0, side * grid_rows + 0.4)
    axes = fig.subplots(grid_rows, cols, squeeze=False).ravel()
    image = None
    for ax, (name, budget, fractions, names, count) in zip(axes, panels):
        image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
        size = fractions.shape[0]
        for i in range(size):
            for j in range(size):
                ax.text(
                    j,
                    i,
                    f"{fractions[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if fractions[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(size), names, rotation=45 if size > 5 else 0, fontsize="small")
        ax.set_yticks(range(size), names, fontsize="small")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        title = name + (f", {budget_name}={format_value(budget)}" if budget_name else "")
        ax.set_title(f"{title}\n(mean of {count} runs)", fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    fig.colorbar(image, ax=list(axes[: len(panels)]), label="fraction of the true class")
    return _save(fig, path)
