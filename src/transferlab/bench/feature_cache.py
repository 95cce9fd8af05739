"""The frozen-feature cache's speed-up: one linear probe run three ways, the frozen backbone on
images every epoch (``strategy.feature_cache=false``), then on cached features with a cold
cache (features computed and written) and a warm one (read back). Measured figures:
docs/frozen_features.md.

    python -m transferlab.bench.feature_cache                      # digits, small_cnn
    HF_HUB_OFFLINE=1 python -m transferlab.bench.feature_cache model=efficientnet_lite0 \\
        source=imagenet data=fashion_mnist data.image_size=64 trainer.max_epochs=3

Trailing arguments are ``train.py`` overrides. Augmentation is off in every run (the cache
serves un-augmented features), so the three runs do the same work. The source is built (or
loaded) once before the timed runs; every run has the same split, seed and head
initialisation.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L

from transferlab.bench.run import machine_info
from transferlab.bench.stack import compose_train_config
from transferlab.tasks import run_training

# what every run of the benchmark sets: a linear probe without augmentation, quiet
FIXED = (
    "strategy.mode=linear_probe",
    "data.augment.hflip=false",
    "data.augment.crop_padding=0",
    "data.augment.noise_std=0.0",
    "logger=none",
    "print_config=false",
    "trainer.enable_progress_bar=false",
)
# run name -> strategy.feature_cache (true: fail rather than time the image path by mistake)
RUNS = (("images", "false"), ("cold", "true"), ("warm", "true"))


class FitClock(L.Callback):
    """Writes the wall time of ``trainer.fit`` (setup, epochs, validation, checkpoints) to
    ``out`` as JSON (added to a run's callbacks by config: :func:`clock_overrides`)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self._start = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Path(self.out).write_text(json.dumps({"fit_s": time.perf_counter() - self._start}))


def clock_overrides(out: Path) -> list[str]:
    """Hydra overrides adding a :class:`FitClock` writing ``out`` to a run's callbacks."""
    prefix = "+callbacks.fit_clock"
    return [f"{prefix}._target_={FitClock.__module__}.FitClock", f"{prefix}.out={out}"]


def timed_run(overrides: Sequence[str], out: Path, setting: str) -> dict[str, Any]:
    """One run in ``out``: its wall time, fit time, feature time and test accuracy."""
    clock = out / "fit_clock.json"
    cfg = compose_train_config(
        [*overrides, f"strategy.feature_cache={setting}", *clock_overrides(clock)], out
    )
    started = time.perf_counter()
    record = run_training(cfg, out)
    wall = time.perf_counter() - started
    cache = record["feature_cache"]
    return {
        "feature_cache": cache.get("entry", "not used"),
        "features_s": round(float(cache.get("features_s", 0.0)), 2),
        "fit_s": round(json.loads(clock.read_text())["fit_s"], 2),
        "run_wall_s": round(wall, 2),
        "epochs": record["epochs_trained"],
        "images": cache.get("images"),
        "test_acc": record["metrics"].get("test/acc"),
    }


def run(overrides: Sequence[str], work: Path, repeats: int) -> dict[str, Any]:
    """Build the source once (untimed), then time the image-fed, cold and warm runs."""
    overrides = [*overrides, *FIXED, f"paths.cache_dir={work / 'cache'}"]
    warm_up = [*overrides, "trainer.max_epochs=1"]  # a later max_epochs wins: this one
    timed_run(warm_up, work / "source", "false")
    rows = []
    for repeat in range(repeats):
        shutil.rmtree(work / "cache" / "features", ignore_errors=True)  # a cold feature cache
        for name, setting in RUNS:
            row = timed_run(overrides, work / f"{name}-{repeat}", setting)
            rows.append({"run": name, "repeat": repeat, **row})
            print(f"[feature-cache bench] {name} {repeat}: {row}", flush=True)
    return {"machine": machine_info(), "overrides": list(overrides), "runs": rows}


def to_markdown(result: dict[str, Any]) -> str:
    """The runs as a Markdown table."""
    lines = [
        "| run | cache entry | features (s) | fit (s) | run wall (s) | test acc |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        lines.append(
            f"| {row['run']} | {row['feature_cache']} | {row['features_s']:.1f} | "
            f"{row['fit_s']:.1f} | {row['run_wall_s']:.1f} | {row['test_acc']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="trailing arguments are train.py overrides (default: digits, small_cnn)",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmark/feature_cache.json"))
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    args = parser.parse_args(argv)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.work_dir is not None:
        result = run(args.overrides, args.work_dir, args.repeats)
    else:
        with tempfile.TemporaryDirectory(prefix="transferlab-feature-cache-") as work:
            result = run(args.overrides, Path(work), args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(to_markdown(result))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
