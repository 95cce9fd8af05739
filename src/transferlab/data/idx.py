"""A reader for the IDX format (MNIST, Fashion-MNIST), plain or gzip-compressed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from transferlab.core.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"cannot read IDX file {path}: {err or type(err).__name__} "
            "(truncated or corrupt; delete it and fetch it again)"
        ) from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file with ``ndim`` dimensions; DataError if malformed."""
    path = Path(path)
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header or data[:2] != b"\x00\x00" or data[2] != _UBYTE or data[3] != ndim:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s) "
            f"(bad magic number {data[:4].hex() or 'none'}); fetch it again"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(
            f"{path} holds {len(data) - header:,} bytes of data but its header "
            f"says {expected:,} (shape {shape}); the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
