"""PNG plots of a report, drawn without pyplot (no global backend state; Agg canvas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
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
                (position[g["budget"]], g["mean"], g["std"])
                for g in groups
                if g["method"] == method and g["budget"] in position and g["mean"] is not None
            ),
            key=lambda p: p[0],
        )
        if not points:
            continue
        x, mean, std = (np.asarray(v, dtype=float) for v in zip(*points))
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


def plot_layer_transfer(
    runs: Sequence[Mapping[str, Any]],
    path: str | Path,
    k_key: str = "transfer_stages",
    variant_key: str = "strategy.mode",
    metric: str = "test/acc",
    budget_key: str | None = "labels_per_class",
) -> Path | None:
    """The metric against the number of transferred stages ``k``, one line per variant (e.g.
    frozen / fine-tuned; ``variant_key`` may name several comma-separated keys; and per budget
    when runs span several). None when no run has ``k``."""
    values: dict[tuple[str, Any], list[float]] = {}
    variant_keys = [key.strip() for key in variant_key.split(",") if key.strip()]
    if budget_key == k_key:
        budget_key = None
    budgets = {hashable(get_key(r, budget_key)) for r in runs} if budget_key else set()
    for run in runs:
        k, value = get_key(run, k_key), metric_value(run, metric)
        if not is_completed(run) or value is None or not isinstance(k, int | float):
            continue
        label = ", ".join(format_value(hashable(get_key(run, key))) for key in variant_keys)
        if len(budgets) > 1:
            label += f", {budget_key}={format_value(hashable(get_key(run, budget_key)))}"
        values.setdefault((label, k), []).append(value)
    if not values:
        return None
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    for label in sorted({lab for lab, _ in values}):
        ks = sorted(k for lab, k in values if lab == label)
        summaries = [summarize(values[(label, k)]) for k in ks]
        mean = np.array([s["mean"] for s in summaries])
        std = np.array([s["std"] for s in summaries])
        (line,) = ax.plot(ks, mean, marker="o", label=label)
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


def plot_per_class(run: Mapping[str, Any], path: str | Path, title: str = "") -> Path | None:
    """Bars of one run's per-class test accuracy. None when the run has no per-class numbers."""
    per_class = _details(run).get("per_class_acc")
    if not isinstance(per_class, Mapping) or not per_class:
        return None
    names, accs = list(per_class), [float(v) for v in per_class.values()]
    fig = _figure(max(5.0, 0.6 * len(names) + 2), 4.0)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), accs, color="tab:blue")
    ax.bar_label(bars, labels=[f"{a:.2f}" for a in accs], fontsize="small")
    ax.set_xticks(
        range(len(names)),
        names,
        rotation=45 if len(names) > 6 else 0,
        ha="right" if len(names) > 6 else "center",
    )
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_title("per-class test accuracy" + (f"\n{title}" if title else ""), fontsize="small")
    return _save(fig, path)


def plot_confusion(run: Mapping[str, Any], path: str | Path, title: str = "") -> Path | None:
    """One run's test confusion matrix (rows: true class, columns: predicted; colour: row
    fraction, text: counts). None when the run has none."""
    details = _details(run)
    matrix = details.get("confusion_matrix")
    if not matrix:
        return None
    counts = np.asarray(matrix, dtype=float)
    n = counts.shape[0]
    names = list(details.get("class_names") or range(n))
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = _figure(max(5.5, 0.55 * n + 2.5), max(4.2, 0.55 * n + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{counts[i, j]:g}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if fractions[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), names, rotation=45 if n > 5 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix" + (f"\n{title}" if title else ""), fontsize="small")
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    return _save(fig, path)
