"""A content-addressed cache of built sources: key = hash of the config that builds it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from transferlab.core.errors import SourceError, storage_error
from transferlab.core.store import FILE_MODE, atomic_write_text, file_sha256

log = logging.getLogger(__name__)

ENTRY_WEIGHTS = "backbone.safetensors"
ENTRY_META = "source.json"
# metadata key: {file name in the entry: sha256} of the entry's other files (checked on load)
FILES_SHA256 = "files_sha256"


def entry_is_valid(entry: Path, files: tuple[str, str] = (ENTRY_WEIGHTS, ENTRY_META)) -> bool:
    """Weights and metadata (``files``) both present, the metadata a JSON object, and the
    weights' hash (and the hash of every file listed under ``files_sha256``, e.g. a GAN's
    generator) matches the metadata. An entry written before ``files_sha256`` existed is
    checked as before."""
    weights, meta_file = entry / files[0], entry / files[1]
    if not (weights.is_file() and meta_file.is_file()):
        return False
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(meta, dict) or meta.get("weights_sha256") != file_sha256(weights):
        return False
    files = meta.get(FILES_SHA256, {})
    if not isinstance(files, dict):
        return False
    return all(
        (entry / name).is_file() and file_sha256(entry / name) == digest
        for name, digest in files.items()
    )


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
        state = "is incomplete or corrupt" if entry.exists() else "is missing"
        raise SourceError(
            f"the source cache entry {entry.name} {state} and cannot be built in "
            f"{entry.parent} ({err.strerror or type(err).__name__}): point TRANSFERLAB_CACHE "
            "(paths.cache_dir) at a writable directory, or build the source there first"
        ) from None
    try:
        if entry_is_valid(entry, files):  # another process built it while this one waited
            return entry, False
        if entry.exists():
            log.warning("source cache entry %s is incomplete or corrupt: rebuilding it", entry)
        entry.mkdir(parents=True, exist_ok=True)
        (entry / meta_name).unlink(missing_ok=True)
        tmp_weights = entry / f".{weights_name}.{os.getpid()}.tmp"
        try:
            meta = build(tmp_weights)
            meta["weights_sha256"] = file_sha256(tmp_weights)
            for path in entry.iterdir():  # safetensors writes 0600; a shared cache's entries
                if path.is_file():  # are for every user to read
                    os.chmod(path, FILE_MODE)
            os.replace(tmp_weights, entry / weights_name)
            atomic_write_text(entry / meta_name, json.dumps(meta, indent=2, default=str))
        except Exception as err:
            tmp_weights.unlink(missing_ok=True)
            disk = storage_error(err)
            if disk is None:
                raise
            raise SourceError(
                f"the source cache entry {entry.name} could not be written in {entry.parent} "
                f"({disk.strerror}): free space there, or point TRANSFERLAB_CACHE "
                "(paths.cache_dir) at another directory"
            ) from None
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
