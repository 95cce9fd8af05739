"""The benchmark: throughput of our stack against a plain loop, inference, memory, data path,
float32 against bf16-mixed, and time to accuracy of the fastest recipe."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from transferlab.bench.accuracy import callback_overrides
from transferlab.bench.reference import plain_infer, plain_train
from transferlab.bench.settings import BenchSettings
from transferlab.bench.stack import (
    Workload,
    compose_train_config,
    stack_infer,
    stack_train,
    workload_overrides,
)
from transferlab.bench.timing import PeakRSS, max_rss_bytes, median, ratio_interval
from transferlab.core.startup import OPT_OUT_VARIABLE
from transferlab.tasks import run_training

Progress = Callable[[str], None]
FP32, BF16 = "32-true", "bf16-mixed"


def _stderr(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _workload(model: str, settings: BenchSettings) -> list[str]:
    return workload_overrides(
        model,
        settings.batch_size,
        settings.eval_batch_size,
        settings.labels_per_class,
        settings.dataset,
    )


def _measure_plain(work: Workload, settings: BenchSettings, precision: str, steps: int) -> dict:
    module = work.fresh_module()
    dm = work.datamodule
    with PeakRSS() as memory:
        result = plain_train(
            torch.nn.Sequential(module.backbone, module.head),
            module.parameter_groups(),
            module.optimizer_cfg,
            module.scheduler_cfg,
            dm.train_set.images,
            dm.train_set.labels,
            settings.batch_size,
            settings.warmup_steps,
            steps,
            dm.num_classes,
            augment=dm.augment,
            precision=precision,
            epoch_steps=settings.warmup_steps + steps,
        )
    return {**result, "peak_rss_delta_mb": memory.delta_mb}


def _measure_stack(work: Workload, settings: BenchSettings, precision: str, steps: int) -> dict:
    with PeakRSS() as memory:
        result, _, _ = stack_train(work, precision, settings.warmup_steps, steps)
    return {**result, "peak_rss_delta_mb": memory.delta_mb}


def _inference(work: Workload, settings: BenchSettings, precision: str) -> dict[str, float]:
    module = work.fresh_module()
    test = work.datamodule.test_set
    batches = min(settings.infer_batches, max(1, len(test) // settings.eval_batch_size - 1))
    plain = plain_infer(
        torch.nn.Sequential(module.backbone, module.head),
        test.images,
        test.labels,
        settings.eval_batch_size,
        1,
        batches,
        work.datamodule.num_classes,
        precision,
    )
    stack = stack_infer(work, module, precision, 1, batches)
    return {
        "plain_images_per_s": plain["images_per_s"],
        "stack_images_per_s": stack["images_per_s"],
    }


def _summary(model: str, precision: str, runs: dict[str, list[dict]]) -> dict[str, Any]:
    plain, stack = runs.get("plain", []), runs["stack"]
    row: dict[str, Any] = {
        "model": model,
        "precision": precision,
        "stack_images_per_s": median([r["images_per_s"] for r in stack]),
        "stack_runs": [r["images_per_s"] for r in stack],
        "stack_cpu_ms_per_image": median([r["cpu_ms_per_image"] for r in stack]),
        "stack_fit_overhead_s": median([r["overhead_s"] for r in stack]),
        "stack_peak_rss_delta_mb": max(r["peak_rss_delta_mb"] for r in stack),
    }
    if plain:
        ratios = [s["images_per_s"] / p["images_per_s"] for p, s in zip(plain, stack)]
        cpu = [p["cpu_ms_per_image"] / s["cpu_ms_per_image"] for p, s in zip(plain, stack)]
        row.update(
            ratio_cpu=median(cpu),
            plain_cpu_ms_per_image=median([r["cpu_ms_per_image"] for r in plain]),
            plain_images_per_s=median([r["images_per_s"] for r in plain]),
            plain_runs=[r["images_per_s"] for r in plain],
            plain_peak_rss_delta_mb=max(r["peak_rss_delta_mb"] for r in plain),
            ratio=median(ratios),
            ratio_runs=ratios,
            ratio_ci=ratio_interval(ratios),
        )
    return row


def _speedup(row: dict[str, Any], base: dict[str, Any], key: str) -> None:
    """``row[key]``: ``row``'s stack throughput over ``base``'s (medians), with the per-repeat
    ratios (repeats ran side by side) and their interval in ``<key>_runs`` / ``<key>_ci``."""
    runs = [a / b for a, b in zip(row["stack_runs"], base["stack_runs"])]
    row[key] = row["stack_images_per_s"] / base["stack_images_per_s"]
    row[f"{key}_runs"] = runs
    row[f"{key}_ci"] = ratio_interval(runs)


def throughput(
    model: str, settings: BenchSettings, work_dir: Path, progress: Progress = _stderr
) -> list[dict[str, Any]]:
    """Alternating repeats of plain loop and stack (float32, bf16-mixed for the models in
    ``settings.bf16_models``, and the ``perf_variants``); medians, ratios, inference and peak
    memory per precision."""
    overrides = _workload(model, settings)
    work = Workload(compose_train_config(overrides, work_dir / model))
    works = {"": work}
    default_format = work.memory_format() if settings.perf_variants else None
    for name, extra in settings.perf_variants.items():
        cfg = compose_train_config([*overrides, *extra], work_dir / f"{model}-{name}")
        variant = Workload(cfg, share_data_of=work)
        if variant.memory_format() != default_format:  # else it is the default again
            works[name] = variant
    variant_names = [name for name in settings.perf_variants if name in works]
    precisions = [FP32] + ([BF16] if model in settings.bf16_models else [])
    variants = [(kind, p, "") for p in precisions for kind in ("plain", "stack")]
    variants += [("stack", FP32, name) for name in variant_names]
    runs: dict[tuple[str, str, str], list[dict]] = {v: [] for v in variants}
    steps = settings.steps_for(model)
    for repeat in range(settings.repeats):
        shift = repeat % len(variants)  # alternate the order between repeats
        for kind, precision, name in variants[shift:] + variants[:shift]:
            measure = _measure_plain if kind == "plain" else _measure_stack
            result = measure(works[name], settings, precision, steps)
            runs[(kind, precision, name)].append(result)
            progress(
                f"{model}{'+' + name if name else ''} {precision} {kind} repeat "
                f"{repeat + 1}/{settings.repeats}: {result['images_per_s']:.0f} images/s"
            )
    rows = []
    for precision in precisions:
        row = _summary(
            model, precision, {kind: runs[(kind, precision, "")] for kind in ("plain", "stack")}
        )
        row["inference"] = _inference(work, settings, precision)
        progress(
            f"{model} {precision}: stack/plain {row['ratio']:.3f}, inference "
            f"{row['inference']['stack_images_per_s']:.0f} images/s"
        )
        rows.append(row)
    if len(rows) == 2:
        _speedup(rows[1], rows[0], "bf16_speedup")
    for name in variant_names:
        row = _summary(model, FP32, {"stack": runs[("stack", FP32, name)]})
        row["variant"] = name
        _speedup(row, rows[0], "speedup_vs_default")
        rows.append(row)
    return rows


def _held_mb(dm: Any) -> dict[str, float]:
    """MB of uint8 pixels the data module holds, and what float32 inputs would take."""
    sets = (dm.train_set, dm.val_set, dm.test_set)
    count = sum(len(s) for s in sets)
    inputs = count * 4 * torch.Size(dm.input_shape).numel()
    return {
        "held_mb": sum(s.pixels.nbytes for s in sets) / 2**20,
        "float32_inputs_mb": inputs / 2**20,
    }


def data_path(
    settings: BenchSettings, work_dir: Path, image_size: int | None = None, batches: int = 0
) -> dict[str, Any]:
    """Images/s of the training data path alone (loader, per-batch preparation, default
    augmentation) on one thread; ``image_size`` resizes the inputs (3 channels) per batch."""
    overrides = _workload("small_cnn", settings)
    if image_size is not None:
        overrides += [f"data.image_size={image_size}", "+data.channels=3"]
    name = "data_path" if image_size is None else f"data_path_{image_size}"
    work = Workload(compose_train_config(overrides, work_dir / name))
    dm = work.datamodule
    wanted = (batches or settings.data_path_batches) * settings.batch_size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, start = 0, time.perf_counter()
        while images < wanted:
            for x, _ in dm.train_dataloader():
                x = dm.prepare_batch(x)
                x = dm.augment(x) if dm.augment is not None else x
                images += len(x)
                if images >= wanted:
                    break
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {
        "images_per_s": images / seconds,
        "images": images,
        "threads": 1,
        "augment": repr(dm.augment),
        "input_shape": list(dm.input_shape),
        **_held_mb(dm),
    }


def recipe_run(
    overrides: list[str], work_dir: Path, targets: tuple[float, ...], every: int
) -> dict[str, Any]:
    """One ``run_training`` of a recipe with :class:`TimeToAccuracy` attached."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "time_to_accuracy.json"
    cfg = compose_train_config(
        [*overrides, "print_config=false", *callback_overrides(targets, every, out)], work_dir
    )
    record = run_training(cfg, work_dir)
    tta = json.loads(out.read_text())
    return {
        "overrides": overrides,
        "test_acc": record["metrics"].get("test/acc"),
        "run_wall_time_s": record["wall_time_s"],
        "epochs": record["epochs_trained"],
        **tta,
    }


def time_to_accuracy(settings: BenchSettings, work_dir: Path, progress: Progress) -> list[dict]:
    """Training time of each built-in recipe of ``settings.accuracy_recipes`` to each
    accuracy target."""
    results = []
    for recipe in settings.accuracy_recipes:
        overrides = [f"experiment={recipe}", f"trainer.max_epochs={settings.accuracy_epochs}"]
        overrides += list(settings.recipe_overrides)
        result = recipe_run(
            overrides,
            work_dir / f"time_to_accuracy_{recipe}",
            settings.accuracy_targets,
            settings.accuracy_eval_every,
        )
        result["recipe"] = recipe
        progress(f"{recipe}: reached {result['reached_s']}, test acc {result['test_acc']}")
        results.append(result)
    return results


def bf16_accuracy(settings: BenchSettings, work_dir: Path, progress: Progress) -> dict:
    """The same recipe and seed in float32 and bf16-mixed: test accuracy and wall time."""
    results = {}
    for trainer in ("cpu", "cpu_bf16"):
        overrides = [
            f"experiment={settings.accuracy_recipes[0]}",
            f"model={settings.bf16_accuracy_model}",
            f"trainer={trainer}",
            f"trainer.max_epochs={settings.bf16_accuracy_epochs}",
        ]
        overrides += list(settings.recipe_overrides)
        results[trainer] = recipe_run(
            overrides, work_dir / f"bf16_accuracy_{trainer}", settings.accuracy_targets, 10**9
        )
        progress(f"{trainer}: test acc {results[trainer]['test_acc']}")
    fp32, bf16 = results["cpu"], results["cpu_bf16"]
    return {
        "model": settings.bf16_accuracy_model,
        "epochs": settings.bf16_accuracy_epochs,
        "fp32_test_acc": fp32["test_acc"],
        "bf16_test_acc": bf16["test_acc"],
        "acc_difference_points": 100 * (bf16["test_acc"] - fp32["test_acc"]),
        "fp32_train_s": fp32["train_s"],
        "bf16_train_s": bf16["train_s"],
    }


# a fresh ``transferlab-train`` process (the console script's code, without relying on PATH)
TRAIN_PROCESS = (
    "import sys; from transferlab.cli import train_main; sys.argv[0] = 'transferlab-train'; "
    "train_main()"
)


def _spread(values: list[float]) -> dict[str, Any]:
    """Per-repeat values with their median, mean and standard deviation."""
    return {
        "values": values,
        "median": statistics.median(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def speedrun_seed(settings: BenchSettings, seed: int, work_dir: Path) -> dict[str, Any]:
    """The speed-run recipe with ``seed`` in a fresh process, :class:`TimeToAccuracy` attached:
    time to each target from the first step and from process start, and the run's
    per-job overhead (its wall time less training and the off-clock evaluations)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / "time_to_accuracy.json"
    overrides = [
        f"experiment={settings.speedrun_recipe}",
        f"seed={seed}",
        *settings.recipe_overrides,
        f"paths.output_dir={work_dir}",
        f"hydra.run.dir={work_dir}",
        f"paths.log_dir={work_dir}/logs",
        f"paths.cache_dir={work_dir}/cache",
        "print_config=false",
        "trainer.enable_progress_bar=false",
        *callback_overrides(settings.speedrun_targets, settings.speedrun_eval_every, out),
    ]
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_PROCESS, *overrides], capture_output=True, text=True
    )
    process_s = time.time() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"speed run seed {seed} failed: {' '.join(tail)}")
    tta = json.loads(out.read_text())
    results = json.loads((work_dir / "results.json").read_text())
    run_wall = float(results["wall_time_s"])
    return {
        "seed": seed,
        "test_acc": results["metrics"].get("test/acc"),
        "process_wall_s": process_s,
        "run_wall_time_s": run_wall,
        "job_overhead_s": run_wall - tta["train_s"] - tta["evaluation_s"],
        **tta,
    }


def speedrun(settings: BenchSettings, work_dir: Path, progress: Progress) -> dict[str, Any]:
    """:func:`speedrun_seed` for every seed of ``settings.speedrun_seeds``, with the spread
    over seeds of the final accuracy, the times to each target and the per-job overhead."""
    seeds = []
    for seed in settings.speedrun_seeds:
        seeds.append(speedrun_seed(settings, seed, work_dir / f"speedrun_seed{seed}"))
        progress(f"speed run seed {seed}: reached {seeds[-1]['reached_s']}")
    summary: dict[str, Any] = {
        "recipe": settings.speedrun_recipe,
        "overrides": list(settings.recipe_overrides),
        "seeds": seeds,
        "test_acc": _spread([s["test_acc"] for s in seeds]),
        "job_overhead_s": _spread([s["job_overhead_s"] for s in seeds]),
    }
    for clock in ("reached_s", "reached_from_process_start_s"):
        summary[clock] = {
            key: {
                "reached_by": sum(s[clock][key] is not None for s in seeds),
                **_spread([s[clock][key] for s in seeds if s[clock][key] is not None]),
            }
            for key in seeds[0][clock]
        }
    return summary


def _import_seconds(code: str, env: dict[str, str] | None = None) -> float:
    """Wall seconds of a fresh interpreter that runs ``code`` (imports) and exits."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - started


def startup(repeats: int) -> dict[str, Any]:
    """Seconds a fresh interpreter takes to import the CLI (``import transferlab.cli``)."""
    return _spread([_import_seconds("import transferlab.cli") for _ in range(repeats)])


def training_imports(repeats: int) -> dict[str, Any]:
    """Seconds a fresh interpreter takes for a training process's imports (``import
    transferlab.cli, transferlab.cli.job, lightning``: the entry point, the tasks and
    strategies), as transferlab runs them (torchmetrics without ``transformers``, torchvision,
    matplotlib and scipy.signal: ``core/startup.py``) and with torchmetrics' default
    (``TRANSFERLAB_TORCHMETRICS_TRANSFORMERS=1``), alternating."""
    code = "import transferlab.cli, transferlab.cli.job, lightning"
    hidden_env = {**os.environ, OPT_OUT_VARIABLE: "0"}
    default_env = {**os.environ, OPT_OUT_VARIABLE: "1"}
    hidden, loaded = [], []
    for _ in range(repeats):
        hidden.append(_import_seconds(code, hidden_env))
        loaded.append(_import_seconds(code, default_env))
    return {"transformers_hidden": _spread(hidden), "torchmetrics_default": _spread(loaded)}


def backbones(settings: BenchSettings, progress: Progress = _stderr) -> list[dict[str, Any]]:
    """Feature-extraction and training images/s of each of ``settings.backbones`` at each size
    and precision, channels_last, in a plain loop (``transferlab.bench.backbone_throughput``)."""
    from transferlab.bench.backbone_throughput import measure  # it imports this module

    rows = []
    for model in settings.backbones:
        for size in settings.backbone_sizes:
            for precision in settings.backbone_precisions:
                progress(f"  {model} {size} px {precision}")
                rows.append(
                    measure(model, size, precision, True, seconds=settings.backbone_seconds)
                )
    return rows


def run_benchmark(
    settings: BenchSettings, work_dir: str | Path, progress: Progress = _stderr
) -> dict[str, Any]:
    """Every measurement of ``settings``; the result is what :func:`write_outputs` saves."""
    work = Path(work_dir)
    started = time.time()
    result: dict[str, Any] = {"machine": machine_info(), "settings": settings.to_dict()}
    progress(f"data path ({settings.data_path_batches} batches, 1 thread)")
    result["data_path"] = data_path(settings, work)
    if settings.large_input_size:
        size = settings.large_input_size
        progress(f"data path at {size} px ({settings.large_input_batches} batches, 1 thread)")
        result["data_path_large"] = data_path(settings, work, size, settings.large_input_batches)
    result["throughput"] = []
    for model in settings.models:
        progress(f"throughput: {model}")
        result["throughput"].extend(throughput(model, settings, work / "throughput", progress))
    if settings.accuracy_epochs > 0:
        recipes = ", ".join(settings.accuracy_recipes)
        progress(f"time to accuracy: {recipes}, {settings.accuracy_epochs} epochs")
        result["time_to_accuracy"] = time_to_accuracy(settings, work, progress)
    if settings.bf16_accuracy_epochs > 0:
        progress(f"bf16 accuracy: {settings.bf16_accuracy_model}")
        result["bf16_accuracy"] = bf16_accuracy(settings, work, progress)
    if settings.speedrun_recipe:
        progress(f"speed run: {settings.speedrun_recipe}, seeds {settings.speedrun_seeds}")
        result["speedrun"] = speedrun(settings, work, progress)
    if settings.backbones:
        progress(f"backbones: {', '.join(settings.backbones)} (plain loop)")
        result["backbones"] = backbones(settings, progress)
    if settings.startup_repeats > 0:
        progress(f"start-up: import transferlab.cli, {settings.startup_repeats} processes")
        result["startup_s"] = startup(settings.startup_repeats)
        progress(f"start-up: a training process's imports, {settings.startup_repeats} x 2")
        result["training_imports_s"] = training_imports(settings.startup_repeats)
    result["peak_rss_mb"] = max_rss_bytes() / 2**20
    result["benchmark_wall_s"] = time.time() - started
    return result
