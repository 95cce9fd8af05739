"""Tables of aggregated results as Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transferlab.report.runs import budget_sort_key, format_value

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def format_cell(group: Mapping[str, Any], digits: int = 3, pm: str = "±") -> str:
    """``0.844 ± 0.025 (n=3)``, with ``, 1 failed`` when runs failed; ``0.844 ± – (n=1)`` for one
    run (no spread to show); ``–`` without a mean."""
    failed = f", {group['n_failed']} failed" if group.get("n_failed") else ""
    if group["mean"] is None:
        return f"– (n=0{failed})"
    std = "–" if group.get("std") is None else f"{group['std']:.{digits}f}"
    return f"{group['mean']:.{digits}f} {pm} {std} (n={group['n']}{failed})"


def _num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _seeds(seeds: Sequence[Any]) -> str:
    return " ".join(str(s) for s in seeds)


def pivot(groups: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[tuple[str, list]]]:
    """Budget column labels (numbers ascending, ``all`` last) and, per method, its groups by
    column (None where a method has no runs at that budget)."""
    budgets: dict[str, Any] = {}
    for g in groups:
        budgets.setdefault(g["budget_label"], g["budget"])
    columns = sorted(budgets, key=lambda label: budget_sort_key(budgets[label]))
    methods: dict[str, dict[str, Mapping[str, Any]]] = {}
    for g in groups:
        methods.setdefault(g["method"], {})[g["budget_label"]] = g
    rows = [(m, [cells.get(c) for c in columns]) for m, cells in methods.items()]
    return columns, rows


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped); ``align`` holds one ``l`` or
    ``r`` per column (default: the first left, the others right)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"

    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def pivot_markdown(groups: Sequence[Mapping[str, Any]]) -> str:
    """Methods by budget, cells ``mean ± std (n=…)``, the best of each column in bold."""
    columns, rows = pivot(groups)
    body = []
    for method, cells in rows:
        texts = []
        for g in cells:
            text = "" if g is None else format_cell(g)
            texts.append(f"**{text}**" if g is not None and g.get("best") else text)
        body.append([method, *texts])
    return markdown_table(["method", *columns], body)


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def pivot_latex(groups: Sequence[Mapping[str, Any]], caption: str = "") -> str:
    """The pivot as a booktabs ``tabular`` (best of each column in ``\\textbf``)."""
    columns, rows = pivot(groups)
    lines = [
        f"% {caption}" if caption else "% transferlab report",
        "% needs \\usepackage{booktabs}",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        " & ".join(["method", *(latex_escape(c) for c in columns)]) + " \\\\",
        "\\midrule",
    ]
    for method, cells in rows:
        texts = []
        for g in cells:
            # a cell holds only numbers, parentheses and words: no escaping needed
            text = "" if g is None else format_cell(g, pm="$\\pm$").replace("–", "--")
            texts.append(f"\\textbf{{{text}}}" if g is not None and g.get("best") else text)
        lines.append(" & ".join([latex_escape(method), *texts]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


TABLE_FIELDS = ("method", "budget", "mean", "std", "n", "seeds", "ci_low", "ci_high", "best")
SUMMARY_FIELDS = (
    "method",
    "budget",
    "mean",
    "std",
    "n",
    "seeds",
    "ci_low",
    "ci_high",
    "best",
    "n_failed",
    "min",
    "max",
    "wall_time_mean_s",
    "trainable_params_mean",
    "trainable_fraction_mean",
    "pooled",
    "fingerprint",
)


def _key_value(value: Any) -> Any:
    """A key's value in a CSV cell: numbers and text as they are, lists joined, None empty."""
    if isinstance(value, list | tuple):
        return format_value(tuple(value))
    return _csv_value(value)


def _long_rows(
    groups: Sequence[Mapping[str, Any]], fields: Sequence[str], budget_key: str | None
) -> tuple[list[str], list[list[Any]]]:
    keys = list(groups[0]["key"]) if groups else []
    variant_keys = sorted({k for g in groups for k in g.get("variant") or {}} - set(keys))
    # a group key called like a field (``--group-by method``) gets its own column name
    header = [*fields, *(f"key.{k}" if k in fields else k for k in [*keys, *variant_keys])]
    rows = []
    for g in groups:
        values = {
            **g,
            "budget": g["budget_label"],
            "seeds": _seeds(g["seeds"]),
            "pooled": " ".join(g.get("pooled") or []),
        }
        key_cells = [
            format_value(v) if k == budget_key else _key_value(v) for k, v in g["key"].items()
        ]
        variant = g.get("variant") or {}
        rows.append(
            [
                *(_csv_value(values.get(f)) for f in fields),
                *key_cells,
                *(_key_value(variant.get(k)) for k in variant_keys),
            ]
        )
    return header, rows


def write_table_csv(
    groups: Sequence[Mapping[str, Any]], path: str | Path, budget_key: str | None = None
) -> Path:
    """The table in long form, numbers in their own columns (:data:`TABLE_FIELDS`; ``ci_low``
    and ``ci_high``: the t interval of the mean), then the keys that name the row: the group
    keys and the config keys that set rows apart. ``pandas.read_csv`` reads the numbers as
    floats (empty = NaN: no std or interval for one run)."""
    header, rows = _long_rows(groups, TABLE_FIELDS, budget_key)
    return _write_csv(Path(path), header, rows)


def write_summary_csv(
    groups: Sequence[Mapping[str, Any]], path: str | Path, budget_key: str | None = None
) -> Path:
    """One row per cell: :data:`SUMMARY_FIELDS` (``pooled``: the config keys that differ inside
    a pooled cell), then the group keys and the config keys that set rows apart."""
    header, rows = _long_rows(groups, SUMMARY_FIELDS, budget_key)
    return _write_csv(Path(path), header, rows)


PAIRED_FIELDS = (
    "a",
    "b",
    "budget",
    "n_pairs",
    "mean_diff",
    "sd_diff",
    "ci_low",
    "ci_high",
    "seeds",
    "unpaired_a",
    "unpaired_b",
)


def write_paired_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Paired comparisons, one row per (a, b, budget); seeds space-separated."""
    body = []
    for r in rows:
        fields = {
            **r,
            "budget": r["budget_label"],
            "seeds": _seeds(r["seeds"]),
            "unpaired_a": _seeds(r["unpaired_a"]),
            "unpaired_b": _seeds(r["unpaired_b"]),
        }
        body.append([_csv_value(fields[f]) for f in PAIRED_FIELDS])
    return _write_csv(Path(path), PAIRED_FIELDS, body)


def paired_markdown(rows: Sequence[Mapping[str, Any]], budget_name: str = "budget") -> str:
    """Paired differences ``a − b`` with their 95% confidence intervals."""
    body = []
    for r in rows:
        ci = (
            "–"
            if r["ci_low"] is None
            else (f"[{_num(r['ci_low'], signed=True)}, {_num(r['ci_high'], signed=True)}]")
        )
        body.append(
            [
                f"{r['a']} − {r['b']}",
                r["budget_label"],
                str(r["n_pairs"]),
                _num(r["mean_diff"], signed=True),
                ci,
                _seeds(r["seeds"]) or "–",
                _seeds(r["unpaired_a"]) or "–",
                _seeds(r["unpaired_b"]) or "–",
            ]
        )
    header = [
        "comparison",
        budget_name,
        "pairs",
        "mean diff",
        "95% CI",
        "paired seeds",
        "unpaired seeds (a)",
        "unpaired seeds (b)",
    ]
    return markdown_table(header, body, "llrrrlll")


def summary_markdown(groups: Sequence[Mapping[str, Any]], budget_name: str = "budget") -> str:
    """One row per cell: n, mean, std, the 95% t interval of the mean, min, max, failed runs,
    mean wall time, trainable parameters (and their fraction of all), seeds."""
    body = [
        [
            g["method"],
            g["budget_label"],
            str(g["n"]),
            _num(g["mean"], 4),
            _num(g["std"], 4),
            "–"
            if g.get("ci_low") is None
            else f"[{_num(g['ci_low'], 4)}, {_num(g['ci_high'], 4)}]",
            _num(g["min"], 4),
            _num(g["max"], 4),
            str(g["n_failed"]),
            _num(g["wall_time_mean_s"], 1),
            _trainable(g),
            _seeds(g["seeds"]) or "–",
        ]
        for g in groups
    ]
    header = [
        "method",
        budget_name,
        "n",
        "mean",
        "std",
        "95% CI of the mean",
        "min",
        "max",
        "failed",
        "wall time (s)",
        "trainable params",
        "seeds",
    ]
    return markdown_table(header, body, "llrrrrrrrrrl")


def _trainable(group: Mapping[str, Any]) -> str:
    """A cell's mean trainable-parameter count with its fraction of all parameters
    (``11,210 (4.1%)``), ``–`` when its runs did not record one."""
    count = group.get("trainable_params_mean")
    if count is None:
        return "–"
    fraction = group.get("trainable_fraction_mean")
    share = "" if fraction is None else f" ({100 * fraction:.3g}%)"
    return f"{count:,.0f}{share}"


def best_markdown(groups: Sequence[Mapping[str, Any]], budget_name: str = "budget") -> str:
    """Per column: the best mean, the runner-up, their paired difference (same seeds) with its
    95% t interval, and whether the best is in bold (the interval excludes zero)."""
    body = []
    for g in sorted(groups, key=lambda g: budget_sort_key(g["budget"])):
        test = g.get("best_test")
        if not test:
            continue
        if test["excludes"]:
            bold = "yes"
        elif test["n_pairs"] < 2:
            bold = f"no: {test['n_pairs']} paired seeds, no interval"
        else:
            bold = "no: the interval holds 0"
        ci = (
            "–"
            if test["ci_low"] is None
            else (f"[{_num(test['ci_low'], signed=True)}, {_num(test['ci_high'], signed=True)}]")
        )
        body.append(
            [
                g["budget_label"],
                g["method"],
                test["vs"],
                str(test["n_pairs"]),
                _num(test["mean_diff"], signed=True),
                ci,
                bold,
            ]
        )
    header = [budget_name, "best mean", "runner-up", "pairs", "mean diff", "95% CI", "bold"]
    return markdown_table(header, body, "lllrrrl")


def pooled_lines(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """``pooled: <row> @ <budget>: <keys>`` for each cell that averages different configs."""
    return [
        f"pooled: {g['method']} @ {g['budget_label']}: runs differ in {', '.join(g['pooled'])}"
        for g in groups
        if g.get("pooled")
    ]


def failed_markdown(groups: Sequence[Mapping[str, Any]]) -> str:
    """The failed runs: method, budget, seed, error, file."""
    body = [
        [
            g["method"],
            g["budget_label"],
            str(f["seed"]),
            f["error"] or str(f["status"]),
            f["path"] or "",
        ]
        for g in groups
        for f in g["failed"]
    ]
    return markdown_table(["method", "budget", "seed", "error", "results file"], body, "llrll")
