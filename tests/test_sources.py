"""Sources: the pretraining cache, checkpoint files, ImageNet offline errors."""

from __future__ import annotations

import errno
import json
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from transferlab.core.errors import CheckpointError, SourceError, storage_error, storage_line
from transferlab.core.store import file_sha256
from transferlab.models import build_backbone
from transferlab.sources import prepare_backbone, pretrain_source_key
from transferlab.sources.cache import (
    ENTRY_META,
    ENTRY_WEIGHTS,
    FILES_SHA256,
    entry_is_valid,
    get_or_build,
)
from transferlab.sources.weights import apply_backbone_state, load_backbone_state

SPEC = {"channels": 1, "image_size": 8, "normalize": "data"}
MODEL = {
    "name": "small_cnn",
    "small_input": None,
    "min_input_size": 4,
    "width": 8,
    "feature_dim": 16,
}


def _pretrain_cfg(cache: Path, **extra) -> dict:
    cfg = {
        "name": "pretrain",
        "dataset": "digits",
        "classes": [0, 1, 2, 3, 4],
        "val_per_class": 10,
        "batch_size": 64,
        "max_epochs": 2,
        "seed": 0,
        "optimizer": {"name": "adam", "lr": 0.003},
        "scheduler": {"name": "none"},
        "cache_dir": str(cache),
        "accelerator": "cpu",
    }
    cfg.update(extra)
    return cfg


def test_pretrain_source_builds_once_and_is_reused(tmp_path: Path) -> None:
    cfg = _pretrain_cfg(tmp_path)
    start = time.time()
    first, info = prepare_backbone(cfg, MODEL, SPEC)
    build_seconds = time.time() - start
    assert info["source_built_now"] is True
    assert info["source_classes_seen"] == [0, 1, 2, 3, 4]
    assert info["source_test_acc"] > 0.6  # learned the source task, 5 classes: chance is 0.2
    entries = list(tmp_path.glob("pretrain-*/"))
    assert len(entries) == 1 and entries[0].name == f"pretrain-{info['source_key']}"
    start = time.time()
    second, info2 = prepare_backbone(cfg, MODEL, SPEC)
    assert info2["source_built_now"] is False and info2["source_key"] == info["source_key"]
    assert time.time() - start < build_seconds
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])


def test_source_key_follows_the_config_that_builds_it(tmp_path: Path) -> None:
    base = pretrain_source_key(_pretrain_cfg(tmp_path), MODEL, SPEC)
    assert base == pretrain_source_key(_pretrain_cfg(tmp_path / "elsewhere"), MODEL, SPEC)
    assert base != pretrain_source_key(_pretrain_cfg(tmp_path, max_epochs=3), MODEL, SPEC)
    assert base != pretrain_source_key(_pretrain_cfg(tmp_path), {**MODEL, "width": 4}, SPEC)
    assert base != pretrain_source_key(_pretrain_cfg(tmp_path), MODEL, {**SPEC, "channels": 3})


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    cfg = _pretrain_cfg(tmp_path, max_epochs=1)
    _, info = prepare_backbone(cfg, MODEL, SPEC)
    weights = Path(info["source_dir"]) / ENTRY_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])  # a half-written file
    _, again = prepare_backbone(cfg, MODEL, SPEC)
    assert again["source_built_now"] is True


def test_a_damaged_extra_file_or_null_metadata_makes_an_entry_rebuilt(tmp_path: Path) -> None:
    """A GAN entry's generator is hash-checked like its backbone (``files_sha256``), and a
    ``source.json`` holding ``null`` is an invalid entry, not a crash."""
    entry = tmp_path / "gan-abc"
    generator = entry / "generator.safetensors"

    def build(weights: Path) -> dict:
        weights.write_bytes(b"backbone")
        generator.write_bytes(b"generator")
        return {FILES_SHA256: {generator.name: file_sha256(generator)}}

    assert get_or_build(entry, build) == (entry, True)
    assert get_or_build(entry, build) == (entry, False)
    generator.write_bytes(b"generatoR")  # damaged after the build
    assert not entry_is_valid(entry) and get_or_build(entry, build) == (entry, True)
    (entry / ENTRY_META).write_text("null")
    assert not entry_is_valid(entry) and get_or_build(entry, build) == (entry, True)
    assert entry_is_valid(entry)


def test_storage_errors_are_found_behind_other_errors() -> None:
    """torch's writer turns a full disk into a RuntimeError; safetensors names the errno."""
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("unexpected pos 64 vs 4")  # noqa: B904
    except RuntimeError as err:
        assert storage_error(err).errno == errno.ENOSPC
    rust = ValueError("Error while serializing: I/O error: Read-only file system (os error 30)")
    assert storage_error(rust).errno == errno.EROFS
    assert storage_error(ValueError("no")) is None
    assert storage_error(FileNotFoundError(errno.ENOENT, "missing")) is None
    line = storage_line(OSError(errno.EROFS, os.strerror(errno.EROFS), "/x"), "report")
    assert line.startswith("report: Read-only file system: /x; point TRANSFERLAB_ROOT")


def test_checkpoint_sources_load_and_mismatches_are_listed(tmp_path: Path) -> None:
    backbone = build_backbone("small_cnn", in_chans=1, input_size=8, width=8, feature_dim=16)
    state = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "w.ckpt")
    for name in ("w.safetensors", "w.ckpt"):
        loaded, info = prepare_backbone(
            {"name": "checkpoint", "path": str(tmp_path / name)}, MODEL, SPEC
        )
        assert info["source"] == "checkpoint"
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
    other = build_backbone("small_cnn", in_chans=3, input_size=8, width=8, feature_dim=16)
    with pytest.raises(CheckpointError, match="shape mismatch: body.conv1"):
        apply_backbone_state(other, load_backbone_state(tmp_path / "w.ckpt"), "w.ckpt")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone_state(tmp_path / "missing.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_backbone_state(tmp_path / "cut.ckpt")
    with open(tmp_path / "evil.ckpt", "wb") as handle:
        pickle.dump({"state_dict": _RunsCode()}, handle)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_backbone_state(tmp_path / "evil.ckpt")


def test_imagenet_offline_names_cache_and_offline_choices(monkeypatch) -> None:
    monkeypatch.setenv("TRANSFERLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    model = {"name": "resnet18", "small_input": None, "min_input_size": 8}
    with pytest.raises(SourceError) as info:
        prepare_backbone({"name": "imagenet"}, model, {**SPEC, "channels": 3})
    message = str(info.value)
    assert "/nonexistent-torch-home" in message and "source=pretrain" in message
    assert "\n" not in message


def test_source_meta_records_what_it_saw(tmp_path: Path) -> None:
    _, info = prepare_backbone(_pretrain_cfg(tmp_path, max_epochs=1), MODEL, SPEC)
    meta = json.loads((Path(info["source_dir"]) / "source.json").read_text())
    assert meta["classes_seen"] == [0, 1, 2, 3, 4] and meta["dataset"] == "digits"
    assert meta["identity"]["source"]["max_epochs"] == 1


def _prepare_in_child(cache: str) -> bool:
    _, info = prepare_backbone(_pretrain_cfg(Path(cache), max_epochs=3), MODEL, SPEC)
    return bool(info["source_built_now"])


def test_parallel_jobs_build_a_missing_source_once(tmp_path: Path) -> None:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        built = pool.map(_prepare_in_child, [str(tmp_path)] * 2)
    assert sorted(built) == [False, True]
    assert len(list(tmp_path.glob("pretrain-*/"))) == 1
