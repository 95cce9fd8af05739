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
    """``0.844 ± 0.025 (n=3)``, with ``, 1 failed`` when runs failed; ``–`` without a mean."""
    failed = f", {group['n_failed']} failed" if group.get("n_failed") else ""
    if group["mean"] is None:
        return f"– (n=0{failed})"
    return f"{group['mean']:.{digits}f} {pm} {group['std']:.{digits}f} (n={group['n']}{failed})"


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


def write_pivot_csv(groups: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """The pivot as CSV: one row per method, one column per budget (cells as in Markdown)."""
    columns, rows = pivot(groups)
    body = [[m, *("" if g is None else format_cell(g) for g in cells)] for m, cells in rows]
    return _write_csv(Path(path), ["method", *columns], body)


SUMMARY_FIELDS = (
    "method",
    "budget",
    "n",
    "n_failed",
    "mean",
    "std",
    "min",
    "max",
    "wall_time_mean_s",
    "seeds",
    "best",
)


def write_summary_csv(
    groups: Sequence[Mapping[str, Any]], path: str | Path, budget_key: str | None = None
) -> Path:
    """Long format: one row per group, its key values then :data:`SUMMARY_FIELDS`."""
    keys = list(groups[0]["key"]) if groups else []
    rows = []
    for g in groups:
        key_cells = [
            format_value(v) if (k == budget_key or v is not None) else ""
            for k, v in g["key"].items()
        ]
        fields = {**g, "budget": g["budget_label"], "seeds": _seeds(g["seeds"])}
        rows.append([*key_cells, *(_csv_value(fields[f]) for f in SUMMARY_FIELDS)])
    return _write_csv(Path(path), [*keys, *SUMMARY_FIELDS], rows)


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
    """One row per group: n, mean, std, min, max, failed runs, mean wall time, seeds."""
    body = [
        [
            g["method"],
            g["budget_label"],
            str(g["n"]),
            _num(g["mean"], 4),
            _num(g["std"], 4),
            _num(g["min"], 4),
            _num(g["max"], 4),
            str(g["n_failed"]),
            _num(g["wall_time_mean_s"], 1),
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
        "min",
        "max",
        "failed",
        "wall time (s)",
        "seeds",
    ]
    return markdown_table(header, body, "llrrrrrrrl")


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
