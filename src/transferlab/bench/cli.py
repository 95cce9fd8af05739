"""``transferlab bench``: arguments and entry (imports the heavy parts only when run)."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from transferlab.bench.settings import PRESETS, BenchSettings, preset


def _models(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` command's options."""
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="quick",
        help="tiny: CI smoke run on digits (seconds, numbers meaningless); quick: ratios and "
        "bf16 in a few minutes; full: everything incl. time to accuracy (~11 min quiet); "
        "speedrun: experiment=fmnist_speedrun over 5 seeds, start-up and per-job overhead",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmark"), help="output folder (default: %(default)s)"
    )
    parser.add_argument("--models", type=_models, default=None, help="comma-separated models")
    parser.add_argument(
        "--bf16-models",
        type=_models,
        default=None,
        help="comma-separated models also measured in bf16-mixed ('' for none)",
    )
    parser.add_argument(
        "--no-perf-variants",
        action="store_true",
        help="skip the memory-format variants (only the default stack and the plain loop)",
    )
    parser.add_argument(
        "--backbones",
        type=_models,
        default=None,
        help="comma-separated pretrained backbones timed in a plain loop at 64 px, float32 and "
        "bf16 ('' for none; full: efficientnet_lite0,efficientnet_lite1,efficientnet_lite2)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="alternating repeats")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch size")
    parser.add_argument(
        "--train-steps", type=int, default=None, help="timed steps per run, for every model"
    )
    parser.add_argument(
        "--speedrun-recipe",
        default=None,
        help="the experiment file the speed run times (speedrun preset; default fmnist_speedrun, "
        "e.g. fmnist_speedrun93)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="steps between the speed run's off-clock test evaluations (default 25)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a Hydra override added to the recipes' runs (repeatable), e.g. trainer=cpu to "
        "time fmnist_speedrun in float32",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the benchmark's runs write (default: a temporary folder, removed after)",
    )


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """The preset named by ``--preset`` with the command line's changes applied."""
    return preset(
        args.preset,
        models=args.models,
        bf16_models=args.bf16_models,
        backbones=args.backbones,
        perf_variants={} if args.no_perf_variants else None,
        repeats=args.repeats,
        batch_size=args.batch_size,
        train_steps=args.train_steps,
        speedrun_recipe=args.speedrun_recipe,
        speedrun_eval_every=args.eval_every,
        # --override adds to the preset's own recipe overrides (tiny: the digits data set)
        recipe_overrides=(
            PRESETS[args.preset].recipe_overrides + tuple(args.override) if args.override else None
        ),
        # an explicit --train-steps holds for every model (no per-model override)
        steps_override={} if args.train_steps is not None else None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the Markdown table and where the outputs went."""
    from transferlab.bench.report import to_markdown, write_outputs
    from transferlab.bench.run import run_benchmark

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # dozens of Trainers:
        logging.getLogger(name).setLevel(logging.WARNING)  # no banner and summary per run
    settings = settings_from_args(args)
    if args.work_dir is not None:
        result = run_benchmark(settings, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="transferlab-bench-") as work:
            result = run_benchmark(settings, work)
    json_path, md_path = write_outputs(result, args.out)
    print(to_markdown(result))
    print(f"written: {json_path} {md_path}")
    return 0
