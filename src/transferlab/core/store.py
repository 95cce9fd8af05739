"""Content hashing and atomic writes: what every cache, results file and checkpoint relies on."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:  # torch loads where tensors are hashed: the CLI's start-up needs this module
    import torch


def config_hash(payload: Mapping[str, Any], length: int = 16) -> str:
    """A stable hash of a JSON-able config (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# options added after runs and cache entries already existed, by config section, with the
# value that reproduces the earlier behaviour: at that value they are left out of every
# identity (so those runs resume and those sources and features are found again), and a
# report reads them into older runs' configs (so old and new runs share rows)
LATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"pool_first": False},
    "strategy": {"test_time_flip": False},
}


def without_late_defaults(section: str, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` (the ``section`` node of a config) less the options of :data:`LATE_DEFAULTS`
    that are at their default."""
    late = LATE_DEFAULTS.get(section, {})
    return {k: v for k, v in cfg.items() if not (k in late and v == late[k])}


def identity_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``model_cfg`` as it enters a cache key or run hash (late options at their default
    left out)."""
    return without_late_defaults("model", model_cfg)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# less free space than this where a run starts is a full disk (its configs, logs and first
# checkpoint need more)
MIN_FREE_BYTES = 256 * 1024


def ensure_writable_dir(path: Path, min_free: int = MIN_FREE_BYTES) -> Path:
    """Create ``path`` (and its parents) if needed and check that a file can be created in it
    and that ``min_free`` bytes are free there; an ``OSError`` naming ``path`` otherwise (a
    read-only file system, no permission, a full disk). A file system that reports no size
    (some network and FUSE mounts) is not checked for space."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.")
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    os.close(fd)
    os.unlink(probe)
    stats = os.statvfs(path)
    if stats.f_blocks and stats.f_bavail * stats.f_frsize < min_free:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return path


def _file_mode() -> int:
    """The mode ``open`` gives a new file under this process's umask (``mkstemp`` gives 0600,
    which would hide results and shared cache entries from other users)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """The SHA-256 of named tensors (names, dtypes, shapes and bytes; name order does not
    matter): e.g. a module's ``state_dict()``."""
    import torch  # noqa: PLC0415 - loaded here so that importing this module stays light

    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file in the same directory
    (same file system), which is flushed to disk and renamed over ``path``. If anything fails
    (a full disk: ``OSError``), the temporary file is removed and ``path`` is left as it was.
    The file gets the usual permissions (as ``open`` would create it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    atomic_write(path, lambda handle: handle.write(text.encode()))
