"""Throughput of a backbone in a plain loop across input sizes, precisions and memory formats:
feature extraction (eval mode, no gradients) and training steps (backbone and a linear head,
AdamW). It answers "how fast is EfficientNet-Lite on this machine, and which settings pay"; the
stack's own figures come from ``transferlab bench`` and ``transferlab.bench.feature_cache``.

    python -m transferlab.bench.backbone_throughput                       # lite0, 32-128 px
    python -m transferlab.bench.backbone_throughput --models efficientnet_lite0 \\
        efficientnet_lite1 --sizes 64 96 --seconds 5 --out benchmark/backbone_throughput.json

Inputs are random tensors of the right shape: only the speed is measured, never accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.bench.reference import autocast
from transferlab.bench.run import machine_info
from transferlab.models.backbones import build_backbone

# the names on the command line -> Lightning's precision names (what reference.autocast takes)
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}


def _rate(step: Callable[[], None], batch: int, seconds: float) -> float:
    """Images/s of ``step`` (one batch) over a window of ``seconds`` after one warm-up step."""
    step()
    start, images = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        images += batch
    return images / (time.perf_counter() - start)


def measure(
    model: str,
    size: int,
    precision: str,
    channels_last: bool,
    seconds: float = 3.0,
    infer_batch: int = 128,
    train_batch: int = 64,
    num_classes: int = 10,
    compiled: bool = False,
) -> dict[str, Any]:
    """Feature-extraction and training images/s of ``model`` at ``size`` px (3 channels);
    ``compiled`` adds feature extraction through torch.compile with frozen weights (what
    ``perf.compile_features`` runs) and the seconds its compilation took."""
    torch.manual_seed(0)
    backbone = build_backbone(model, in_chans=3, input_size=size)
    net = nn.Sequential(backbone, nn.Linear(backbone.num_features, num_classes))
    memory = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    x_infer = torch.randn(infer_batch, 3, size, size).contiguous(memory_format=memory)
    x_train = torch.randn(train_batch, 3, size, size).contiguous(memory_format=memory)
    y_train = torch.randint(0, num_classes, (train_batch,))

    def infer() -> None:
        with torch.inference_mode(), autocast(PRECISIONS[precision]):
            backbone(x_infer)

    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def train() -> None:
        with autocast(PRECISIONS[precision]):
            loss = F.cross_entropy(net(x_train), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    backbone.eval()
    features = _rate(infer, infer_batch, seconds)
    row: dict[str, Any] = {
        "model": model,
        "size": size,
        "precision": precision,
        "channels_last": channels_last,
        "features_images_per_s": round(features, 1),
    }
    if compiled:
        row.update(_compiled_rate(backbone, x_infer, precision, seconds))
    net.train()
    row["train_images_per_s"] = round(_rate(train, train_batch, seconds), 1)
    return row


def _compiled_rate(
    backbone: nn.Module, inputs: torch.Tensor, precision: str, seconds: float
) -> dict[str, float]:
    """Feature extraction through ``pooled_features``' compiled path: the first call's
    seconds (compiling; inductor's on-disk cache may make it short) and the images/s after."""
    from transferlab.models.features import frozen_compiled

    with frozen_compiled(backbone) as run:

        def infer() -> None:
            with torch.no_grad(), autocast(PRECISIONS[precision]):
                run(inputs)

        started = time.perf_counter()
        infer()
        compile_s = time.perf_counter() - started
        rate = _rate(infer, len(inputs), seconds)
    return {"compile_s": round(compile_s, 1), "features_compiled_images_per_s": round(rate, 1)}


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    compiled = any("features_compiled_images_per_s" in row for row in rows)
    extra = " compiled features (img/s) | compiling (s) |" if compiled else ""
    lines = [
        "| model | px | precision | channels_last | features (img/s) |"
        + extra
        + " training (img/s) |",
        "|---|---|---|---|---|" + ("---|---|" if compiled else "") + "---|",
    ]
    for row in rows:
        cells = ""
        if compiled:
            rate = row.get("features_compiled_images_per_s")
            cells = f" {rate:.0f} | {row['compile_s']:.1f} |" if rate is not None else " – | – |"
        lines.append(
            f"| {row['model']} | {row['size']} | {row['precision']} | "
            f"{'on' if row['channels_last'] else 'off'} | {row['features_images_per_s']:.0f} |"
            + cells
            + f" {row['train_images_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 96, 128])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window per figure")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time feature extraction through torch.compile with frozen weights",
    )
    parser.add_argument(
        "--channels-last",
        choices=("both", "on", "off"),
        default="both",
        help="memory formats to measure",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmark/backbone_throughput.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    formats = {"both": (False, True), "on": (True,), "off": (False,)}[args.channels_last]
    for model, size, precision, channels_last in itertools.product(
        args.models, args.sizes, args.precisions, formats
    ):
        row = measure(
            model, size, precision, channels_last, seconds=args.seconds, compiled=args.compile
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=1) + "\n")
    print(to_markdown(rows))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
