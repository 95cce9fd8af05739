"""The benchmark at its tiny setting: every output field is there and finite (no timing asserts:
it reports, it never fails on a slow machine); the perf settings apply and reject bad input."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli_command

from transferlab.bench.settings import PRESETS, preset
from transferlab.bench.timing import ratio_interval
from transferlab.commands import main
from transferlab.core.errors import ConfigError
from transferlab.data.augment import BatchAugment
from transferlab.models import build_backbone
from transferlab.modules import perf
from transferlab.modules.perf import apply_perf, emulated_bf16_warning, wants_channels_last
from transferlab.tasks import run_training

ROW_FIELDS = (
    "plain_images_per_s",
    "stack_images_per_s",
    "ratio",
    "ratio_cpu",
    "stack_fit_overhead_s",
    "plain_peak_rss_delta_mb",
    "stack_peak_rss_delta_mb",
)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.slow  # about 22 s on 2 cores
def test_tiny_benchmark_writes_every_field(tmp_path: Path, capsys, monkeypatch) -> None:
    # targets 0.0 (reached at the first evaluation) and 1.01 (never): both branches recorded
    tiny = preset("tiny", accuracy_targets=(0.0, 1.01))
    monkeypatch.setitem(PRESETS, "tiny", tiny)
    out = tmp_path / "out"
    code = main(["bench", "--preset", "tiny", "--out", str(out), "--work-dir", str(tmp_path)])
    assert code == 0
    result = json.loads((out / "benchmark.json").read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch"] == torch.__version__
    assert _finite(result["data_path"]["images_per_s"]) and result["data_path"]["images"] > 0
    large = result["data_path_large"]
    assert large["input_shape"] == [3, 224, 224] and _finite(large["images_per_s"])
    # digits held as 1x8x8 uint8 against 3x224x224 float32 inputs
    assert large["float32_inputs_mb"] / large["held_mb"] == pytest.approx(3 * 224 * 224 * 4 / 64)
    rows = {(r["model"], r["precision"], r.get("variant")): r for r in result["throughput"]}
    fp32, bf16 = ("small_cnn", "32-true", None), ("small_cnn", "bf16-mixed", None)
    assert set(rows) == {fp32, bf16, ("small_cnn", "32-true", "channels_last")}
    for key in (fp32, bf16):
        row = rows[key]
        assert all(_finite(row[k]) for k in ROW_FIELDS), row
        assert row["plain_images_per_s"] > 0 and row["stack_images_per_s"] > 0
        assert len(row["stack_runs"]) == len(row["plain_runs"]) == tiny.repeats
        assert all(_finite(v) and v > 0 for v in row["inference"].values())
    assert _finite(rows[bf16]["bf16_speedup"])
    assert _finite(rows[("small_cnn", "32-true", "channels_last")]["speedup_vs_default"])
    # ratios keep their per-repeat values and an interval (tiny: 2 repeats)
    for row, key in ((rows[fp32], "ratio"), (rows[bf16], "bf16_speedup")):
        assert len(row[f"{key}_runs"]) == tiny.repeats and row[f"{key}_ci"]["n"] == tiny.repeats
    [tta] = result["time_to_accuracy"]
    assert tta["recipe"] == "fmnist_fast"
    assert tta["reached_s"]["1.01"] is None
    assert _finite(tta["reached_s"]["0.00"]) and 0 <= tta["reached_s"]["0.00"] <= tta["train_s"]
    assert tta["curve"] and all(0.0 <= p["test_acc"] <= 1.0 for p in tta["curve"])
    assert 0.0 <= tta["test_acc"] <= 1.0 and _finite(tta["run_wall_time_s"])
    bf16 = result["bf16_accuracy"]
    assert all(_finite(bf16[k]) for k in ("fp32_test_acc", "bf16_test_acc", "bf16_train_s"))
    speedrun = result["speedrun"]
    [seed] = speedrun["seeds"]  # a fresh process on digits: times from the first step and
    assert speedrun["recipe"] == "fmnist_speedrun" and 0.0 <= seed["test_acc"] <= 1.0
    for key, at in seed["reached_s"].items():  # from process start, the latter the larger
        since_start = seed["reached_from_process_start_s"][key]
        assert (at is None) == (since_start is None)
        assert at is None or 0 <= at < since_start < seed["process_wall_s"]
    assert _finite(seed["job_overhead_s"]) and seed["job_overhead_s"] > 0
    assert speedrun["test_acc"]["values"] == [seed["test_acc"]]
    assert [_finite(v) and v > 0 for v in result["startup_s"]["values"]] == [True]
    for imports in result["training_imports_s"].values():
        assert [_finite(v) and v > 0 for v in imports["values"]] == [True]
    [lite] = result["backbones"]
    assert (lite["model"], lite["size"], lite["precision"]) == ("efficientnet_lite0", 32, "fp32")
    assert lite["features_images_per_s"] > 0 and lite["train_images_per_s"] > 0
    assert _finite(result["peak_rss_mb"]) and result["peak_rss_mb"] > 0
    markdown = (out / "benchmark.md").read_text()
    assert "## Speed run" in markdown and "## Start-up" in markdown
    assert "A training process's imports" in markdown
    assert "## Backbones" in markdown and "| efficientnet_lite0 | 32 | fp32 | on |" in markdown
    assert "| small_cnn | 32-true |" in markdown and "| small_cnn | bf16-mixed |" in markdown
    assert "| small_cnn + channels_last | 32-true |" in markdown
    assert "Time to accuracy" in markdown and "nan" not in markdown.lower()
    assert "stack / plain" in capsys.readouterr().out


def test_bench_rejects_an_unknown_preset(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--preset", "huge"])
    assert info.value.code == 2 and "tiny" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="valid: tiny, quick, full"):
        preset("huge")


def test_bench_speedrun_recipe_must_name_an_experiment_file() -> None:
    assert preset("speedrun", speedrun_recipe="fmnist_speedrun93").speedrun_recipe == (
        "fmnist_speedrun93"
    )
    with pytest.raises(ConfigError, match="unknown speed-run recipe 'fmnist_speed'.*speedrun93"):
        preset("speedrun", speedrun_recipe="fmnist_speed")


def test_bench_override_adds_to_the_presets_recipe_overrides() -> None:
    import argparse

    from transferlab.bench.cli import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "tiny", "--override", "trainer=cpu", "--eval-every", "5"])
    settings = settings_from_args(args)
    assert settings.recipe_overrides == (*PRESETS["tiny"].recipe_overrides, "trainer=cpu")
    assert settings.speedrun_eval_every == 5


def test_bench_backbones_option_names_or_drops_the_backbone_rows() -> None:
    import argparse

    from transferlab.bench.cli import add_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    full = settings_from_args(parser.parse_args(["--preset", "full"]))
    assert full.backbones == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    assert (
        settings_from_args(parser.parse_args(["--preset", "full", "--backbones", ""])).backbones
        == ()
    )
    chosen = settings_from_args(parser.parse_args(["--backbones", "efficientnet_lite1"]))
    assert chosen.backbones == ("efficientnet_lite1",) and chosen.backbone_sizes == (64,)


def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch) -> None:
    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: False)
    warning = emulated_bf16_warning("bf16-mixed", on_cpu=True)
    assert warning and "emulated" in warning and "trainer=cpu" in warning
    assert emulated_bf16_warning("32-true", on_cpu=True) is None
    assert emulated_bf16_warning("bf16-mixed", on_cpu=False) is None  # a GPU: not our business
    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: True)
    assert emulated_bf16_warning("bf16-mixed", on_cpu=True) is None


def test_a_bf16_trainer_on_such_a_cpu_logs_the_warning(monkeypatch, caplog) -> None:
    from omegaconf import OmegaConf

    from transferlab.tasks.context import build_trainer

    monkeypatch.setattr(perf, "cpu_has_native_bf16", lambda: False)
    trainer = {"_target_": "lightning.Trainer", "accelerator": "cpu", "logger": False}
    for precision, warned in (("bf16-mixed", True), ("32-true", False)):
        caplog.clear()
        cfg = OmegaConf.create({"trainer": {**trainer, "precision": precision}})
        build_trainer(cfg, with_callbacks=False, enable_progress_bar=False)
        assert ("bfloat16 is emulated" in caplog.text) is warned, precision


def test_perf_settings_apply_and_reject_bad_values() -> None:
    threads = torch.get_num_threads()
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    try:
        applied = apply_perf({"num_threads": 1, "channels_last": True}, conv)
        assert torch.get_num_threads() == 1 and applied == ["num_threads=1", "channels_last"]
        assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.set_num_threads(threads)
    assert apply_perf(None) == [] and apply_perf({"compile": False, "num_threads": None}) == []
    for bad, match in (
        ({"thread": 2}, "did you mean 'num_threads'.*accepted: channels_last, compile"),
        ({"num_threads": 0}, "perf.num_threads=0 is invalid: Input should be greater than 0"),
        ({"float32_matmul_precision": "low"}, "'highest', 'high' or 'medium'"),
        ({"compile": "yes"}, "perf.compile='yes' is invalid: Input should be a valid boolean"),
        ({"channels_last": "sometimes"}, "a valid boolean or 'auto'"),
    ):
        with pytest.raises(ConfigError, match=match):
            apply_perf(bad)


def test_channels_last_auto_converts_resnets_and_efficientnets_only() -> None:
    """``perf.channels_last: auto`` (the default) converts the backbones where the benchmark
    measured a gain (ResNets, EfficientNet-Lite) and leaves small_cnn in the default format."""
    resnet = build_backbone("resnet8", in_chans=1, input_size=28)
    cnn = build_backbone("small_cnn", in_chans=1, input_size=28)
    lite = build_backbone("efficientnet_lite0", in_chans=3, input_size=32)
    assert wants_channels_last("auto", resnet) and not wants_channels_last("auto", cnn)
    assert wants_channels_last("auto", lite)
    assert wants_channels_last(True, cnn) and not wants_channels_last(False, resnet)
    assert apply_perf({"channels_last": "auto"}, resnet) == ["channels_last"]
    conv = next(m for m in resnet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert apply_perf({"channels_last": "auto"}, cnn) == []


def test_batched_translation_is_a_per_sample_crop_of_the_padded_batch() -> None:
    """The gather-based translation (the data-path speed fix) crops each padded image at its
    own random offset, on non-square multi-channel images."""
    x = torch.randn(16, 3, 9, 7)
    torch.manual_seed(0)
    out = BatchAugment(crop_padding=2)(x)
    torch.manual_seed(0)  # the same draws, in the same order
    top, left = torch.randint(0, 5, (16, 1)), torch.randint(0, 5, (16, 1))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        t, s = int(top[i]), int(left[i])
        assert torch.equal(out[i], padded[i, :, t : t + 9, s : s + 7])
    assert len({(int(a), int(b)) for a, b in zip(top, left)}) > 1


def test_a_run_with_channels_last_and_bf16(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("trainer=cpu_bf16", "perf.channels_last=true", "debug=fast_dev_run")
    record = run_training(cfg, tmp_path)
    assert record["config"]["trainer"]["precision"] == "bf16-mixed"
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0


@pytest.mark.slow
def test_benchmark_script_on_fashion_mnist(tmp_path: Path) -> None:
    """The entry script on real Fashion-MNIST at a small setting (one model, one repeat)."""
    out = tmp_path / "out"
    command = cli_command("scripts/benchmark.py", "--preset", "quick", "--models", "small_cnn")
    command += ["--repeats", "1", "--train-steps", "3", "--out", str(out)]
    subprocess.run(command, check=True, cwd=tmp_path, timeout=600)
    rows = json.loads((out / "benchmark.json").read_text())["throughput"]
    assert [(r["precision"], r.get("variant")) for r in rows] == [
        ("32-true", None),
        ("32-true", "channels_last"),
    ]
    assert all(_finite(rows[0][k]) for k in ROW_FIELDS)
    assert _finite(rows[1]["speedup_vs_default"])


def test_feature_cache_benchmark_times_three_runs(tmp_path: Path, capsys) -> None:
    from transferlab.bench import feature_cache

    out = tmp_path / "feature_cache.json"
    args = ["--out", str(out), "--work-dir", str(tmp_path / "work")]
    assert feature_cache.main([*args, "source=random", "trainer.max_epochs=1"]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["run"], r["feature_cache"]) for r in runs] == [
        ("images", "not used"),
        ("cold", "built"),
        ("warm", "read"),
    ]
    assert all(_finite(r["run_wall_s"]) and _finite(r["fit_s"]) for r in runs)
    accuracies = [r["test_acc"] for r in runs]  # the same probe three ways
    assert max(accuracies) - min(accuracies) <= 1 / 299  # one digits test image at most
    assert "| warm | read |" in capsys.readouterr().out


def test_ratio_interval_is_a_t_interval_of_log_ratios() -> None:
    result = ratio_interval([1.0, 2.0, 4.0])
    # logs 0, ln2, 2 ln2: mean ln2, sd ln2, t(0.975, 2) = 4.302653
    half = 4.302653 * math.log(2) / math.sqrt(3)
    assert result["n"] == 3 and result["geomean"] == pytest.approx(2.0)
    assert result["ci_low"] == pytest.approx(2.0 * math.exp(-half), rel=1e-6)
    assert result["ci_high"] == pytest.approx(2.0 * math.exp(half), rel=1e-6)
    inverse = ratio_interval([1.0, 0.5, 0.25])  # the inverse speed-up: mirrored interval
    assert inverse["ci_high"] == pytest.approx(1 / result["ci_low"], rel=1e-9)
    assert ratio_interval([1.5])["ci_low"] is None and ratio_interval([])["geomean"] is None


def test_backbone_throughput_measures_both_directions(tmp_path) -> None:
    """``python -m transferlab.bench.backbone_throughput`` times feature extraction and training
    steps for each (size, precision, memory format) and writes them with the machine."""
    from transferlab.bench.backbone_throughput import main

    out = tmp_path / "throughput.json"
    main(
        [
            "--models",
            "small_cnn",
            "--sizes",
            "16",
            "--precisions",
            "fp32",
            "--seconds",
            "0.05",
            "--out",
            str(out),
        ]
    )
    record = json.loads(out.read_text())
    assert record["machine"]["cores"] >= 1
    rows = record["rows"]
    assert [row["channels_last"] for row in rows] == [False, True]
    for row in rows:
        assert row["features_images_per_s"] > 0 and row["train_images_per_s"] > 0


def test_backbone_throughput_times_compiled_feature_extraction(tmp_path, capsys) -> None:
    """``--compile`` adds the compiled feature path's images/s and compile seconds."""
    from transferlab.bench.backbone_throughput import main

    out = tmp_path / "throughput.json"
    args = ["--models", "small_cnn", "--sizes", "16", "--precisions", "fp32"]
    main([*args, "--seconds", "0.05", "--channels-last", "off", "--compile", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["channels_last"] is False
    assert row["features_compiled_images_per_s"] > 0 and row["compile_s"] >= 0
    assert "compiled features (img/s)" in capsys.readouterr().out
