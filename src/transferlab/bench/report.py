"""The benchmark's outputs: ``benchmark.json`` and a Markdown table ``benchmark.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(row: dict[str, Any], key: str) -> str:
    """A ratio (median of repeats) with the 95% interval of its per-repeat values, if any."""
    ci = row.get(f"{key}_ci") or {}
    if row.get(key) is None or ci.get("ci_low") is None:
        return _num(row.get(key), 3)
    return f"{_num(row[key], 3)} [{_num(ci['ci_low'], 3)}, {_num(ci['ci_high'], 3)}]"


def throughput_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per model and precision (and perf variant): training throughput of plain loop
    and stack, their ratio, the speed-up of bf16-mixed (or of the variant) over the float32
    stack, inference throughput, fixed fit overhead and peak memory. Ratios are medians of the
    per-repeat ratios, with the 95% t interval of their geometric mean where there are repeats."""
    lines = [
        "| model | precision | plain loop (img/s) | our stack (img/s) | stack / plain | "
        "stack / plain by CPU time | "
        "speed-up | inference plain / stack (img/s) | fit overhead (s) | "
        "peak RSS +MB plain / stack |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        infer = row.get("inference", {})
        variant = f" + {row['variant']}" if row.get("variant") else ""
        speedup = "bf16_speedup" if "bf16_speedup" in row else "speedup_vs_default"
        lines.append(
            f"| {row['model']}{variant} | {row['precision']} | "
            f"{_num(row.get('plain_images_per_s'))} | "
            f"{_num(row['stack_images_per_s'])} | {_ratio(row, 'ratio')} | "
            f"{_num(row.get('ratio_cpu'), 3)} | "
            f"{_ratio(row, speedup)} | "
            f"{_num(infer.get('plain_images_per_s'))} / {_num(infer.get('stack_images_per_s'))} | "
            f"{_num(row['stack_fit_overhead_s'], 2)} | "
            f"{_num(row.get('plain_peak_rss_delta_mb'))} / {_num(row['stack_peak_rss_delta_mb'])} |"
        )
    return "\n".join(lines)


def _spread_text(spread: dict[str, Any], digits: int = 1, unit: str = " s") -> str:
    values = ", ".join(_num(v, digits) for v in spread["values"])
    std = f" +- {_num(spread['std'], digits)}" if spread.get("std") is not None else ""
    median = _num(spread["median"], digits)
    return f"{_num(spread['mean'], digits)}{std}{unit} (median {median}; {values})"


def speedrun_markdown(run: dict[str, Any]) -> list[str]:
    """The speed run: per target, how many seeds reached it and when (from the first step and
    from process start), the final accuracy and the per-job overhead over seeds."""
    seeds = len(run["seeds"])
    overrides = "".join(f" {o}" for o in run.get("overrides", []))
    lines = [
        f"`experiment={run['recipe']}{overrides}`, {seeds} seeds, each in a fresh process; "
        "evaluations off the clock.",
        "",
        "| target | seeds reaching it | training time (mean +- std) | from process start |",
        "|---|---:|---|---|",
    ]
    for key, first_step in run["reached_s"].items():
        from_start = run["reached_from_process_start_s"][key]
        shown = [
            _spread_text(x) if x["values"] else "not reached" for x in (first_step, from_start)
        ]
        lines.append(f"| {key} | {first_step['reached_by']}/{seeds} | {shown[0]} | {shown[1]} |")
    lines += [
        "",
        f"Final test accuracy: {_spread_text(run['test_acc'], 4, '')}.",
        f"Per-job overhead (a run's wall time less training and evaluations: set-up, data, "
        f"test, checkpoints): {_spread_text(run['job_overhead_s'], 2)}.",
    ]
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    """The whole benchmark as Markdown."""
    machine, settings = result["machine"], result["settings"]
    parts = [
        "# transferlab benchmark",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), Lightning {machine['lightning']}, "
        f"load average at start {_num(machine.get('load_average_1m'), 2)}, {machine['date_utc']}.",
        f"Fashion-MNIST 28x28, batch {settings['batch_size']}, {settings['repeats']} alternating "
        f"repeats, medians; warm-up {settings['warmup_steps']} steps.",
        "",
    ]
    if result["throughput"]:
        parts += [
            "## Training throughput (scratch training, default augmentation)",
            "",
            throughput_markdown(result["throughput"]),
            "",
        ]
    parts += [
        f"Data path alone (loader + augmentation, 1 thread): "
        f"{_num(result['data_path']['images_per_s'])} images/s.",
    ]
    large = result.get("data_path_large")
    if large:
        c, h, w = large["input_shape"]
        parts[-1] += (
            f" Resized per batch to {c}x{h}x{w}: {_num(large['images_per_s'])} images/s; the "
            f"data module holds {_num(large['held_mb'], 1)} MB of uint8 pixels (float32 "
            f"inputs would take {_num(large['float32_inputs_mb'], 1)} MB)."
        )
    recipes = result.get("time_to_accuracy") or []
    if recipes:
        parts += ["", "## Time to accuracy", ""]
    for tta in recipes:
        reached = ", ".join(f"{k}: {_num(v, 1)} s" for k, v in tta["reached_s"].items())
        parts.append(
            f"- `{' '.join(tta['overrides'])}`: training time to test accuracy {reached} "
            f"(evaluations off the clock); final test acc {_num(tta['test_acc'], 4)}, "
            f"whole run {_num(tta['run_wall_time_s'], 1)} s."
        )
    bf16 = result.get("bf16_accuracy")
    if bf16:
        parts += [
            "",
            "## bf16-mixed against float32 (same recipe and seed)",
            "",
            f"{bf16['model']}, {bf16['epochs']} epochs: test acc float32 "
            f"{_num(bf16['fp32_test_acc'], 4)}, bf16-mixed {_num(bf16['bf16_test_acc'], 4)} "
            f"({_num(bf16['acc_difference_points'], 2)} points); training time "
            f"{_num(bf16['fp32_train_s'], 1)} s against {_num(bf16['bf16_train_s'], 1)} s.",
        ]
    if result.get("backbones"):
        from transferlab.bench.backbone_throughput import to_markdown as backbones_markdown

        parts += [
            "",
            "## Backbones (plain loop, random inputs: speed only)",
            "",
            backbones_markdown(result["backbones"]),
        ]
    if result.get("speedrun"):
        parts += ["", "## Speed run", "", *speedrun_markdown(result["speedrun"])]
    if result.get("startup_s"):
        parts += [
            "",
            "## Start-up",
            "",
            "`import transferlab.cli` in a fresh interpreter: "
            f"{_spread_text(result['startup_s'], 2)}.",
        ]
    if result.get("training_imports_s"):
        imports = result["training_imports_s"]
        parts += [
            "",
            "A training process's imports (`import transferlab.cli, transferlab.cli.job, "
            f"lightning`): {_spread_text(imports['transformers_hidden'], 2)} as transferlab "
            f"runs them, {_spread_text(imports['torchmetrics_default'], 2)} with torchmetrics "
            "importing `transformers`, torchvision and matplotlib "
            "(`TRANSFERLAB_TORCHMETRICS_TRANSFORMERS=1`).",
        ]
    parts += [
        "",
        f"Peak RSS of the benchmark process: {_num(result['peak_rss_mb'])} MB; "
        f"benchmark wall time {_num(result['benchmark_wall_s'], 0)} s.",
    ]
    return "\n".join(parts) + "\n"


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``benchmark.json`` and ``benchmark.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "benchmark.json", out / "benchmark.md"
    json_path.write_text(json.dumps(result, indent=2))
    md_path.write_text(to_markdown(result))
    return json_path, md_path
