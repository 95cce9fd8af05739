"""Peak memory of building the seed-000 data module on a CIFAR-format folder (random pixels,
written once under --root) at --image-size px: what issue 19 item 1 measures.

    OMP_NUM_THREADS=1 python scripts/data_memory.py --root /tmp/cifar_fake10k
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cifar_format import accept_unchecked_files, write_cifar_folder  # noqa: E402


def _held_mb(datamodule: object) -> float:
    """MB of the image tensors the data module keeps (stored pixels, or floats before)."""
    total = 0
    for split in ("train_set", "val_set", "test_set"):
        data = getattr(datamodule, split)
        stored = data.pixels if hasattr(data, "pixels") else data.images
        total += stored.nbytes
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--train", type=int, default=9000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    if not (args.root / "cifar-10-batches-py").is_dir():
        write_cifar_folder(args.root, args.train, args.test)
    accept_unchecked_files(setattr)

    from transferlab.data import ImageClassificationDataModule

    start = time.perf_counter()
    datamodule = ImageClassificationDataModule(  # the data block of seed000_resnet18_cifar10
        dataset="cifar10",
        root=str(args.root),
        download=False,
        val_per_class=500,
        image_size=args.image_size,
        batch_size=64,
        normalize=None,
        mean=[0.5],
        std=[0.5],
    )
    datamodule.setup("fit")
    seconds = time.perf_counter() - start
    sizes = [len(getattr(datamodule, s)) for s in ("train_set", "val_set", "test_set")]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"images train/val/test {sizes}, inputs {datamodule.input_shape}, held "
        f"{_held_mb(datamodule):.1f} MB, setup {seconds:.1f} s, peak RSS {peak:.0f} MB"
    )


if __name__ == "__main__":
    main()
