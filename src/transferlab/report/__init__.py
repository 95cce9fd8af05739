"""Reports over finished runs: tables (Markdown, CSV, LaTeX), paired comparisons and plots."""

from transferlab.report.build import build_report
from transferlab.report.grouping import RUN_LOCAL_CONFIG_KEYS, is_debug, make_cells
from transferlab.report.runs import get_key, load_runs
from transferlab.report.stats import aggregate, paired_comparisons, paired_difference, summarize

__all__ = [
    "RUN_LOCAL_CONFIG_KEYS",
    "aggregate",
    "build_report",
    "get_key",
    "is_debug",
    "load_runs",
    "make_cells",
    "paired_comparisons",
    "paired_difference",
    "summarize",
]
