"""The FID extractor classifier never trains longer than the GAN source that asks for it, so a
quick experiment's caps reach it too (issue 19, item 6); full runs keep today's extractor."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from transferlab.sources.fid import EXTRACTOR_TRAINING, capped_training, extractor_source_cfg


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
