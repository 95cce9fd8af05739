"""The frozen-feature cache (docs/frozen_features.md): frozen epochs train the head on cached
pooled features of the backbone, with the image path's results, one cache entry per (weights,
split, preprocessing), and checkpoints that evaluate and export like any other."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest
import torch

from transferlab.core.errors import ConfigError
from transferlab.models import build_backbone
from transferlab.models import features as features_module
from transferlab.models.features import pooled_features
from transferlab.modules.autoencoder import AutoencoderTransferModule
from transferlab.modules.finetune import FinetuneModule
from transferlab.modules.gan_features import GanFeatureModule
from transferlab.modules.perf import COMPILE_FEATURES_MIN_IMAGES, wants_compiled_features
from transferlab.tasks import frozen_features, run_evaluation, run_training
from transferlab.tasks.export import export_safetensors
from transferlab.tasks.feature_cache import FEATURE_FILES, load_or_compute
from transferlab.tasks.frozen_features import feature_cache_setting, frozen_epochs, image_hook

PROBE = ("strategy.mode=linear_probe", "trainer.max_epochs=6")
ONE_EPOCH = ("strategy.mode=linear_probe", "trainer.max_epochs=1")
METRICS = ("test/acc", "test/acc_per_class_mean", "test/loss")
TEST_IMAGES = 299  # digits 5-9: a third of each class


def _train(make_cfg, out: Path, *overrides: str) -> dict:
    return run_training(make_cfg(*overrides, out=out), out)


def _assert_same_run(fast: dict, slow: dict) -> None:
    """Both paths feed the head the same features (up to float rounding: the cache computes
    them in one pass instead of per batch) in the same batches, so the runs agree to rounding:
    at most one of the 299 test images may flip. Seeds move these probes by several points
    (docs/frozen_features.md), so any real difference (misaligned features, BatchNorm in train
    mode, augmentation, another head initialisation) fails this."""
    assert set(fast["metrics"]) == set(slow["metrics"])
    assert set(fast["test_details"]) == set(slow["test_details"])
    assert abs(fast["metrics"]["test/acc"] - slow["metrics"]["test/acc"]) <= 1 / TEST_IMAGES
    assert fast["metrics"]["val/acc_best"] == pytest.approx(slow["metrics"]["val/acc_best"])
    assert fast["metrics"]["test/loss"] == pytest.approx(slow["metrics"]["test/loss"], abs=1e-3)
    assert Path(fast["metrics"]["best_checkpoint"]).name == (
        Path(slow["metrics"]["best_checkpoint"]).name  # the same epoch chosen on validation
    )
    assert fast["epochs_trained"] == slow["epochs_trained"]


def test_cached_probe_equals_the_image_path_and_evaluates(make_cfg, tmp_path: Path) -> None:
    slow = _train(make_cfg, tmp_path / "images", *PROBE, "strategy.feature_cache=false")
    fast = _train(make_cfg, tmp_path / "cached", *PROBE)
    assert slow["feature_cache"] == {"used": False, "reason": "strategy.feature_cache=false"}
    info = fast["feature_cache"]
    assert info["used"] is True and info["images"] == {"train": 25, "val": 100, "test": 299}
    assert info["feature_epochs"] == "every epoch (train and validation) and the test"
    _assert_same_run(fast, slow)
    assert fast["metrics"]["test/acc"] > 0.5  # 5 classes: chance is 0.2
    on_disk = json.loads((tmp_path / "cached" / "results.json").read_text())
    assert on_disk["feature_cache"]["used"] is True and on_disk["status"] == "completed"

    # the cached run's best checkpoint is an ordinary one: eval.py reproduces its test metrics
    best = fast["metrics"]["best_checkpoint"]
    out = tmp_path / "eval"
    evaluated = run_evaluation(make_cfg(f"ckpt_path={best}", name="eval", out=out), out)
    for key in METRICS:
        assert evaluated["metrics"][key] == pytest.approx(fast["metrics"][key], abs=1e-5)
    assert evaluated["test_details"]["confusion_matrix"] == fast["test_details"]["confusion_matrix"]
    assert {k.split(".")[0] for k in _exported(export_safetensors(best))} == {"backbone", "head"}


def _exported(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())


def test_lp_ft_probes_on_cached_features_then_fine_tunes_on_images(
    make_cfg, tmp_path: Path
) -> None:
    lp_ft = ("strategy.mode=lp_ft", "strategy.lp_epochs=3", "trainer.max_epochs=5")
    slow = _train(make_cfg, tmp_path / "images", *lp_ft, "strategy.feature_cache=false")
    fast = _train(make_cfg, tmp_path / "cached", *lp_ft)
    assert fast["feature_cache"]["feature_epochs"] == (
        "epochs 0-2 of 5 (train and validation); images afterwards"
    )
    _assert_same_run(fast, slow)


def test_a_cached_run_resumes_across_the_switch_to_images(make_cfg, tmp_path: Path) -> None:
    """Cut after the probe phase and resumed from last.ckpt into the image phase, a cached run
    continues as the image-fed one does (the shuffling generator's state travels in the
    checkpoint). Both differ from an uninterrupted run: the cosine schedule of the cut run
    spans its 2 epochs."""
    lp_ft = ("strategy.mode=lp_ft", "strategy.lp_epochs=2")
    resumed = {}
    for cache in ("false", "auto"):
        out = tmp_path / cache
        _train(make_cfg, out, *lp_ft, f"strategy.feature_cache={cache}", "trainer.max_epochs=2")
        last = f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"
        more = (f"strategy.feature_cache={cache}", "trainer.max_epochs=4", last)
        resumed[cache] = _train(make_cfg, out, *lp_ft, *more)
    assert resumed["auto"]["feature_cache"]["entry"] == "read"
    assert resumed["auto"]["epochs_trained"] == 4
    _assert_same_run(resumed["auto"], resumed["false"])


def test_the_cache_is_built_once_then_read(make_cfg, tmp_path: Path) -> None:
    unique = "data.val_per_class=17"  # an entry no other test builds
    first = _train(make_cfg, tmp_path / "a", *PROBE, unique)
    second = _train(make_cfg, tmp_path / "b", *PROBE, unique)
    assert (first["feature_cache"]["entry"], second["feature_cache"]["entry"]) == ("built", "read")
    entry = Path(first["feature_cache"]["path"])
    assert second["feature_cache"]["path"] == str(entry)
    assert sorted(p.name for p in entry.iterdir()) == sorted(FEATURE_FILES)
    for key in METRICS:
        assert first["metrics"][key] == pytest.approx(second["metrics"][key], abs=1e-6)


def test_another_source_split_or_preprocessing_is_another_entry(make_cfg, tmp_path: Path) -> None:
    variants = {  # a random backbone builds in no time
        "base": ("source=random",),
        "split": ("source=random", "data.labels_per_class=6"),  # another labelled subset
        "weights": ("source=pretrain",),
        "seed": ("source=random", "seed=1"),  # another split and backbone
        "preprocessing": ("source=random", "data.normalize=null"),
        "batching": ("source=random", "data.batch_size=8"),  # the same features
    }
    paths = {}
    for name, extra in variants.items():
        record = _train(make_cfg, tmp_path / name, *ONE_EPOCH, *extra)
        paths[name] = record["feature_cache"]["path"]
    assert paths["batching"] == paths["base"]
    del paths["batching"]
    assert len(set(paths.values())) == len(paths), paths


def test_augmentation_keeps_the_image_path_unless_asked(
    make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    augmented = ("source=random", *ONE_EPOCH, "data.augment.hflip=true")
    auto = _train(make_cfg, tmp_path / "auto", *augmented)
    assert auto["feature_cache"]["used"] is False
    assert "data.augment is set" in auto["feature_cache"]["reason"]
    with caplog.at_level(logging.INFO, logger=frozen_features.__name__):
        forced = _train(make_cfg, tmp_path / "on", *augmented, "strategy.feature_cache=true")
    assert forced["feature_cache"]["used"] is True
    assert "data augmentation is off there" in caplog.text
    full = _train(make_cfg, tmp_path / "full", "source=random", "trainer.max_epochs=1")
    assert full["feature_cache"] == {
        "used": False,
        "reason": "strategy=finetune mode=full trains the backbone from the first epoch",
    }


def test_settings_and_eligibility() -> None:
    assert feature_cache_setting({}) == "auto"
    assert feature_cache_setting({"feature_cache": None}) == "auto"
    assert feature_cache_setting({"feature_cache": True}) is True
    for bad in ("yes", 1, "on"):
        with pytest.raises(ConfigError, match="strategy.feature_cache="):
            feature_cache_setting({"feature_cache": bad})

    def backbone():
        return build_backbone("small_cnn", in_chans=1, input_size=8, small_input=None)

    def epochs(mode: str, max_epochs: int | None = 10, **kwargs) -> int | None:
        return frozen_epochs(FinetuneModule(backbone(), 5, mode=mode, **kwargs), max_epochs)

    assert epochs("linear_probe") is None and epochs("linear_probe", None) is None
    assert epochs("full") == 0
    assert epochs("lp_ft", lp_epochs=4) == 4 and epochs("lp_ft", 3, lp_epochs=4) is None
    assert epochs("gradual", unfreeze_every=2) == 2
    assert epochs("partial", freeze_stages=1) == 0
    assert epochs("partial", freeze_stages=len(backbone().stages())) is None

    shape = (1, 8, 8)
    assert image_hook(FinetuneModule(backbone(), 5, mode="linear_probe")) is None
    pooled = GanFeatureModule(backbone(), 5, features="pooled", input_shape=shape)
    assert image_hook(pooled) is None
    multilayer = GanFeatureModule(backbone(), 5, features="multilayer", input_shape=shape)
    assert image_hook(multilayer) == "features"
    autoencoder = AutoencoderTransferModule(backbone(), 5, mode="linear_probe", input_shape=shape)
    assert image_hook(autoencoder) == "on_fit_start"


def test_true_where_nothing_is_frozen_is_one_config_error(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("source=random", "strategy.mode=full", "strategy.feature_cache=true")
    with pytest.raises(
        ConfigError, match="feature_cache=true cannot be used: strategy=finetune mode=full"
    ):
        run_training(cfg, tmp_path)


def test_a_corrupt_entry_is_rebuilt_and_an_unwritable_cache_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {split: torch.randn(3, 4) for split in ("train", "val", "test")}

    entry = tmp_path / "features" / "small_cnn-key"
    first, how = load_or_compute(entry, {"k": 1}, compute)
    assert how == "built" and len(calls) == 1
    again, how = load_or_compute(entry, {"k": 1}, compute)
    assert how == "read" and torch.equal(again["train"], first["train"]) and len(calls) == 1
    (entry / FEATURE_FILES[0]).write_bytes(b"truncated")  # a damaged file is not read
    _, how = load_or_compute(entry, {"k": 1}, compute)
    assert how == "built" and len(calls) == 2

    class NoLock:
        def __init__(self, path: str) -> None:
            raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("transferlab.sources.cache.FileLock", NoLock)
    _, how = load_or_compute(tmp_path / "ro" / "small_cnn-key", {"k": 1}, compute)
    assert how == "computed (not cached)" and len(calls) == 3


def _digits_backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("small_cnn", in_chans=1, input_size=8).eval()


def test_compiled_features_equal_the_eager_ones_with_a_padded_last_chunk(caplog) -> None:
    # torch.compile with frozen weights (perf.compile_features): 70 inputs in chunks of 32,
    # so the last chunk (6) is padded to the compiled shape and cut back
    backbone = _digits_backbone()
    inputs = torch.randn(70, 1, 8, 8)
    eager = pooled_features(backbone, inputs, batch_size=32)
    with caplog.at_level(logging.WARNING):
        compiled = pooled_features(backbone, inputs, batch_size=32, compile=True)
    assert not [r for r in caplog.records if "compile_features" in r.getMessage()]  # compiled
    assert compiled.shape == eager.shape == (70, backbone.num_features)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_a_failing_compile_falls_back_to_eager_features_with_a_warning(monkeypatch, caplog) -> None:
    @contextlib.contextmanager
    def broken(_backbone: torch.nn.Module):
        def run(_x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore lines")

        yield run

    monkeypatch.setattr(features_module, "frozen_compiled", broken)
    backbone = _digits_backbone().train()
    inputs = torch.randn(10, 1, 8, 8)
    with caplog.at_level(logging.WARNING):
        out = pooled_features(backbone, inputs, batch_size=4, compile=True)
    torch.testing.assert_close(out, pooled_features(backbone, inputs, batch_size=4))
    assert backbone.training  # train mode restored after eval-mode extraction
    (warning,) = [r.getMessage() for r in caplog.records if "compile_features" in r.getMessage()]
    assert "InvalidCxxCompiler" in warning and "eagerly" in warning and "more lines" not in warning


def test_compile_features_auto_compiles_only_large_extractions() -> None:
    assert not wants_compiled_features("auto", COMPILE_FEATURES_MIN_IMAGES - 1)
    assert wants_compiled_features("auto", COMPILE_FEATURES_MIN_IMAGES)
    assert wants_compiled_features(True, 1) and not wants_compiled_features(False, 10**6)


def test_a_compiled_cache_entry_is_its_own_and_matches_the_eager_run(
    make_cfg, tmp_path: Path
) -> None:
    eager = _train(make_cfg, tmp_path / "eager", *PROBE, "perf.compile_features=false")
    compiled = _train(make_cfg, tmp_path / "compiled", *PROBE, "perf.compile_features=true")
    assert eager["feature_cache"]["compiled"] is False  # digits: under the auto threshold
    assert compiled["feature_cache"]["compiled"] is True
    assert compiled["feature_cache"]["path"] != eager["feature_cache"]["path"]
    _assert_same_run(compiled, eager)
