"""A pretrained ResNet stem is never re-initialised silently (issue 19, item 2): at <= 64 px
``small_input`` auto keeps it with ImageNet weights; an explicit ``true`` logs what it
replaced. The torchvision weights file is faked in a temporary ``TORCH_HOME`` cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import torchvision

from transferlab.models import build_backbone
from transferlab.models.backbones import _tv_info
from transferlab.sources import prepare_backbone

SPEC = {"channels": 3, "image_size": 32, "normalize": "imagenet"}


@pytest.fixture
def fake_resnet18_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A seeded resnet18 state dict where torch.hub caches the ImageNet file (offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TRANSFERLAB_OFFLINE", "1")
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    cache = Path(_tv_info("resnet18")["cache_file"])
    assert str(cache).startswith(str(tmp_path)), cache
    os.makedirs(cache.parent, exist_ok=True)
    torch.save(state, cache)
    return state


def _model(small_input: bool | None) -> dict:
    return {"name": "resnet18", "small_input": small_input, "min_input_size": 8}


def test_auto_keeps_the_pretrained_stem(fake_resnet18_weights: dict, caplog) -> None:
    with caplog.at_level(logging.INFO):
        backbone, info = prepare_backbone({"name": "imagenet"}, _model(None), SPEC)
    conv1 = backbone.body["stem"].conv1
    assert info["source"] == "imagenet" and conv1.kernel_size == (7, 7)
    assert torch.equal(conv1.weight, fake_resnet18_weights["conv1.weight"])
    assert not isinstance(backbone.body["stem"].maxpool, torch.nn.Identity)
    assert "small_input" not in caplog.text


def test_explicit_small_input_logs_what_it_replaced(fake_resnet18_weights: dict, caplog) -> None:
    with caplog.at_level(logging.INFO):
        backbone, _ = prepare_backbone({"name": "imagenet"}, _model(True), SPEC)
    assert backbone.body["stem"].conv1.kernel_size == (3, 3)
    lines = [r.getMessage() for r in caplog.records if "small_input" in r.getMessage()]
    assert len(lines) == 1 and "7x7" in lines[0] and "max-pool" in lines[0], lines
    # the rest stays pretrained
    layer1 = backbone.body["layer1"][0].conv1.weight
    assert torch.equal(layer1, fake_resnet18_weights["layer1.0.conv1.weight"])


def test_without_imagenet_weights_auto_still_swaps_small_stems(caplog) -> None:
    with caplog.at_level(logging.INFO):
        small = build_backbone("resnet18", in_chans=3, input_size=32)
        large = build_backbone("resnet18", in_chans=3, input_size=96)
    assert small.body["stem"].conv1.kernel_size == (3, 3)
    assert large.body["stem"].conv1.kernel_size == (7, 7)
    assert "small_input" not in caplog.text
