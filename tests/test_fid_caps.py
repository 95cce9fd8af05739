"""The FID extractor classifier and the discriminator's BatchNorm recalibration never run
longer than the GAN source that asks for them, so a quick experiment's caps reach them too
(issue 19, item 6); full runs keep today's extractor."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from transferlab.sources.fid import EXTRACTOR_TRAINING, capped_training, extractor_source_cfg
from transferlab.sources.gan import recalibration_images


def test_defaults_without_caps_or_with_larger_ones() -> None:
    assert capped_training({}) == EXTRACTOR_TRAINING
    full_gan = {"max_epochs": 5, "limit_train_batches": None}
    assert capped_training({}, full_gan) == EXTRACTOR_TRAINING


def test_caps_lower_the_training_and_explicit_keys_win() -> None:
    quick = {"max_epochs": 1, "limit_train_batches": 20}
    training = capped_training({}, quick)
    assert training["max_epochs"] == 1 and training["limit_train_batches"] == 20
    explicit = {"training": {"max_epochs": 3, "limit_train_batches": 5}}
    training = capped_training(explicit, quick)
    assert training["max_epochs"] == 3 and training["limit_train_batches"] == 5


@pytest.mark.parametrize("experiment", ["methods_quick", "fmnist_unsupervised_quick"])
def test_quick_experiments_cap_the_extractor(make_cfg, experiment: str) -> None:
    cfg = make_cfg(f"experiment={experiment}", "strategy=gan")
    source = OmegaConf.to_container(cfg.source, resolve=True)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert source["name"] == "gan"
    built = extractor_source_cfg(data, source.get("fid") or {}, "/tmp/unused", "cpu", source)
    assert built["max_epochs"] <= source["max_epochs"] <= 1
    assert built["limit_train_batches"] == source["limit_train_batches"] <= 20


def test_batchnorm_recalibration_follows_the_batch_cap() -> None:
    images = torch.arange(1000, dtype=torch.float32).view(1000, 1, 1, 1)
    dm = SimpleNamespace(train_set=SimpleNamespace(images=images))
    assert recalibration_images(dm, {"limit_train_batches": None}) is images
    capped = recalibration_images(dm, {"limit_train_batches": 5, "batch_size": 64, "seed": 0})
    assert len(capped) == 320 and len(set(capped.flatten().tolist())) == 320
    assert len(recalibration_images(dm, {"limit_train_batches": 0.1})) == 100
    assert recalibration_images(dm, {"limit_train_batches": 1.0}) is images
    # an int 1 is one batch (debug=fast_dev_run), not every image as the float 1.0 is
    one = recalibration_images(dm, {"limit_train_batches": 1, "batch_size": 64, "seed": 0})
    assert len(one) == 64
