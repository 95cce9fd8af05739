"""A backbone pretrained self-supervised (``source.method``: simclr, moco, byol, simsiam,
barlowtwins, vicreg; modules/ssl.py) on unlabelled images, built on demand and cached.

The data modes and the held-out split are those of :mod:`transferlab.sources.unlabelled`
(``data: source``: the images of ``source.classes``; ``data: target_pool``: the target's training
pool without labels). The weights of the last epoch are kept: no epoch is chosen by labels. The
kNN accuracy of the pooled features (held-out images against the pretraining images, by their
labels; never the target's validation or test images) is logged every epoch and stored in the
entry's ``source.json`` with the random initialisation's (``knn_acc_init``) for comparison.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import save_file

from transferlab.core.checkpoint import cpu_state
from transferlab.core.schema import check_arguments
from transferlab.models import Backbone
from transferlab.modules.callbacks import DivergenceGuard
from transferlab.modules.ssl import (
    SSL_METHODS,
    KnnProbe,
    SSLModule,
    TwoViewAugment,
    lightly_parts,
)
from transferlab.sources.base import register_source
from transferlab.sources.cache import ENTRY_META
from transferlab.sources.training import SOURCE_LR_HINT, source_trainer
from transferlab.sources.unlabelled import UnlabelledSource, image_loader, pretraining_pool

log = logging.getLogger(__name__)

MODULE_KEYS = (
    "method",
    "projection_dim",
    "hidden_dim",
    "temperature",
    "momentum",
    "memory_bank_size",
    "augment",
)
FORMAT_VERSION = 1


@register_source("ssl")
class SSLSource(UnlabelledSource):
    """Self-supervised pretraining of the backbone (SimCLR, BYOL, SimSiam, ...) with
    lightly's losses and heads; the backbone is transferred, the heads are dropped."""

    format_version = FORMAT_VERSION
    # how the features are probed, not what is built
    non_identity = ("knn_k", "knn_temperature", "knn_bank_size")

    def check(self, model_cfg: Mapping[str, Any]) -> None:
        super().check(model_cfg)
        SSL_METHODS.get(str(self.cfg.get("method")))
        values = {k: self.cfg[k] for k in MODULE_KEYS if self.cfg.get(k) is not None}
        check_arguments("source", values, [SSLModule.__init__], accepted=MODULE_KEYS)
        TwoViewAugment(**dict(self.cfg.get("augment") or {}))
        lightly_parts()

    def describe(self) -> str:
        return f"{self.cfg.get('method')}, data={self.cfg.get('data', 'source')}"

    def prepare(
        self, model_cfg: Mapping[str, Any], input_spec: Mapping[str, Any]
    ) -> tuple[Backbone, dict[str, Any]]:
        backbone, info = super().prepare(model_cfg, input_spec)
        meta = json.loads((Path(info["source_dir"]) / ENTRY_META).read_text())
        extra = {"source_method": meta.get("method"), "source_knn_acc": meta.get("knn_acc")}
        return backbone, {**info, **extra}

    def train(
        self,
        entry: Path,
        weights_path: Path,
        model_cfg: Mapping[str, Any],
        input_spec: Mapping[str, Any],
    ) -> dict[str, Any]:
        return train_ssl(self, weights_path, model_cfg, input_spec)


def knn_probe(source_cfg: Mapping[str, Any], pool: Any, seed: int) -> KnnProbe:
    """The kNN probe of a pool: at most ``knn_bank_size`` pretraining images (a seeded
    subset) as the bank, the held-out images as queries."""
    size = int(source_cfg.get("knn_bank_size") or len(pool.train))
    order = torch.randperm(len(pool.train), generator=torch.Generator().manual_seed(seed))
    keep = order[:size].sort().values
    return KnnProbe(
        pool.train[keep],
        pool.train_labels[keep],
        pool.held,
        pool.held_labels,
        k=int(source_cfg.get("knn_k", 20)),
        temperature=float(source_cfg.get("knn_temperature", 0.1)),
    )


def train_ssl(
    source: SSLSource,
    weights_path: Path,
    model_cfg: Mapping[str, Any],
    input_spec: Mapping[str, Any],
) -> dict[str, Any]:
    """Pretrain the backbone self-supervised, write it to ``weights_path``; return the
    entry's metadata (losses and kNN accuracies)."""
    started = time.time()
    cfg = source.cfg
    seed = int(cfg.get("seed", 0))
    pool = pretraining_pool(cfg, input_spec)
    L.seed_everything(seed, workers=True, verbose=False)
    shape = tuple(int(s) for s in pool.train.shape[1:])
    backbone = source.build(model_cfg, {"channels": shape[0], "image_size": shape[1]})
    probe = knn_probe(cfg, pool, seed)
    knn_init = probe.accuracy(backbone)
    module = SSLModule(
        backbone,
        knn=probe,
        optimizer=cfg.get("optimizer"),
        scheduler=cfg.get("scheduler"),
        **{k: cfg[k] for k in MODULE_KEYS if cfg.get(k) is not None},
    )
    guard = DivergenceGuard(f"{module.method_name} pretraining", "the SSL loss", SOURCE_LR_HINT)
    trainer = source_trainer(cfg, guard=guard, enable_checkpointing=False, limit_val_batches=0)
    batch_size = int(cfg.get("batch_size", 256))
    loader = image_loader(pool.train, batch_size, shuffle=True, seed=seed, drop_last=True)
    trainer.fit(module, loader)
    save_file(cpu_state(module.backbone), str(weights_path))
    knn = module.knn_history[-1] if module.knn_history else probe.accuracy(module.backbone)
    log.info(
        "%s source: kNN accuracy %.3f on the held-out images (%.3f at initialisation)",
        module.method_name,
        knn,
        knn_init,
    )
    return {
        "kind": "ssl",
        "model": model_cfg["name"],
        "method": module.method_name,
        **pool.info,
        "knn_acc": knn,
        "knn_acc_init": knn_init,
        "knn_acc_per_epoch": list(module.knn_history),
        "knn_k": probe.k,
        "knn_bank_images": len(probe.bank),
        "train_ssl_loss": float(trainer.callback_metrics.get("train/ssl_loss", float("nan"))),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "build_seconds": round(time.time() - started, 2),
    }
