"""Paired comparisons recomputed from a published report's per-seed values, without the runs.

A report under ``docs/results/`` keeps each row's seeds and values in ``report.json``; this
script pairs two rows on their common seeds at each budget both have (the same t interval as
``transferlab report``'s ``--compare``) and prints the table; ``--out F.csv`` also writes it as
CSV (the report's ``paired.csv`` columns) and ``F.md``. Rows are named as in the report
(``method`` in report.json; ``+`` for a space, as on the report's command line). Several
reports pool their rows (each name must be in one report only), so that rows of two sweeps of
the same splits and seeds can be paired; that is fair only where their shared runs reproduce
each other (the same CPU: check a baseline both sweeps ran).

    python scripts/paired_from_published.py docs/results/<experiment>/report/report.json \
        --compare "zeroshot+method=sae:zeroshot+method=eszsl" [--compare a:b ...] [--out F.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from transferlab.report.stats import paired_difference
from transferlab.report.tables import paired_markdown, write_paired_csv


def _rows_by_method(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each row's groups by method, then by budget (one entry where the report has none)."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for group in report["groups"]:
        budget = str(group.get("budget_label", report["metric"]))
        rows.setdefault(str(group["method"]), {})[budget] = group
    return rows


def paired_rows(report: dict[str, Any], pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """``a`` minus ``b`` on their common seeds, for each (a, b) in ``pairs``, at each budget
    both rows have."""
    rows_by_method = _rows_by_method(report)
    out = []
    for a, b in pairs:
        missing = [name for name in (a, b) if name not in rows_by_method]
        if missing:
            raise SystemExit(
                f"error: no row named {missing[0]!r} in the report; its rows are: "
                + ", ".join(sorted(rows_by_method))
            )
        common = [budget for budget in rows_by_method[a] if budget in rows_by_method[b]]
        if not common:
            raise SystemExit(
                f"error: rows {a!r} (budgets {', '.join(rows_by_method[a])}) and {b!r} (budgets "
                f"{', '.join(rows_by_method[b])}) share no budget to pair at"
            )
        for budget in common:
            group_a, group_b = rows_by_method[a][budget], rows_by_method[b][budget]
            va = dict(zip(group_a["seeds"], group_a["values"], strict=True))
            vb = dict(zip(group_b["seeds"], group_b["values"], strict=True))
            seeds = [s for s in va if s in vb]
            out.append(
                {
                    "a": a,
                    "b": b,
                    "budget_label": budget,
                    **paired_difference([va[s] - vb[s] for s in seeds]),
                    "seeds": seeds,
                    "unpaired_a": [s for s in va if s not in vb],
                    "unpaired_b": [s for s in vb if s not in va],
                }
            )
    return out


def pooled_report(paths: list[Path]) -> dict[str, Any]:
    """The rows (groups) of the reports at ``paths`` as one report; a row name found in two of
    them, or reports of different metrics, is one error line."""
    pooled: dict[str, Any] = {"groups": []}
    owner: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"error: {path} is not a file (give a report.json)")
        report = json.loads(path.read_text(encoding="utf-8"))
        if pooled.setdefault("metric", report["metric"]) != report["metric"]:
            raise SystemExit(
                f"error: {path} reports {report['metric']}, {paths[0]} {pooled['metric']}"
            )
        for method in sorted({str(group["method"]) for group in report["groups"]}):
            if method in owner:
                raise SystemExit(
                    f"error: row {method!r} is in both {owner[method]} and {path}; "
                    "pool reports whose rows have different names"
                )
            owner[method] = path
        pooled["groups"] += report["groups"]
    return pooled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, nargs="+", help="published report.json files")
    parser.add_argument(
        "--compare", action="append", required=True, metavar="A:B", help="rows a and b, a - b"
    )
    parser.add_argument("--out", type=Path, help="write the rows here (CSV) and beside it as .md")
    args = parser.parse_args(argv)
    report = pooled_report(args.report)
    pairs = []
    for spec in args.compare:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b:
            raise SystemExit(f"error: --compare {spec!r}: expected A:B (two row names)")
        pairs.append((a.replace("+", " "), b.replace("+", " ")))
    rows = paired_rows(report, pairs)
    text = f"Paired differences, {report['metric']} (recomputed from report.json):\n\n"
    text += paired_markdown(rows)
    if args.out is not None:
        write_paired_csv(rows, args.out)
        args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
