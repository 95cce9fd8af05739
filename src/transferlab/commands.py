"""transferlab COMMAND: tools around runs (report, export, bench, predict, data, rank,
soup).

A command is a name, a help line, a function adding its arguments and a function running it
(returning the exit code); add one to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from transferlab.core.errors import ConfigError, TransferlabError, storage_error, storage_line
from transferlab.core.startup import skip_torchmetrics_transformers

EXIT_USER_ERROR = 2

skip_torchmetrics_transformers()  # the commands' processes import Lightning later: core/startup.py


def _split_keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ConfigError(
            f"--group-by expects comma-separated keys (e.g. strategy,mode), got '{text}'"
        )
    return keys


def _parse_compare(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or not a.strip() or not b.strip() or ":" in b:
        raise ConfigError(f"--compare expects A:B (e.g. finetune:scratch), got '{text}'")
    return a.strip(), b.strip()


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    from transferlab.report.stats import DEFAULT_BUDGET_KEY, DEFAULT_GROUP_BY, DEFAULT_METRIC

    parser.add_argument(
        "paths",
        nargs="+",
        metavar="DIR",
        help="run or multirun directories (searched for results.json)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the report (default: <first DIR>/report)",
    )
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated keys from identity or config (dotted paths) to pool runs by, on "
        "purpose: a cell then averages every run with the same values, and the report lists "
        "the config keys each cell pooled (default: rows by "
        f"{','.join(DEFAULT_GROUP_BY)}, split by any other config difference)",
    )
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="default: %(default)s")
    parser.add_argument(
        "--compare",
        action="append",
        metavar="A:B",
        help="paired difference A - B on the same seeds, A and B methods or "
        "their prefixes, '+' for a space in a row name (gan/linear_probe+source=gan; "
        "repeatable; default: finetune:scratch where both ran)",
    )
    parser.add_argument(
        "--budget-key",
        default=DEFAULT_BUDGET_KEY,
        help="the group key giving the table's columns, default: %(default)s",
    )
    parser.add_argument(
        "--layer-key",
        default="transfer_stages",
        help="k of the layer-transfer plot, default: %(default)s",
    )
    parser.add_argument(
        "--variant-key",
        default="strategy.mode",
        help="lines of the layer-transfer plot, default: %(default)s",
    )
    parser.add_argument(
        "--task",
        choices=("train", "eval", "all"),
        default=None,
        help="which runs (default: train runs when train and eval mix)",
    )
    parser.add_argument(
        "--include-debug",
        action="store_true",
        help="keep debug runs (fast_dev_run, limit_*_batches, status debug) as their own rows "
        "(default: left out, with a note)",
    )


def _default_out(first: Path) -> Path:
    return (first.parent if first.is_file() else first) / "report"


def _run_report(args: argparse.Namespace) -> int:
    from transferlab.report import build_report
    from transferlab.report.tables import paired_markdown, pivot_markdown, pooled_lines

    compare = [_parse_compare(c) for c in args.compare] if args.compare else None
    out = args.out or _default_out(Path(args.paths[0]))
    report = build_report(
        args.paths,
        out,
        group_by=None if args.group_by is None else _split_keys(args.group_by),
        metric=args.metric,
        compare=compare,
        budget_key=args.budget_key,
        layer_key=args.layer_key,
        variant_key=args.variant_key,
        task=args.task,
        include_debug=args.include_debug,
    )
    print(pivot_markdown(report["groups"]))
    for line in pooled_lines(report["groups"]):
        print(line)
    print(
        f"bold: best of its column where the paired {report['confidence']:.0%} interval against "
        "the runner-up excludes zero; '–': no std for one run"
    )
    if report["paired"]:
        print()
        print(paired_markdown(report["paired"], report["budget_key"] or "budget"))
    for note in report["notes"]:
        print(f"note: {note}", file=sys.stderr)
    counts = report["counts"]
    debug = f", {counts['debug_left_out']} debug left out" if counts["debug_left_out"] else ""
    missing = f", {counts['missing']} missing" if counts.get("missing") else ""
    print(
        f"\n{counts['runs']} runs ({counts['failed']} failed{missing}{debug}); "
        f"report: {out / 'report.md'}"
    )
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (.ckpt) of any run")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the .safetensors file to write, or an existing directory to write "
        "<checkpoint name>.safetensors into (default: next to the checkpoint)",
    )


def _run_export(args: argparse.Namespace) -> int:
    from transferlab.tasks.export import export_safetensors

    print(f"exported: {export_safetensors(args.checkpoint, args.out)}")
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    from transferlab.bench.cli import add_arguments

    add_arguments(parser)


def _run_bench(args: argparse.Namespace) -> int:
    from transferlab.bench.cli import run

    return run(args)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="a training checkpoint (.ckpt) or its .safetensors export"
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files and/or folders (read recursively)"
    )
    parser.add_argument(
        "--topk", type=int, default=5, help="classes per image, default: %(default)s"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("preds.csv"),
        help="the CSV (or .json) file to write, default: %(default)s",
    )


def _run_predict(args: argparse.Namespace) -> int:
    from transferlab.tasks.predict import run_predict

    predictions = run_predict(args.checkpoint, args.images, args.out, args.topk)
    failed = sum(1 for p in predictions if p.error)
    note = f" ({failed} unreadable, see the error column)" if failed else ""
    print(f"predicted {len(predictions) - failed} of {len(predictions)} images{note}: {args.out}")
    return 0


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="train.py overrides (data=..., data.classes=...)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="also write a labelled sample-image grid (PNG)"
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=8,
        help="images per class in the grid, default: %(default)s",
    )


def _run_data(args: argparse.Namespace) -> int:
    from transferlab.cli.entry import check_group_choices, check_override_keys
    from transferlab.tasks.data_summary import compose_run_config, save_sample_grid, summarize_data

    if args.per_class < 1:
        raise ConfigError(f"--per-class must be at least 1, got {args.per_class}")
    check_group_choices(args.overrides)  # one line for a bad group option or key
    check_override_keys("train", args.overrides)
    summary, datamodule = summarize_data(compose_run_config(args.overrides))
    for line in summary.lines():
        print(line)
    if args.out is not None:
        print(f"samples: {save_sample_grid(datamodule, args.out, args.per_class)}")
    return 0


def _rank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="train.py overrides that make the target (data=..., data.classes=..., "
        "data.labels_per_class=..., seed=..., experiment=...)",
    )
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="KIND[:KEY=VALUE,...]",
        help="a source to score: source=KIND plus its own overrides, comma-separated "
        "(e.g. imagenet:model=efficientnet_lite0,data.image_size=64); repeat for each source",
    )
    parser.add_argument(
        "--against",
        nargs="+",
        metavar="DIR",
        default=None,
        help="sweep directories with fine-tuned runs of the same sources: Kendall tau and "
        "weighted tau of each score against their accuracy",
    )
    parser.add_argument(
        "--metric", default="test/acc", help="the accuracy --against reads, default: %(default)s"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("rank"),
        help="where to write ranking.md/csv/json, default: %(default)s",
    )


def _run_rank(args: argparse.Namespace) -> int:
    from transferlab.cli.entry import check_group_choices, check_override_keys
    from transferlab.report.ranking import rank
    from transferlab.tasks.rank import parse_source, ranking_markdown

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # a Trainer per source:
        logging.getLogger(name).setLevel(logging.WARNING)  # no banner each time
    for text in args.source:  # one line for a bad group option or key, before anything runs
        overrides = [*args.overrides, *parse_source(text).all_overrides]
        check_group_choices(overrides)
        check_override_keys("train", overrides)
    record = rank(
        args.overrides,
        args.source,
        out=args.out,
        against=args.against,
        metric=args.metric,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(ranking_markdown(record), end="")
    print(f"\nranking: {args.out / 'ranking.md'} (.csv, .json)")
    return 0


def _soup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="DIR",
        help="run or multirun directories of one architecture, source and data split",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write <out>/uniform and <out>/greedy (default: <first DIR>/soup)",
    )
    parser.add_argument(
        "--bn",
        choices=("recompute", "average"),
        default="recompute",
        help="BatchNorm statistics of a soup: recomputed on the training images, or averaged "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--bn-images",
        type=int,
        default=None,
        metavar="N",
        help="recompute BatchNorm statistics on at most N training images, a fixed random draw "
        "(default: all; for large training sets)",
    )
    parser.add_argument(
        "--accelerator", default="cpu", help="Lightning accelerator, default: %(default)s"
    )


def _run_soup(args: argparse.Namespace) -> int:
    from transferlab.tasks.soup import make_soups

    first = Path(args.paths[0])
    out = args.out or (first.parent if first.is_file() else first) / "soup"
    made = make_soups(
        args.paths, out, accelerator=args.accelerator, bn=args.bn, bn_images=args.bn_images
    )
    print("| soup / run | ingredients | val/acc | test/acc |\n|---|---|---|---|")
    for ingredient in made["ingredients"]:
        test = (ingredient.results.get("metrics") or {}).get("test/acc")
        shown = f"{test:.4f}" if isinstance(test, float) else "-"
        print(f"| {ingredient.name} | 1 | {ingredient.val_acc:.4f} | {shown} |")
    for kind, record in made["soups"].items():
        metrics = record["metrics"]
        count = len(record["soup"]["ingredients"])
        print(f"| {kind} soup | {count} | {metrics['val/acc']:.4f} | {metrics['test/acc']:.4f} |")
    for note in made["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"results: {out / 'uniform'}, {out / 'greedy'} (transferlab report {out})")
    return 0


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "report": (
        "tables, paired comparisons and plots over finished runs",
        _report_arguments,
        _run_report,
    ),
    "export": (
        "a checkpoint's weights and preprocessing as .safetensors",
        _export_arguments,
        _run_export,
    ),
    "bench": (
        "throughput and time to accuracy against a plain PyTorch loop",
        _bench_arguments,
        _run_bench,
    ),
    "predict": (
        "top-k classes of new images from a checkpoint or export",
        _predict_arguments,
        _run_predict,
    ),
    "data": (
        "split sizes, class counts and sample images of a run's data",
        _data_arguments,
        _run_data,
    ),
    "rank": (
        "transferability scores (LogME, LEEP, NCE, H-score) of sources for a target",
        _rank_arguments,
        _run_rank,
    ),
    "soup": (
        "uniform and greedy model soups of finished runs, tested like a run",
        _soup_arguments,
        _run_soup,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``transferlab`` parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="transferlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``transferlab COMMAND ...``; user mistakes print one ``error:`` line and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        print(f"error: give a command: {', '.join(COMMANDS)} (see transferlab -h)", file=sys.stderr)
        return EXIT_USER_ERROR
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return args.run(args)
    except TransferlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # a read-only, missing or full place: one line, no traceback
        print(f"error: {_os_error_line(err, args)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _os_error_line(err: OSError, args: argparse.Namespace) -> str:
    """``report: Read-only file system: <file>; give a writable place with --out`` for a
    failed file operation."""
    if storage_error(err) is not None:
        writable = (
            "give a writable place with --out"
            if hasattr(args, "out")
            else "choose a writable place"
        )
        return storage_line(err, args.command, writable=writable, full="free space and run again")
    where = f": {err.filename}" if err.filename else ""
    return f"{args.command}: {err.strerror or err or type(err).__name__}{where}"
