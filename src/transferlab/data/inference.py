"""One image file to a model input exactly as training prepared its images, from the
``preprocessing`` record a run stores in its checkpoints and exports (no training data needed).

Decoding is :func:`transferlab.data.decode.decode_image` (16-bit scaling, alpha on white);
resizing happens where the run's loader did it (``resize="decode"``: PIL, as the image-folder
loader; ``"tensor"``: :func:`transferlab.data.preprocess.to_float`), then the pool's mean/std.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from transferlab.core.errors import CheckpointError
from transferlab.data.decode import decode_image, pixel_limit
from transferlab.data.preprocess import normalize_, to_float

PREPROCESSING_VERSION = 1
REQUIRED = ("decode_channels", "channels", "image_size", "resize", "mean", "std", "class_names")


def check_preprocessing(record: Any, origin: str) -> dict[str, Any]:
    """``record`` as a complete preprocessing record; one error naming ``origin`` otherwise."""
    missing = [k for k in REQUIRED if not isinstance(record, Mapping) or k not in record]
    if missing:
        raise CheckpointError(
            f"{origin} has no preprocessing record ({', '.join(missing)} missing): it was "
            "written before checkpoints carried one (image size, normalisation, class names); "
            "retrain the run with this version and predict with (or export) its new checkpoint"
        )
    if record["resize"] not in ("decode", "tensor"):
        raise CheckpointError(f"{origin}: unknown resize rule {record['resize']!r}")
    return dict(record)


def preprocess_file(path: Path, prep: Mapping[str, Any]) -> torch.Tensor:
    """The image at ``path`` as a normalised float (C, H, W) input (raises ``DataError`` for a
    file that cannot be read)."""
    size = int(prep["image_size"])
    gray = int(prep["decode_channels"]) == 1
    at_decode = size if prep["resize"] == "decode" else None
    array = decode_image(path, gray, at_decode, pixel_limit(None))
    x = to_float(torch.from_numpy(array.copy())[None], size, int(prep["channels"]))
    return normalize_(x, prep["mean"], prep["std"])[0]
