"""A content-addressed cache of built sources: key = hash of the config that builds it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from transferlab.core.errors import SourceError
from transferlab.core.store import atomic_write_text, file_sha256

log = logging.getLogger(__name__)

ENTRY_WEIGHTS = "backbone.safetensors"
ENTRY_META = "source.json"


def entry_is_valid(entry: Path, files: tuple[str, str] = (ENTRY_WEIGHTS, ENTRY_META)) -> bool:
    """Weights and metadata (``files``) both present and the weights' hash matches the
    metadata."""
    weights, meta = entry / files[0], entry / files[1]
    if not (weights.is_file() and meta.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text()).get("weights_sha256")
    except (OSError, json.JSONDecodeError):
        return False
    return recorded == file_sha256(weights)


def get_or_build(
    entry: Path,
    build: Callable[[Path], dict[str, Any]],
    files: tuple[str, str] = (ENTRY_WEIGHTS, ENTRY_META),
) -> tuple[Path, bool]:
    """Return ``entry``, building it first (under a file lock) if it is missing or corrupt.

    A valid entry is read without the lock (nothing is written: a read-only shared cache
    works); an entry is never changed once valid, and a build renames the weights into place
    and writes the metadata last, so a reader never sees a half-built entry as valid.
    ``build(tmp_weights_path)`` writes the weights file and returns metadata; ``files`` name
    the weights and the metadata file (other caches store other payloads). Returns
    ``(entry, built_now)``; a cache that cannot be written when a build is needed is one
    :class:`SourceError` line.
    """
    weights_name, meta_name = files
    if entry_is_valid(entry, files):
        return entry, False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(entry) + ".lock")
        lock.acquire()
    except OSError as err:
        raise SourceError(
            f"the source cache entry {entry.name} is missing and cannot be built in "
            f"{entry.parent} ({err.strerror or type(err).__name__}): point TRANSFERLAB_CACHE "
            "(paths.cache_dir) at a writable directory, or build the source there first"
        ) from None
    try:
        if entry_is_valid(entry, files):  # another process built it while this one waited
            return entry, False
        entry.mkdir(parents=True, exist_ok=True)
        (entry / meta_name).unlink(missing_ok=True)
        tmp_weights = entry / f".{weights_name}.{os.getpid()}.tmp"
        meta = build(tmp_weights)
        meta["weights_sha256"] = file_sha256(tmp_weights)
        os.replace(tmp_weights, entry / weights_name)
        atomic_write_text(entry / meta_name, json.dumps(meta, indent=2, default=str))
        return entry, True
    finally:
        lock.release()


def ensure_entry(
    cache_dir: str | Path,
    kind: str,
    key: str,
    identity: Mapping[str, Any],
    train: Callable[[Path, Path], dict[str, Any]],
) -> tuple[Path, bool]:
    """The cache entry ``<cache_dir>/<kind>-<key>``, built first if missing or corrupt:
    ``train(entry, weights_path)`` writes the weights and returns metadata, to which the key
    and identity are added. Returns ``(entry, built_now)``."""
    entry = Path(cache_dir).expanduser() / f"{kind}-{key}"

    def build(weights_path: Path) -> dict[str, Any]:
        log.info("building source %s-%s: it is not cached yet", kind, key)
        return {**train(entry, weights_path), "key": key, "identity": dict(identity)}

    return get_or_build(entry, build)
