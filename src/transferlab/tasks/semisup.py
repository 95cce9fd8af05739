"""The data of a semi-supervised run (``strategy=semisup``): the target's data module with the
unlabelled target pool beside its labelled training batches."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from transferlab.core.specs import InputRequirement
from transferlab.data.datamodule import ImageClassificationDataModule
from transferlab.data.strong_augment import StrongAugment
from transferlab.data.target import target_pool
from transferlab.data.unlabelled_pool import WithUnlabelledPool
from transferlab.modules.semisup import SemisupModule

log = logging.getLogger(__name__)


def semisup_data(
    module: SemisupModule,
    datamodule: ImageClassificationDataModule,
    data_cfg: Mapping[str, Any],
    seed: int | None,
    requirement: InputRequirement,
) -> tuple[WithUnlabelledPool, dict[str, Any]]:
    """The data module ``module`` trains on, and what the results record of its pool."""
    pool = target_pool(data_cfg, seed, requirement)
    if pool.split.val.tolist() != datamodule.split.val.tolist():
        raise RuntimeError("the unlabelled pool's validation split differs from the target's")
    strong = None
    if "strong" in module.views:
        strong = StrongAugment(**module.strong_augment, mean=datamodule.mean, std=datamodule.std)
    split_seed = 0 if seed is None else seed
    data = WithUnlabelledPool(
        datamodule, pool.train_set.images, module.mu, module.views, strong, split_seed
    )
    info = {"images": len(pool.train_set), "views": list(module.views), "mu": module.mu}
    log.info(
        "unlabelled target pool: %d images (labels dropped; validation and test left out), "
        "views %s, %d per labelled image",
        info["images"],
        "+".join(module.views),
        module.mu,
    )
    return data, info
