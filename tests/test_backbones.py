"""Backbones: shapes, stage partitions, state_dict round trips, registry errors (all offline)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from transferlab.core.errors import ConfigError, SourceError
from transferlab.models import (
    Backbone,
    LinearHead,
    available_backbones,
    build_backbone,
    imagenet_weights_info,
    register_backbone,
)
from transferlab.models.backbones import _adapt_first_conv, backbone_spec

# (name, options) of every registered backbone but vgg16 (tested separately: it is big).
SMALL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("small_cnn", {}),
    ("lenet5", {}),
    ("cnn_c32_64_64", {}),
    ("resnet8", {}),
    ("resnet20", {}),
    ("resnet18", {}),
    ("resnet34", {}),
    ("resnet50", {}),
    ("timm", {"model_name": "resnet10t"}),
    ("timm", {"model_name": "mobilenetv3_small_050"}),
]
SIZE = 16


def _size(name: str) -> int:
    """SIZE, or the backbone's smallest input where that is larger (cnn_c32_64_64: 18)."""
    return max(SIZE, backbone_spec(name).min_input_size)


def _case_id(case: tuple[str, dict[str, Any]]) -> str:
    return case[1].get("model_name", case[0])


def _assert_partition(backbone: Backbone) -> None:
    """Every parameter of ``backbone`` is in exactly one stage."""
    stages = backbone.stages()
    assert len(stages) == len(backbone.stage_names) >= 1
    owners: dict[int, int] = {}
    for stage in stages:
        for param in stage.parameters():
            owners[id(param)] = owners.get(id(param), 0) + 1
    all_params = {id(p) for p in backbone.parameters()}
    assert set(owners) == all_params
    assert all(count == 1 for count in owners.values())
    assert all(any(True for _ in stage.parameters()) for stage in stages)


def test_registry_lists_all_builders() -> None:
    expected = {
        "small_cnn",
        "resnet8",
        "resnet20",
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg16",
        "timm",
    }
    assert expected <= set(available_backbones())
    assert available_backbones() == sorted(available_backbones())


@pytest.mark.parametrize("case", SMALL_CASES, ids=_case_id)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_forward_shape_and_stages(case: tuple[str, dict[str, Any]], in_chans: int) -> None:
    name, options = case
    size = _size(name)
    backbone = build_backbone(name, in_chans=in_chans, input_size=size, **options)
    assert isinstance(backbone, Backbone) and backbone.name == name
    out = backbone(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, backbone.num_features)
    if name != "timm":  # timm backbones claim 32 px unless the model says otherwise
        assert backbone.min_input_size <= size
    assert backbone.pretrained_cfg == {}
    _assert_partition(backbone)


@pytest.mark.parametrize("case", SMALL_CASES, ids=_case_id)
def test_state_dict_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    name, options = case
    size = _size(name)
    torch.manual_seed(0)
    first = build_backbone(name, in_chans=1, input_size=size, **options).eval()
    torch.manual_seed(1)
    second = build_backbone(name, in_chans=1, input_size=size, **options).eval()
    assert list(first.state_dict()) == list(second.state_dict())
    x = torch.randn(2, 1, size, size)
    second.load_state_dict(first.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))


def test_num_features_and_stage_names() -> None:
    expected = {
        "small_cnn": (128, ["conv1", "conv2", "fc"]),
        "lenet5": (84, ["conv1", "conv2", "fc"]),
        "cnn_c32_64_64": (64, ["conv1", "conv2", "conv3", "fc"]),
        "resnet8": (64, ["stem", "layer1", "layer2", "layer3"]),
        "resnet20": (64, ["stem", "layer1", "layer2", "layer3"]),
        "resnet18": (512, ["stem", "layer1", "layer2", "layer3", "layer4"]),
        "resnet50": (2048, ["stem", "layer1", "layer2", "layer3", "layer4"]),
    }
    for name, (features, stages) in expected.items():
        backbone = build_backbone(name, input_size=_size(name))
        assert (backbone.num_features, backbone.stage_names) == (features, stages), name
    timm_net = build_backbone("timm", input_size=SIZE, model_name="resnet10t")
    assert timm_net.stage_names == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_small_cnn_size_and_options() -> None:
    backbone = build_backbone("small_cnn", in_chans=1, input_size=28)
    assert sum(p.numel() for p in backbone.parameters()) == pytest.approx(420_000, rel=0.01)
    wide = build_backbone(
        "small_cnn",
        in_chans=3,
        input_size=8,
        width=8,
        feature_dim=16,
        dropout=0.5,
        batch_norm=False,
    )
    assert wide(torch.randn(2, 3, 8, 8)).shape == (2, 16)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in wide.modules())
    assert any(isinstance(m, nn.Dropout) for m in wide.modules())
    with pytest.raises(ConfigError, match="input_size >= 4"):
        build_backbone("small_cnn", input_size=2)


def test_small_cnn_pool_first_pools_before_normalising() -> None:
    """conv-pool-BN-ReLU: the same weights and output size, BN on a quarter of the positions;
    the output differs from conv-BN-ReLU-pool (BN statistics differ after pooling)."""
    torch.manual_seed(0)
    plain = build_backbone("small_cnn", in_chans=1, input_size=28, width=4)
    pooled = build_backbone("small_cnn", in_chans=1, input_size=28, width=4, pool_first=True)
    block = pooled.body["conv1"]
    assert [type(m).__name__ for m in block] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    pooled.load_state_dict(plain.state_dict())
    x = torch.randn(8, 1, 28, 28)
    assert pooled(x).shape == plain(x).shape == (8, 128)
    assert not torch.allclose(pooled(x), plain(x))


def test_cifar_resnet_width() -> None:
    backbone = build_backbone("resnet8", input_size=8, width=2)
    assert backbone.num_features == 128
    assert backbone(torch.randn(2, 3, 8, 8)).shape == (2, 128)


def test_small_input_swaps_stem() -> None:
    small = build_backbone("resnet18", in_chans=1, input_size=32, small_input=True)
    assert small.body.stem.conv1.kernel_size == (3, 3)
    assert small.body.stem.conv1.stride == (1, 1)
    assert isinstance(small.body.stem.maxpool, nn.Identity)
    large = build_backbone("resnet18", in_chans=1, input_size=32, small_input=False)
    assert large.body.stem.conv1.kernel_size == (7, 7)
    assert large.body.stem.conv1.in_channels == 1
    assert isinstance(large.body.stem.maxpool, nn.MaxPool2d)
    auto_small = build_backbone("resnet18", input_size=64)
    auto_large = build_backbone("resnet18", input_size=96)
    assert isinstance(auto_small.body.stem.maxpool, nn.Identity)
    assert isinstance(auto_large.body.stem.maxpool, nn.MaxPool2d)


def test_vgg16_forward_and_stages() -> None:
    backbone = build_backbone("vgg16", input_size=32)
    assert backbone.stage_names == ["block1", "block2", "block3", "block4", "block5", "fc"]
    assert all(isinstance(s[-1], nn.MaxPool2d) for s in backbone.stages()[:5])
    _assert_partition(backbone)
    with torch.no_grad():
        assert backbone.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 4096)
    assert backbone.min_input_size == 32


def test_vgg16_one_channel_and_batch_norm() -> None:
    with torch.device("meta"):  # shapes only: no 134 M parameter initialisation
        gray = build_backbone("vgg16", in_chans=1, input_size=32)
        bn = build_backbone("vgg16", input_size=32, batch_norm=True)
    assert gray.body.block1[0].in_channels == 1
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    _assert_partition(gray)
    _assert_partition(bn)


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'nope'; valid: .*resnet18.*small_cnn"):
        build_backbone("nope")


def test_bad_option_names_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="model.depth is not an option.*accepted: .*feature_dim"):
        build_backbone("small_cnn", input_size=8, depth=3)
    with pytest.raises(ConfigError, match="accepted: none"):
        build_backbone("resnet18", width=2)
    with pytest.raises(ConfigError, match=r"model.width=0 is invalid: Input should be greater"):
        build_backbone("resnet20", width=0)
    with pytest.raises(ConfigError, match=r"model.width='wide' is invalid"):
        build_backbone("small_cnn", input_size=8, width="wide")


def test_unknown_timm_model() -> None:
    with pytest.raises(ConfigError, match="unknown timm model 'resnet10x'"):
        build_backbone("timm", model_name="resnet10x")
    with pytest.raises(ConfigError, match="needs model_name"):
        build_backbone("timm")


@pytest.mark.parametrize("name", ["small_cnn", "lenet5", "cnn_c32_64_64", "resnet8", "resnet20"])
def test_no_imagenet_weights(name: str) -> None:
    with pytest.raises(SourceError, match="source=pretrain.*source=checkpoint"):
        build_backbone(name, input_size=_size(name), pretrained=True)
    with pytest.raises(SourceError, match="source=pretrain.*source=checkpoint"):
        imagenet_weights_info(name)


def test_imagenet_weights_info() -> None:
    info = imagenet_weights_info("resnet18")
    assert info["library"] == "torchvision" and info["url"].startswith("https://")
    cache = Path(info["cache_file"])
    assert cache.parent == Path(torch.hub.get_dir()) / "checkpoints"
    assert cache.name == os.path.basename(info["url"])
    assert imagenet_weights_info("vgg16", batch_norm=True)["url"].endswith(".pth")
    assert "vgg16_bn" in imagenet_weights_info("vgg16", batch_norm=True)["cache_file"]
    timm_info = imagenet_weights_info("timm", model_name="resnet10t")
    assert timm_info["library"] == "timm" and timm_info["hf_hub_id"].startswith("timm/")


def test_torchvision_pretrained_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file in the torch.hub cache is loaded offline; 1-channel conv1 sums the RGB kernels."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    import torchvision

    reference = torchvision.models.resnet18()
    cache = Path(imagenet_weights_info("resnet18")["cache_file"])
    cache.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    gray = build_backbone("resnet18", in_chans=1, input_size=224, pretrained=True)
    torch.testing.assert_close(
        gray.body.stem.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(gray.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert gray.pretrained_cfg["mean"] == pytest.approx((0.485, 0.456, 0.406))
    assert gray.pretrained_cfg["input_size"] == (3, 224, 224)
    small = build_backbone("resnet18", in_chans=3, input_size=32, pretrained=True)
    assert small.body.stem.conv1.kernel_size == (7, 7)  # auto keeps a pretrained stem
    torch.testing.assert_close(small.body.stem.conv1.weight, reference.conv1.weight)
    swapped = build_backbone(
        "resnet18", in_chans=3, input_size=32, pretrained=True, small_input=True
    )
    assert swapped.body.stem.conv1.kernel_size == (3, 3)  # asked for: stem re-initialised
    torch.testing.assert_close(
        swapped.body.layer1[0].conv1.weight, reference.layer1[0].conv1.weight
    )


def test_timm_pretrained_from_local_file(tmp_path: Path) -> None:
    import timm

    reference = timm.create_model("resnet10t")
    path = tmp_path / "resnet10t.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone(
        "timm",
        input_size=SIZE,
        pretrained=True,
        model_name="resnet10t",
        model_kwargs={"pretrained_cfg_overlay": {"file": str(path)}},
    )
    torch.testing.assert_close(
        backbone.model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight
    )
    assert set(backbone.pretrained_cfg) == {"mean", "std", "input_size"}
    assert backbone.pretrained_cfg["std"] == pytest.approx((0.229, 0.224, 0.225))


def test_adapt_first_conv_many_channels() -> None:
    conv = nn.Conv2d(3, 8, 3, bias=False)
    adapted = _adapt_first_conv(conv, 6, pretrained=True)
    assert adapted.weight.shape == (8, 6, 3, 3)
    torch.testing.assert_close(adapted.weight[:, :3], conv.weight * 0.5)
    assert _adapt_first_conv(conv, 3, pretrained=True) is conv


def test_timm_stages_cover_top_level_parameters() -> None:
    vit = build_backbone(
        "timm",
        input_size=16,
        model_name="vit_tiny_patch16_224",
        model_kwargs={"img_size": 16, "patch_size": 8, "depth": 2},
    )
    _assert_partition(vit)
    assert vit.stage_names == ["blocks.0", "blocks.1", "head"]
    assert vit.min_input_size == 16
    assert vit(torch.randn(2, 3, 16, 16)).shape == (2, vit.num_features)
    with pytest.raises(ConfigError, match="may not set num_classes"):
        build_backbone("timm", model_name="resnet10t", model_kwargs={"num_classes": 3})


def test_stage_freezing_through_views() -> None:
    backbone = build_backbone("timm", input_size=SIZE, model_name="mobilenetv3_small_050")
    first = backbone.stages()[0]
    first.requires_grad_(False)
    first.eval()
    frozen = {id(p) for p in first.parameters()}
    for param in backbone.parameters():
        assert param.requires_grad == (id(param) not in frozen)
    assert not backbone.model.bn1.training and backbone.model.conv_head.training


def test_register_backbone_and_duplicates() -> None:
    @register_backbone("_test_tiny")
    def _tiny(
        in_chans: int, input_size: int, small_input: bool, pretrained: bool, *, features: int = 4
    ) -> Backbone:
        stages = {"conv": nn.Conv2d(in_chans, features, 1)}
        return Backbone(
            "_test_tiny", stages, features, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        )

    assert "_test_tiny" in available_backbones()
    assert build_backbone("_test_tiny", features=5)(torch.randn(1, 3, 4, 4)).shape == (1, 5)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("_test_tiny")(_tiny)
    with pytest.raises(ValueError, match="tail must have no parameters"):
        Backbone("bad", {"a": nn.Identity()}, 1, tail=nn.Linear(1, 1))


def test_linear_head() -> None:
    head = LinearHead(16, 5, dropout=0.2)
    assert head(torch.randn(3, 16)).shape == (3, 5)
    with pytest.raises(ConfigError):
        LinearHead(16, 0)


def test_seed_cnns_match_the_seeds_at_32_px() -> None:
    """lenet5 and cnn_c32_64_64 at 32 px: the seeds' flattened sizes and parameter counts."""
    lenet = build_backbone("lenet5", in_chans=3, input_size=32)
    assert lenet.body["fc"].fc1.in_features == 16 * 5 * 5
    # seed 002's Net has 62,006 parameters; its fc3 (84*10 + 10) is our head
    assert sum(p.numel() for p in lenet.parameters()) == 62_006 - 850
    keras = build_backbone("cnn_c32_64_64", in_chans=3, input_size=32)
    assert keras.body["fc"].fc1.in_features == 64 * 4 * 4
    # seed 001's Keras model.summary(): 122,570 parameters, of which Dense(10) has 650
    assert sum(p.numel() for p in keras.parameters()) == 122_570 - 650
    assert all(not m.bias.detach().any() for m in keras.modules() if hasattr(m, "bias"))
    with pytest.raises(ConfigError, match="lenet5 needs input_size >= 16"):
        build_backbone("lenet5", input_size=15)
    with pytest.raises(ConfigError, match="cnn_c32_64_64 needs input_size >= 18"):
        build_backbone("cnn_c32_64_64", input_size=17)
