"""The bad-input catalogue: each wrong input exits non-zero with one clear ``error:`` line,
within a time bound, and leaves no results file behind.

Each case runs the real command-line entry point (``train.py`` / ``eval.py``) in this process
(importing torch once keeps the catalogue fast); ``tests/test_train_e2e.py`` checks a few of
them in a separate process as well.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config, drop_stale_log_handlers
from PIL import Image
from safetensors.torch import save_file

from transferlab.cli import eval_main, train_main
from transferlab.commands import main as commands_main
from transferlab.core import results as results_module
from transferlab.core.store import file_sha256
from transferlab.data.target import target_datamodule
from transferlab.models import build_backbone
from transferlab.sources import cache as cache_module
from transferlab.sources import make_source
from transferlab.tasks import checkpoints as checkpoints_module
from transferlab.tasks import run_training, to_plain

TIME_BOUND_S = 60  # generous for a 2-core CI machine; most cases fail in about a second
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PWNED = "transferlab-catalogue-pwned"

Setup = Callable[[Path], list[str]]


def _args(*args: str) -> Setup:
    return lambda tmp: list(args)


def _image_folder(
    tmp: Path,
    *,
    corrupt: bool = False,
    empty: bool = False,
    mix: bool = False,
    classes: int = 2,
    strategy: str = "scratch",
):
    root = tmp / "images"
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = np.full((8, 8), (40 * i + 100 * label) % 256, dtype=np.uint8)
            image = Image.fromarray(pixels)
            if mix and label == 1:
                image = image.convert("RGB")
            image.save(folder / f"{i}.png")
    if corrupt:
        (root / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    if empty:
        (root / "class2").mkdir()
    return ["data=image_folder", f"data.root={root}", "data.image_size=8", f"strategy={strategy}"]


def _truncated_idx(tmp: Path) -> list[str]:
    root = tmp / "fmnist"
    root.mkdir()
    for source in FASHION_DIR.glob("*-ubyte.gz"):
        (root / source.name).symlink_to(source)
    bad = root / "train-labels-idx1-ubyte.gz"
    bad.unlink()
    bad.write_bytes((FASHION_DIR / bad.name).read_bytes()[:2000])  # cut off mid-stream
    return ["data=fashion_mnist", f"data.root={root}", "data.download=false", "strategy=scratch"]


DIGIT_ATTRIBUTES = Path(__file__).resolve().parents[1] / "src/transferlab/data/semantics/digits.csv"


def _attribute_csv(edit: Callable[[list[str]], list[str]]) -> Setup:
    """``strategy=zeroshot`` with the shipped digits attributes, edited to be wrong."""

    def setup(tmp: Path) -> list[str]:
        path = tmp / "attributes.csv"
        path.write_text("\n".join(edit(DIGIT_ATTRIBUTES.read_text().splitlines())) + "\n")
        return ["strategy=zeroshot", f"strategy.semantics={path}"]

    return setup


def _backbone_file(tmp: Path, name: str, in_chans: int = 1) -> Path:
    backbone = build_backbone(name, in_chans=in_chans, input_size=8)
    path = tmp / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(path))
    return path


def _wrong_architecture(tmp: Path) -> list[str]:
    return ["source=checkpoint", f"source.path={_backbone_file(tmp, 'resnet8')}"]


def _wrong_channels(tmp: Path) -> list[str]:
    return ["source=checkpoint", f"source.path={_backbone_file(tmp, 'small_cnn', in_chans=3)}"]


def _truncated_checkpoint(tmp: Path) -> list[str]:
    path = tmp / "cut.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    return ["source=checkpoint", f"source.path={path}"]


class _RunsCode:
    """A pickle payload that would run code when loaded without weights_only."""

    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['TL_CATALOGUE_TMP']) / PWNED}",))


def _evil_checkpoint(tmp: Path) -> Path:
    path = tmp / "evil.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _RunsCode()}, handle)
    return path


def _pickle_with_code(tmp: Path) -> list[str]:
    return ["source=checkpoint", f"source.path={_evil_checkpoint(tmp)}"]


def _training_checkpoint() -> str:
    """A real (one-epoch) training checkpoint: scratch small_cnn on digits 5-9."""
    out = Path(tempfile.mkdtemp(prefix="tl-catalogue-"))
    cfg = compose_config("train", ["strategy=scratch", "trainer.max_epochs=1"], out, out / "c")
    return run_training(cfg, out)["metrics"]["best_checkpoint"]


def _eval_other_class_count(tmp: Path) -> list[str]:
    """A real training checkpoint for digits 5-9, evaluated on three classes."""
    return [f"ckpt_path={_training_checkpoint()}", "+data.classes=[5,6,7]"]


def _resume_other_model(tmp: Path) -> list[str]:
    """A small_cnn training checkpoint given to a resnet8 run."""
    return ["strategy=scratch", "model=resnet8", f"ckpt_path={_training_checkpoint()}"]


def _eval_backbone_only(tmp: Path) -> list[str]:
    path = tmp / "backbone.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(2)}}, path)
    return [f"ckpt_path={path}"]


# ---- run directories, resume, sweeps (docs/reliability.md) ----
# A finished run lives outside ``tmp`` (the harness checks that no results file appears there);
# tests/test_resume_safety.py checks that its results stay byte-identical.
SCRATCH_1 = ("strategy=scratch", "trainer.max_epochs=1")


def _finished_run() -> Path:
    """A finished one-epoch scratch run (small_cnn on digits 5-9) in a directory of its own."""
    out = Path(tempfile.mkdtemp(prefix="tl-catalogue-run-"))
    run_training(compose_config("train", list(SCRATCH_1), out, out / "cache"), out)
    return out


# three sources for ``transferlab rank``; the finished run above is a scratch run (no source)
RANK_SOURCES = ("--source", "random", "--source", "pretrain", "--source", "pretrain:model=resnet8")


def _into_finished_run(*extra: str) -> Setup:
    """Run (with ``extra``) in the directory of a finished run."""
    return lambda tmp: [*SCRATCH_1, f"hydra.run.dir={_finished_run()}", *extra]


def _checkpoint_in_run_dir(tmp: Path, make: Callable[[Path], Path]) -> Path:
    """``tmp/run/checkpoints/last.ckpt`` made by ``make(path)`` (the harness's run directory)."""
    folder = tmp / "run" / "checkpoints"
    folder.mkdir(parents=True)
    return make(folder / "last.ckpt")


def _resume_over_pickle(tmp: Path) -> list[str]:
    _checkpoint_in_run_dir(tmp, lambda p: _evil_checkpoint(tmp).rename(p))
    return [*SCRATCH_1, "resume=true"]


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _resume_over_truncated(tmp: Path) -> list[str]:
    _checkpoint_in_run_dir(tmp, lambda p: _truncate(Path(shutil.copy(_training_checkpoint(), p))))
    return [*SCRATCH_1, "resume=true"]


def _resume_other_runs_checkpoint(tmp: Path) -> list[str]:
    """The run directory holds a one-epoch run's checkpoint; resume a two-epoch run there."""
    _checkpoint_in_run_dir(tmp, lambda p: Path(shutil.copy(_training_checkpoint(), p)))
    return ["strategy=scratch", "trainer.max_epochs=2", "resume=true"]


def _fresh_run_over_checkpoints(tmp: Path) -> list[str]:
    _checkpoint_in_run_dir(tmp, lambda p: Path(shutil.copy(_training_checkpoint(), p)))
    return list(SCRATCH_1)


def _sweep(*args: str) -> Setup:
    """A multirun whose sweep directory lies outside ``tmp`` (failed jobs write records); the
    flag goes last (after it, Hydra's argument parser takes no more overrides)."""
    return lambda tmp: [f"hydra.sweep.dir={tempfile.mkdtemp(prefix='tl-sweep-')}", *args, "-m"]


def _cache_is_a_file(tmp: Path) -> list[str]:
    (tmp / "cache-file").write_text("not a directory")
    return [f"paths.cache_dir={tmp / 'cache-file'}"]


def _nan_backbone_state() -> dict[str, torch.Tensor]:
    """A small_cnn backbone state whose first weight is all NaN (a diverged run's weights)."""
    state = {k: v.contiguous() for k, v in build_backbone("small_cnn", 1, 8).state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    return state


def _nan_checkpoint_source(tmp: Path) -> list[str]:
    path = tmp / "diverged.safetensors"
    save_file(_nan_backbone_state(), str(path))
    return ["source=checkpoint", f"source.path={path}"]


# ---- source cache entries, written as a build would write them ----


def _entry(tmp: Path, *overrides: str) -> Path:
    """The source cache entry (under ``tmp/cache``) that a run with ``overrides`` opens,
    located as the run locates it."""
    cfg = compose_config("train", list(overrides), tmp / "probe", tmp / "cache")
    plain = to_plain(cfg)
    source = make_source(plain["source"])
    needs = source.requirement.with_min_size(int(plain["model"].get("min_input_size", 1)))
    _, spec = target_datamodule(plain["data"], plain["seed"], needs)
    return Path(plain["source"]["cache_dir"]) / f"{source.kind}-{source.key(plain['model'], spec)}"


def _write_entry(
    entry: Path, weights: dict[str, torch.Tensor], files: dict[str, dict] | None = None
) -> None:
    """A complete entry: backbone weights, other weight files and their hashes in source.json."""
    entry.mkdir(parents=True)
    save_file(weights, str(entry / "backbone.safetensors"))
    for name, state in (files or {}).items():
        save_file(state, str(entry / name))
    meta = {
        "key": entry.name.split("-", 1)[1],
        "weights_sha256": file_sha256(entry / "backbone.safetensors"),
        "files_sha256": {name: file_sha256(entry / name) for name in files or {}},
    }
    (entry / "source.json").write_text(json.dumps(meta))


def _nan_cache_entry(tmp: Path) -> list[str]:
    """The default pretrain source's entry, intact (hashes match) but with NaN weights."""
    _write_entry(_entry(tmp), _nan_backbone_state())
    return [f"paths.cache_dir={tmp / 'cache'}"]


def _null_source_json(tmp: Path) -> list[str]:
    """The default pretrain source's entry with ``null`` as its source.json."""
    entry = _entry(tmp)
    _write_entry(entry, {"w": torch.ones(2)})
    (entry / "source.json").write_text("null")
    return [f"paths.cache_dir={tmp / 'cache'}"]


def _corrupt_gan_generator(tmp: Path) -> list[str]:
    """The transfer_gan source's entry whose generator file was damaged after it was built."""
    entry = _entry(tmp, "strategy=transfer_gan")
    generator = {"w": torch.ones(64)}
    _write_entry(entry, {"w": torch.ones(2)}, {"generator.safetensors": generator})
    damaged = bytearray((entry / "generator.safetensors").read_bytes())
    damaged[-8:] = bytes(8)
    (entry / "generator.safetensors").write_bytes(bytes(damaged))
    return ["strategy=transfer_gan", f"paths.cache_dir={tmp / 'cache'}"]


@functools.lru_cache(maxsize=1)
def _gan_checkpoint() -> str:
    """A real transfer_gan checkpoint: a GAN trained from scratch for two steps."""
    out = Path(tempfile.mkdtemp(prefix="tl-catalogue-gan-"))
    overrides = [
        "strategy=transfer_gan",
        "strategy.init=scratch",
        "strategy.steps=2",
        "strategy.checkpoint_every=null",
        "strategy.fid.num_samples=100",
        "logger=none",
    ]
    run_training(
        compose_config("train", overrides, out, Path(os.environ["TL_CATALOGUE_CACHE"])), out
    )
    return str(out / "checkpoints" / "last.ckpt")


# ---- faults injected into a run: a read-only place, a full disk (docs/reliability.md) ----
# (root ignores permission bits: tests/test_resume_safety.py has the real read-only mount and
# full disk, as slow tests)

READ_ONLY = "read-only"  # the folder of a case's tmp below which nothing can be created


@dataclass(frozen=True)
class Faulty:
    """A case whose run meets a fault: ``inject(tmp, monkeypatch)`` runs after ``setup(tmp)``
    (and is undone after the case)."""

    setup: Setup
    inject: Callable[[Path, pytest.MonkeyPatch], None]

    def __call__(self, tmp: Path) -> list[str]:
        return self.setup(tmp)


def _without_lightly(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lightly is not installed (``import lightly`` fails)."""
    monkeypatch.setitem(sys.modules, "lightly", None)


def _read_only_folder(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a folder below ``tmp/read-only`` fails as on a read-only file system."""
    protected, real_mkdir = tmp / READ_ONLY, Path.mkdir

    def mkdir(self: Path, *args, **kwargs) -> None:
        if self.is_relative_to(protected) and not self.exists():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def _read_only_cache(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The source cache's lock file cannot be created, as on a read-only mount."""

    def no_lock(path: str) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    monkeypatch.setattr(cache_module, "FileLock", no_lock)


def _full_disk_in_checkpoints(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every checkpoint write fails half way as torch's writer fails on a full disk: a
    RuntimeError raised while handling the OSError."""

    def write(checkpoint: dict, handle) -> None:
        handle.write(b"PK\x03\x04")
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos")  # noqa: B904

    monkeypatch.setattr(checkpoints_module, "write_payload", write)


def _full_disk_on_results(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing results.json, after the training, fails on a full disk."""

    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results_module, "atomic_write_text", full)


def _read_only(setup: Setup) -> Faulty:
    return Faulty(setup, _read_only_folder)


# (id, entry point, setup -> overrides, what the one error line must say)
CASES: list[tuple[str, str, Setup, str]] = [
    # command-line overrides
    ("unknown-model", "train", _args("model=resnet1000"), "unknown model 'resnet1000'; valid:"),
    ("unknown-data", "train", _args("data=imagenet21k"), "unknown data 'imagenet21k'; valid:"),
    ("unknown-strategy", "train", _args("strategy=magic"), "unknown strategy 'magic'; valid:"),
    ("unknown-source", "train", _args("source=nowhere"), "unknown source 'nowhere'; valid:"),
    ("budget-too-large", "train", _args("data.labels_per_class=500"), "labels_per_class=500"),
    ("finetune-without-source", "train", _args("source=none"), "use strategy=scratch"),
    ("unknown-finetune-mode", "train", _args("strategy.mode=half"), "unknown finetune mode"),
    ("unknown-optimizer", "train", _args("strategy.optimizer.name=rmsprop"), "'rmsprop'"),
    ("unknown-scheduler", "train", _args("strategy.scheduler.name=poly"), "scheduler 'poly'"),
    ("negative-lr", "train", _args("strategy.optimizer.lr=-1"), "optimizer.lr=-1 is invalid"),
    ("unknown-class", "train", _args("data.classes=[5,42]"), "class index 42 is out of range"),
    (
        "too-many-frozen-stages",
        "train",
        _args("source=random", "strategy.mode=partial", "strategy.freeze_stages=99"),
        "freeze_stages=99",
    ),
    ("negative-padding", "train", _args("data.augment.crop_padding=-1"), "augment.crop_padding"),
    ("seed-not-a-number", "train", _args("seed=abc"), "seed='abc' is invalid"),
    (
        "negative-epochs",
        "train",
        _args("trainer.max_epochs=-5"),
        "trainer.max_epochs=-5 is invalid",
    ),
    ("zero-batch-size", "train", _args("data.batch_size=0"), "batch_size=0 is invalid"),
    ("checkpoint-source-without-path", "train", _args("source=checkpoint"), "source.path="),
    # typed configs: one place checks every key's type and range, and suggests misspelt keys
    (
        "misspelt-trainer-key",
        "train",
        _args("trainer.max_epoch=3"),
        "trainer.max_epoch is not a config key (did you mean 'trainer.max_epochs'?)",
    ),
    (
        "misspelt-strategy-key",
        "train",
        _args("strategy.lp_epoch=3"),
        "did you mean 'strategy.lp_epochs'?",
    ),
    ("negative-seed", "train", _args("seed=-1"), "seed=-1 is invalid: Input should be greater"),
    ("epochs-not-an-int", "train", _args("strategy.lp_epochs=abc"), "lp_epochs='abc' is invalid"),
    ("dropout-out-of-range", "train", _args("strategy.head_dropout=1.5"), "head_dropout=1.5"),
    ("zero-threads", "train", _args("perf.num_threads=0"), "perf.num_threads=0 is invalid"),
    ("bad-channels-last", "train", _args("perf.channels_last=maybe"), "perf.channels_last"),
    ("zero-width", "train", _args("model.width=0"), "model.width=0 is invalid"),
    ("unknown-model-option", "train", _args("+model.depth=3"), "model.depth is not an option"),
    ("test-not-a-bool", "train", _args("test=1"), "test=1 is invalid"),
    (
        "bad-feature-cache",
        "train",
        _args("strategy.feature_cache=maybe"),
        "strategy.feature_cache='maybe' is invalid",
    ),
    (
        "feature-cache-on-a-trained-backbone",
        "train",
        _args("source=random", "strategy.mode=full", "strategy.feature_cache=true"),
        "feature_cache=true cannot be used: strategy=finetune mode=full trains",
    ),
    # data
    ("image-folder-without-root", "train", _args("data=image_folder"), "needs data.root"),
    (
        "image-folder-missing",
        "train",
        lambda tmp: ["data=image_folder", f"data.root={tmp / 'nothing'}"],
        "does not exist",
    ),
    ("corrupt-image", "train", lambda t: _image_folder(t, corrupt=True), "broken.png"),
    ("empty-class-folder", "train", lambda t: _image_folder(t, empty=True), "has no images"),
    ("grayscale-rgb-mix", "train", lambda t: _image_folder(t, mix=True), "mix grayscale"),
    ("truncated-idx", "train", _truncated_idx, "truncated or corrupt"),
    # attribute CSVs (zero-shot class semantics)
    (
        "attributes-missing-class",
        "train",
        _attribute_csv(lambda rows: [r for r in rows if not r.startswith("9,")]),
        "no row for class",
    ),
    (
        "attributes-wrong-column-count",
        "train",
        _attribute_csv(lambda rows: [r[:-2] if r.startswith("3,") else r for r in rows]),
        "attribute values; the header names",
    ),
    (
        "attributes-not-a-number",
        "train",
        _attribute_csv(
            lambda rows: [r.replace("4,", "4,x", 1) if r.startswith("4,") else r for r in rows]
        ),
        "is not a finite number",
    ),
    # checkpoints
    (
        "missing-checkpoint",
        "train",
        _args("source=checkpoint", "source.path=/nowhere/x.ckpt"),
        "checkpoint not found",
    ),
    ("truncated-checkpoint", "train", _truncated_checkpoint, "cannot read checkpoint"),
    ("pickle-with-code", "train", _pickle_with_code, "refusing to load"),
    (
        "resume-from-pickle-with-code",
        "train",
        lambda tmp: [f"ckpt_path={_evil_checkpoint(tmp)}"],
        "refusing to load",
    ),
    (
        "eval-pickle-with-code",
        "eval",
        lambda tmp: [f"ckpt_path={_evil_checkpoint(tmp)}"],
        "refusing to load",
    ),
    ("resume-missing-checkpoint", "train", _args("ckpt_path=/nowhere/last.ckpt"), "not found"),
    ("resume-from-a-directory", "train", lambda tmp: [f"ckpt_path={tmp}"], "is a directory"),
    ("eval-a-directory", "eval", lambda tmp: [f"ckpt_path={tmp}"], "is a directory"),
    ("resume-other-model", "train", _resume_other_model, "cannot continue this run"),
    ("wrong-architecture", "train", _wrong_architecture, "built for another architecture"),
    ("wrong-input-channels", "train", _wrong_channels, "shape mismatch"),
    ("eval-missing-checkpoint", "eval", _args("ckpt_path=/nowhere/x.ckpt"), "not found"),
    ("eval-not-a-training-checkpoint", "eval", _eval_backbone_only, "not a transferlab training"),
    (
        "eval-other-class-count",
        "eval",
        _eval_other_class_count,
        "head.fc.weight (5, 128) vs (3, 128)",
    ),
    # divergence: learning rates and optimizer settings that train nothing but NaNs
    ("infinite-lr", "train", _args("strategy.optimizer.lr=inf"), "optimizer.lr=inf is invalid"),
    ("nan-lr", "train", _args("strategy.optimizer.lr=nan"), "optimizer.lr=nan is invalid"),
    ("zero-lr", "train", _args("strategy.optimizer.lr=0"), "optimizer.lr=0 is invalid"),
    (
        "infinite-weight-decay",
        "train",
        _args("strategy.optimizer.weight_decay=inf"),
        "optimizer.weight_decay=inf is invalid",
    ),
    # runs that would never train and record an untrained model as a result
    ("zero-epochs", "train", _args("trainer.max_epochs=0"), "trainer.max_epochs=0 trains nothing"),
    ("zero-steps", "train", _args("+trainer.max_steps=0"), "trainer.max_steps=0 trains nothing"),
    # a run directory belongs to one configuration: nothing is overwritten
    (
        "resume-with-a-changed-config",
        "train",
        _into_finished_run("trainer.max_epochs=2", "resume=true"),
        "belongs to another configuration: trainer.max_epochs=1 (this run: 2)",
    ),
    (
        "rerun-into-a-finished-run",
        "train",
        _into_finished_run(),
        "holds the finished results of this configuration",
    ),
    (
        "other-config-into-a-finished-run",
        "train",
        _into_finished_run("strategy.optimizer.lr=0.01"),
        "strategy.optimizer.lr=0.002 (this run: 0.01)",
    ),
    ("resume-over-a-pickle-with-code", "train", _resume_over_pickle, "refusing to load"),
    ("resume-over-a-truncated-last-ckpt", "train", _resume_over_truncated, "cannot resume"),
    (
        "resume-over-another-runs-checkpoint",
        "train",
        _resume_other_runs_checkpoint,
        "trainer.max_epochs=1 (this run: 2)",
    ),
    (
        "fresh-run-over-checkpoints",
        "train",
        _fresh_run_over_checkpoints,
        "holds the checkpoints of an earlier run",
    ),
    # multiruns: failed jobs make the command fail, with one summary
    (
        "multirun-with-failed-jobs",
        "train",
        _sweep("data.labels_per_class=500,600", "debug=fast_dev_run"),
        "2 of 2 jobs of the multirun failed (jobs 0, 1): DataError: labels_per_class=500",
    ),
    (
        "multirun-without-seed",
        "train",
        _sweep("seed=null", "debug=fast_dev_run"),
        "seed=null in a multirun",
    ),
    # a source cache that cannot be written when a source must be built
    ("cache-dir-is-a-file", "train", _cache_is_a_file, "cannot be built in"),
    # trainer and source counts are typed: Lightning would take them and fail mid-fit
    ("epochs-not-a-number", "train", _args("trainer.max_epochs=abc"), "max_epochs='abc' is"),
    ("steps-not-an-int", "train", _args("+trainer.max_steps=1.5"), "max_steps=1.5 is invalid"),
    (
        "batch-limit-above-one",
        "train",
        _args("+trainer.limit_train_batches=1.5"),
        "trainer.limit_train_batches=1.5 is invalid",
    ),
    ("unknown-precision", "train", _args("trainer.precision=17"), "Precision 17 is invalid"),
    ("source-epochs-not-a-number", "train", _args("source.max_epochs=abc"), "source.max_epochs"),
    ("allow-overlap-not-a-bool", "train", _args("source.allow_overlap=maybe"), "allow_overlap"),
    # classes: a classifier needs two; source classes are named by their key and data set
    ("one-target-class", "train", _args("data.classes=[5]"), "data.classes=[5] selects only 1"),
    (
        "source-class-out-of-range",
        "train",
        _args("source.classes=[0,1,2,3,12]"),
        "source.classes=[0, 1, 2, 3, 12]: digits has 10 classes: class index 12 is out of range",
    ),
    ("one-source-class", "train", _args("source.classes=[3]"), "source.classes=[3] selects only"),
    (
        "image-folder-one-class",
        "train",
        lambda t: _image_folder(t, classes=1),
        "image_folder has 1 class ('class0') but a classifier needs at least 2",
    ),
    (
        "image-folder-fewer-classes-than-the-source",
        "train",
        lambda t: [*_image_folder(t, strategy="finetune"), "data.classes=[0,1]"],
        "source.classes=[0, 1, 2, 3, 4]: image_folder has 2 classes: class index 2 is out",
    ),
    # self-supervised sources: the method, the views, the library
    (
        "ssl-unknown-method",
        "train",
        _args("source=ssl", "source.method=dino"),
        "unknown source.method 'dino'; valid: barlowtwins, byol, moco, simclr, simsiam, vicreg",
    ),
    (
        "ssl-crop-scale-out-of-range",
        "train",
        _args("source=ssl", "source.augment.min_scale=1.5"),
        "source.augment: min_scale must be in (0, 1]",
    ),
    (
        "ssl-without-lightly",
        "train",
        Faulty(_args("source=ssl"), _without_lightly),
        "source=ssl needs the lightly library: pip install -e '.[ssl]'",
    ),
    # leakage: a source never trains on target classes unless source.allow_overlap=true
    (
        "source-overlaps-the-target",
        "train",
        _args("source.classes=[4,5,6]"),
        "source=pretrain trains on target classes of digits ('5', '6')",
    ),
    (
        "gan-source-overlaps-the-target",
        "train",
        _args("strategy=gan", "source.classes=[4,5,6]"),
        "source=gan trains on target classes of digits ('5', '6')",
    ),
    (
        "autoencoder-source-overlaps-the-target",
        "train",
        _args("strategy=autoencoder", "source.classes=[5,6]"),
        "source.data=target_pool",
    ),
    (
        "ssl-source-overlaps-the-target",
        "train",
        _args("source=ssl", "source.classes=[5,6]"),
        "source=ssl trains on target classes of digits ('5', '6')",
    ),
    (
        "transfer-gan-source-overlaps-the-target",
        "train",
        _args("strategy=transfer_gan", "source.classes=[5,6]"),
        "source=gan trains on target classes of digits ('5', '6')",
    ),
    (
        "all-classes-are-targets-with-a-source",
        "train",
        _args("data.classes=null"),
        "data.classes=null makes all 10 classes of digits target classes",
    ),
    (
        "image-folder-with-the-default-source",
        "train",
        lambda t: _image_folder(t, classes=6, strategy="finetune"),
        "set data.classes and source.classes to disjoint classes",
    ),
    # weights that are not finite: named by where they come from, not "lower the lr"
    ("nan-weights-in-a-checkpoint-source", "train", _nan_checkpoint_source, "are not finite"),
    (
        "nan-weights-in-a-cache-entry",
        "train",
        _nan_cache_entry,
        "the weights of source=pretrain (cache entry",
    ),
    # damaged cache entries are hash-checked: rebuilt, or one line in a read-only cache
    (
        "null-source-json-in-a-read-only-cache",
        "train",
        Faulty(_null_source_json, _read_only_cache),
        "is incomplete or corrupt and cannot be built",
    ),
    (
        "corrupt-gan-generator-in-a-read-only-cache",
        "train",
        Faulty(_corrupt_gan_generator, _read_only_cache),
        "is incomplete or corrupt and cannot be built",
    ),
    # a read-only or full disk: one line naming the place
    (
        "read-only-run-directory",
        "train",
        _read_only(lambda tmp: [*SCRATCH_1, f"hydra.run.dir={tmp / READ_ONLY / 'run'}"]),
        "cannot write the run directory: Read-only file system",
    ),
    (
        "read-only-sweep-directory",
        "train",
        _read_only(lambda tmp: [*SCRATCH_1, f"hydra.sweep.dir={tmp / READ_ONLY / 's'}", "-m"]),
        "cannot write the run directory: Read-only file system",
    ),
    (
        "full-disk-during-a-checkpoint",
        "train",
        Faulty(_args(*SCRATCH_1), _full_disk_in_checkpoints),
        "(No space left on device); the checkpoints written before are intact",
    ),
    (
        "full-disk-writing-results",
        "train",
        Faulty(_args(*SCRATCH_1), _full_disk_on_results),
        "No space left on device; free space, then run again",
    ),
    # what eval.py and the transferlab commands are given
    (
        "eval-a-run-directory",
        "eval",
        lambda tmp: [f"ckpt_path={_finished_run()}"],
        "is a directory; give a checkpoint file, e.g. ",
    ),
    (
        "eval-a-transfer-gan-checkpoint",
        "eval",
        lambda tmp: [f"ckpt_path={_gan_checkpoint()}"],
        "is a strategy=transfer_gan checkpoint",
    ),
    (
        "export-a-transfer-gan-checkpoint",
        "transferlab",
        lambda tmp: ["export", _gan_checkpoint()],
        "holds no classifier weights",
    ),
    ("export-missing-checkpoint", "transferlab", _args("export", "/nowhere/x.ckpt"), "not found"),
    # strategy=semisup (issue 19 item 4): all refused before a source is built
    (
        "semisup-unknown-method",
        "train",
        _args("strategy=semisup", "strategy.method=mixmatch"),
        "unknown strategy.method 'mixmatch'; valid: fixmatch, pseudo_label",
    ),
    (
        "semisup-threshold-zero",
        "train",
        _args("strategy=semisup", "strategy.threshold=0"),
        "strategy.threshold=0 is invalid: Input should be greater than 0",
    ),
    (
        "semisup-threshold-above-one",
        "train",
        _args("strategy=semisup", "strategy.threshold=1.5"),
        "strategy.threshold=1.5 is invalid: Input should be less than or equal to 1",
    ),
    (
        "semisup-mu-below-one",
        "train",
        _args("strategy=semisup", "strategy.mu=0"),
        "strategy.mu=0 is invalid: Input should be greater than 0",
    ),
    (
        "semisup-strong-magnitude-out-of-range",
        "train",
        _args("strategy=semisup", "strategy.strong_augment.magnitude=31"),
        "strategy.strong_augment.magnitude=31 is invalid",
    ),
    # weight averaging and Co-Tuning (issue 16)
    (
        "wise-without-source-weights",
        "train",
        _args("source=random", "strategy.wise_alpha=0.5"),
        "strategy.wise_alpha interpolates toward the source's pretrained weights, but "
        "source=random has none",
    ),
    ("wise-alpha-out-of-range", "train", _args("strategy.wise_alpha=1.5"), "wise_alpha=1.5 is"),
    (
        "cotuning-without-source-head",
        "train",
        _args("source=random", "strategy.regularizer=cotuning"),
        "needs the source's classifier head",
    ),
    (
        "soup-of-one-run",
        "transferlab",
        lambda tmp: ["soup", str(_finished_run())],
        "a soup needs at least 2 finished classifier runs; found 1",
    ),
    ("soup-missing-dir", "transferlab", _args("soup", "/nowhere/sweep"), "no such file"),
    (
        "export-into-a-read-only-folder",
        "transferlab",
        _read_only(
            lambda tmp: ["export", _training_checkpoint(), "--out", str(tmp / READ_ONLY / "x")]
        ),
        "export: Read-only file system",
    ),
    (
        "report-into-a-read-only-folder",
        "transferlab",
        _read_only(lambda tmp: ["report", str(_finished_run()), "--out", str(tmp / READ_ONLY)]),
        "report: Read-only file system",
    ),
    # transferlab rank (docs/ranking.md): all refused before a source is built
    (
        "rank-source-without-a-kind",
        "transferlab",
        _args("rank", "--source", "model=resnet8"),
        "--source expects KIND[:KEY=VALUE,...] (e.g. imagenet:model=efficientnet_lite0)",
    ),
    (
        "rank-unknown-source-kind",
        "transferlab",
        _args("rank", "--source", "imagenett"),
        "unknown source 'imagenett'; valid: ",
    ),
    (
        "rank-misspelt-key-of-a-source",
        "transferlab",
        _args("rank", "--source", "pretrain:source.max_epoch=1"),
        "(did you mean 'source.max_epochs'?)",
    ),
    (
        "rank-source-that-changes-the-target",
        "transferlab",
        _args("rank", "--source", "random:data.classes=[1,2]"),
        "data.classes belongs to the target, not a source; give it before the sources",
    ),
    (
        "rank-the-same-source-twice",
        "transferlab",
        _args("rank", "--source", "random", "--source", "random"),
        "--source 'random' is given twice",
    ),
    (
        "rank-against-with-two-sources",
        "transferlab",
        lambda tmp: ["rank", *RANK_SOURCES[:4], "--against", str(tmp)],
        "--against needs at least 3 sources to correlate rankings, got 2",
    ),
    (
        "rank-against-a-sweep-without-the-source",
        "transferlab",
        lambda tmp: ["rank", *RANK_SOURCES, "--against", str(_finished_run())],
        "have no finished run for source 'random' (source=random, model=small_cnn",
    ),
]


def _run_entry(
    entry: str,
    args: list[str],
    tmp_path: Path,
    source_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> int | str | None:
    """Run ``train.py``/``eval.py`` (with the harness's run directory and cache) or the
    ``transferlab`` command with ``args`` in this process; its exit status."""
    if entry == "transferlab":
        return commands_main(args)
    script = "train.py" if entry == "train" else "eval.py"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            script,
            "print_config=false",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.cache_dir={source_cache}",
            *args,
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        (train_main if entry == "train" else eval_main)()
    return exit_info.value.code


@pytest.mark.parametrize(
    ("entry", "setup", "expected"),
    [pytest.param(entry, setup, expected, id=name) for name, entry, setup, expected in CASES],
)
def test_bad_input_gives_one_clear_line(
    entry: str,
    setup: Setup,
    expected: str,
    tmp_path: Path,
    source_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if "fashion_mnist" in str(setup) and not FASHION_DIR.is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    drop_stale_log_handlers()
    monkeypatch.setenv("TRANSFERLAB_ROOT", str(tmp_path))
    monkeypatch.setenv("TL_CATALOGUE_TMP", str(tmp_path))
    monkeypatch.setenv("TL_CATALOGUE_CACHE", str(source_cache))
    # torch's switch that turns weights_only off wherever a caller did not ask for it: every
    # load of ours must stay safe with it set (the pickle cases would run their payload)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(tmp_path)
    overrides = setup(tmp_path)
    if isinstance(setup, Faulty):
        setup.inject(tmp_path, monkeypatch)
    capfd.readouterr()  # what the setup printed
    started = time.time()
    code = _run_entry(entry, overrides, tmp_path, source_cache, monkeypatch)
    elapsed = time.time() - started
    out, err = capfd.readouterr()
    assert code not in (0, None)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-2000:]
    assert expected in errors[0], errors[0]
    assert "Traceback" not in err + out
    assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
    assert not list(tmp_path.rglob("results.json"))
    assert not (tmp_path / PWNED).exists()


def test_export_refuses_a_pickle_with_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TL_CATALOGUE_TMP", str(tmp_path))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert commands_main(["export", str(_evil_checkpoint(tmp_path))]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: refusing to load") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / PWNED).exists()


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 80
