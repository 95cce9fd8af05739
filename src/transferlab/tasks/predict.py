"""``transferlab predict``: top-k classes of new image files from a training checkpoint or a
``.safetensors`` export, prepared exactly as the run prepared its images (the ``preprocessing``
record travels in the file: no training data is read)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from transferlab.core.errors import CheckpointError, ConfigError, DataError
from transferlab.data.inference import check_preprocessing, preprocess_file
from transferlab.modules import ClassifierModule
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.evaluate import check_classifier_checkpoint, rebuild_module

BATCH = 64


@dataclass
class Prediction:
    """One file's top-k (class name, probability) pairs, or why it could not be read."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""


def _read_export(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read {path}: not a safetensors file ({err})") from None
    if metadata.get("format") != "transferlab" or "run_config" not in metadata:
        raise CheckpointError(
            f"{path} is not a transferlab export (no run config in its metadata); export a "
            "training checkpoint with: transferlab export CKPT"
        )
    return state, json.loads(metadata["run_config"])


def load_predictor(path: str | Path) -> tuple[ClassifierModule, dict[str, Any]]:
    """The trained classifier of a ``.ckpt`` or ``.safetensors`` file (read safely) and its
    preprocessing record."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        state, record = _read_export(path)
    else:
        payload, record = load_training_checkpoint(path)
        state = payload["state_dict"]
    check_classifier_checkpoint(path, record["cfg"])
    prep = check_preprocessing(record.get("preprocessing"), str(path))
    names = list(prep["class_names"])
    if path.suffix == ".safetensors":  # only backbone.* and head.* travel in an export
        module = rebuild_module({"state_dict": state}, record, len(names), names, partial=True)
    else:
        module = rebuild_module({"state_dict": state}, record, len(names), names)
    return module.eval(), prep


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and every non-hidden file under the folders named (sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"folder {path} has no files to predict on")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"no such image file or folder: {path}")
    return files


def _batches(files: list[Path], prep: Mapping[str, Any]) -> Iterator[list[tuple[Path, Any]]]:
    """(file, input tensor or error text) in batches of :data:`BATCH`."""
    batch: list[tuple[Path, Any]] = []
    for path in files:
        try:
            batch.append((path, preprocess_file(path, prep)))
        except DataError as err:
            batch.append((path, str(err)))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def predict_files(
    module: ClassifierModule, prep: Mapping[str, Any], files: list[Path], topk: int = 5
) -> list[Prediction]:
    """Top-``topk`` classes and probabilities of each file; unreadable files get an error."""
    if topk < 1:
        raise ConfigError(f"--topk must be at least 1, got {topk}")
    names = list(prep["class_names"])
    k = min(topk, len(names))
    results: list[Prediction] = []
    for batch in _batches(files, prep):
        good = [(p, x) for p, x in batch if isinstance(x, torch.Tensor)]
        tops: dict[Path, list[tuple[str, float]]] = {}
        if good:
            probs = module(torch.stack([x for _, x in good])).float().softmax(dim=1)
            values, indices = probs.topk(k, dim=1)
            for (path, _), v, i in zip(good, values.tolist(), indices.tolist(), strict=True):
                tops[path] = [(names[c], p) for c, p in zip(i, v, strict=True)]
        for path, x in batch:
            error = "" if isinstance(x, torch.Tensor) else x
            results.append(Prediction(str(path), tops.get(path, []), error))
    return results


def write_predictions(predictions: list[Prediction], out: Path, topk: int) -> Path:
    """``out`` as JSON (a ``.json`` suffix) or CSV: ``path, class_1, prob_1, ..., error``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        rows = [
            {
                "path": p.path,
                "top": [{"class": c, "prob": round(v, 6)} for c, v in p.top],
                "error": p.error or None,
            }
            for p in predictions
        ]
        out.write_text(json.dumps(rows, indent=1) + "\n")
        return out
    k = max([len(p.top) for p in predictions] + [0]) or topk
    head = ["path"] + [f"{w}_{i}" for i in range(1, k + 1) for w in ("class", "prob")] + ["error"]
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        for p in predictions:
            cells = [x for c, v in p.top for x in (c, f"{v:.6f}")]
            writer.writerow([p.path, *cells, *[""] * (2 * k - len(cells)), p.error])
    return out


def run_predict(
    checkpoint: str | Path, inputs: Sequence[str | Path], out: Path, topk: int = 5
) -> list[Prediction]:
    """Load ``checkpoint``, predict on ``inputs`` (files or folders), write ``out``."""
    module, prep = load_predictor(checkpoint)
    predictions = predict_files(module, prep, image_files(inputs), topk)
    write_predictions(predictions, out, topk)
    return predictions
