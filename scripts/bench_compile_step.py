"""Time one training step of the 93% speed-run network eager against compiled.

The network of ``experiment=fmnist_speedrun93_bf16`` (pool-first small_cnn, width 32, 256-wide
head, channels_last, bf16 autocast, AdamW, batch 256) in a plain loop over 20 fixed random
batches; ``--compile`` compiles its backbone in place, as ``perf.compile=true`` does. Run each
variant in fresh processes, alternating, with the machine otherwise quiet:

    for r in 1 2 3; do python scripts/bench_compile_step.py; \
        python scripts/bench_compile_step.py --compile; done
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.models.backbones import build_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="compile the backbone")
    parser.add_argument("--steps", type=int, default=150, help="timed steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = build_backbone(
        "small_cnn", in_chans=1, input_size=28, width=32, feature_dim=256, pool_first=True
    )
    model = nn.Sequential(backbone, nn.Linear(256, 10)).to(memory_format=torch.channels_last)
    if args.compile:
        backbone.compile()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(20, 256, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (20, 256), generator=generator)

    def step(i: int) -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(images[i % 20].contiguous(memory_format=torch.channels_last))
        F.cross_entropy(logits.float(), labels[i % 20]).backward()
        optimizer.step()

    start = time.perf_counter()
    step(0)
    first = time.perf_counter() - start
    for i in range(1, 6):  # warm-up
        step(i)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    per_step = 1e3 * (time.perf_counter() - start) / args.steps
    print(f"compiled={args.compile} first step {first:.1f} s, {per_step:.1f} ms/step")


if __name__ == "__main__":
    main()
