"""User-facing errors: each is reported as one line, never a traceback."""

from __future__ import annotations

import errno
import os
import re


class TransferlabError(Exception):
    """Base class for mistakes a user can fix (bad config, missing data or weights)."""


class ConfigError(TransferlabError):
    """A configuration value that is invalid or a combination that makes no sense."""


class DataError(TransferlabError):
    """A data set that is missing, unreadable, or cannot satisfy the requested split."""


class SourceError(TransferlabError):
    """Pretrained weights that cannot be found, loaded, or built."""


class CheckpointError(TransferlabError):
    """A checkpoint that is missing, unreadable, or built for another model."""


class DivergenceError(TransferlabError):
    """Training produced a NaN or infinite loss."""


# what a full, read-only or protected disk raises: the user fixes the place, not the config
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}
)
FULL_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# how Rust's I/O errors (safetensors) name the errno
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def storage_error(err: BaseException | None) -> OSError | None:
    """The ``OSError`` of a full, read-only or protected disk behind ``err``: ``err`` itself,
    or an error it was raised from or while handling (torch's writer turns a full disk into a
    ``RuntimeError``); None when there is none."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return err
        found = _RUST_OS_ERROR.search(str(err))  # safetensors: "... (os error 28)"
        if found and int(found.group(1)) in STORAGE_ERRNOS:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


# what a run's user does about a read-only or protected place, and about a full disk
RUN_WRITABLE = (
    "point TRANSFERLAB_ROOT (paths.root_dir), hydra.run.dir or TRANSFERLAB_CACHE at a writable "
    "directory"
)
RUN_FULL = "free space, then run again (resume=true continues an interrupted training run)"


def storage_line(
    err: OSError, what: str = "", writable: str = RUN_WRITABLE, full: str = RUN_FULL
) -> str:
    """One line for a storage error: ``<what>: No space left on device: <file>; <full>``
    (``<writable>`` for a read-only or protected place)."""
    reason = err.strerror or type(err).__name__
    where = f": {err.filename}" if err.filename else ""
    fix = full if err.errno in FULL_DISK_ERRNOS else writable
    return f"{what + ': ' if what else ''}{reason}{where}; {fix}"
