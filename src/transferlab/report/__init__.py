"""Reports over finished runs: tables (Markdown, CSV, LaTeX), paired comparisons and plots."""

from transferlab.report.build import build_report
from transferlab.report.runs import get_key, load_runs
from transferlab.report.stats import aggregate, paired_comparisons, paired_difference, summarize

__all__ = [
    "aggregate",
    "build_report",
    "get_key",
    "load_runs",
    "paired_comparisons",
    "paired_difference",
    "summarize",
]
