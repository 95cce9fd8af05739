"""Backbones: feature extractors split into ordered stages, built by name from a registry.

A :class:`Backbone` maps images ``(B, C, H, W)`` to pooled features ``(B, num_features)``.
Its parameters are partitioned into ``stages()`` (input side first) so that transfer
strategies can freeze or unfreeze them stage by stage.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError, SourceError
from transferlab.core.registry import Registry
from transferlab.core.schema import check_arguments

__all__ = [
    "Backbone",
    "available_backbones",
    "build_backbone",
    "imagenet_weights_info",
    "register_backbone",
]

logger = logging.getLogger(__name__)

NO_IMAGENET = (
    "has no ImageNet weights; offline alternatives: source=pretrain (pretrain it on a data set "
    "here) or source=checkpoint source.path=<.ckpt|.safetensors>"
)
# small_input=None (auto) means small_input = input_size <= this, except with ImageNet
# weights (pretrained=True), whose stem auto never replaces
SMALL_INPUT_AUTO_MAX = 64


class Backbone(nn.Module):
    """A feature extractor: runs its stages in order, then a parameter-free ``tail``.

    ``stages`` maps stage names to modules, input side first; every parameter must live in
    exactly one stage. ``tail`` (e.g. global pooling + flatten) must have no parameters.
    ``min_input_size`` is the smallest H/W at which the last stage still sees >= 1 pixel.
    ``pretrained_cfg`` holds ``mean``, ``std`` and ``input_size`` when built with ImageNet
    weights, and is empty otherwise.
    """

    def __init__(
        self,
        name: str,
        stages: Mapping[str, nn.Module] | Iterable[tuple[str, nn.Module]],
        num_features: int,
        tail: nn.Module | None = None,
        min_input_size: int = 1,
        pretrained_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.body = nn.ModuleDict(stages)
        self.tail = tail if tail is not None else nn.Identity()
        if any(True for _ in self.tail.parameters()):
            raise ValueError(f"{name}: the tail must have no parameters; put them in a stage")
        self.num_features = int(num_features)
        self.min_input_size = int(min_input_size)
        self.pretrained_cfg: dict[str, Any] = dict(pretrained_cfg or {})

    @property
    def stage_names(self) -> list[str]:
        """Stage names, input side first."""
        return list(self.body.keys())

    def stages(self) -> list[nn.Module]:
        """Stage modules, input side first (same order as :attr:`stage_names`)."""
        return list(self.body.values())

    def stage_output_modules(self) -> list[nn.Module]:
        """Modules of this network whose forward output is each stage's output (input side
        first): a forward hook on one sees its stage's feature map."""
        return self.stages()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.body.values():
            x = stage(x)
        return self.tail(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"


# --------------------------------------------------------------------------- registry

Builder = Callable[..., Backbone]
_BUILDER_ARGS = ("in_chans", "input_size", "small_input", "pretrained")


@dataclass(frozen=True)
class BackboneSpec:
    """What the project knows of a registered backbone: its builder, where its ImageNet weights
    come from (if any), the smallest input it takes (with its small-input stem: inputs below
    it are resized up), and what else it can serve as: an autoencoder's encoder (its stages run
    alone and its mirrored decoder stays small) or a GAN discriminator's trunk (small enough
    to train adversarially on a CPU)."""

    builder: Builder
    weights_info: Callable[..., dict[str, Any]] | None = None
    min_input_size: int = 1
    can_encode: bool = False
    can_discriminate: bool = False


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(
    name: str,
    weights_info: Callable[..., dict[str, Any]] | None = None,
    *,
    min_input_size: int = 1,
    can_encode: bool = False,
    can_discriminate: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn(in_chans, input_size, small_input, pretrained, *, **opts)``
    with its :class:`BackboneSpec`.

    The builder's keyword-only parameters are the options ``build_backbone`` accepts for
    ``name``. ``weights_info(**opts)`` optionally describes its ImageNet weights.
    """

    def decorator(fn: Builder) -> Builder:
        spec = BackboneSpec(fn, weights_info, min_input_size, can_encode, can_discriminate)
        BACKBONES.register(name, spec)
        return fn

    return decorator


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of backbone ``name`` (a ConfigError listing the valid names otherwise)."""
    return BACKBONES.get(name)


def backbones_that(capability: str) -> tuple[str, ...]:
    """The backbones whose spec has ``capability`` (``can_encode``, ``can_discriminate``)."""
    return tuple(name for name, spec in BACKBONES.items() if getattr(spec, capability))


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`, sorted."""
    return BACKBONES.names()


def _builder(name: str) -> Builder:
    return BACKBONES.get(name).builder


def _accepted_options(fn: Builder) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_options(name: str, kwargs: Mapping[str, Any]) -> None:
    builder = _builder(name)
    check_arguments("model", kwargs, [builder], accepted=_accepted_options(builder))


# model config keys that are not builder keyword arguments
MODEL_META_KEYS = ("name", "small_input", "min_input_size")


def backbone_kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model config's builder keyword arguments (everything but name and input options)."""
    return {k: v for k, v in model_cfg.items() if k not in MODEL_META_KEYS}


def build_backbone(
    name: str,
    in_chans: int = 3,
    input_size: int = 32,
    small_input: bool | None = None,
    pretrained: bool = False,
    **kwargs: Any,
) -> Backbone:
    """Build backbone ``name`` for ``in_chans`` x ``input_size`` x ``input_size`` inputs.

    ``small_input=None`` means auto: True when ``input_size <= 64`` and not ``pretrained`` (it
    adapts ImageNet-style stems to tiny images but never re-initialises a pretrained stem).
    ``pretrained=True`` asks torchvision/timm for ImageNet weights.
    """
    _check_options(name, kwargs)
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}")
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1:
        raise ConfigError(f"input_size must be a positive integer, got {input_size!r}")
    if small_input is None:
        small_input = input_size <= SMALL_INPUT_AUTO_MAX and not pretrained
    return _builder(name)(in_chans, input_size, bool(small_input), bool(pretrained), **kwargs)


def imagenet_weights_info(name: str, **kwargs: Any) -> dict[str, Any]:
    """Where backbone ``name``'s ImageNet weights come from (for cache checks).

    torchvision: ``{"library", "url", "cache_file"}`` (the file ``torch.hub`` stores);
    timm: ``{"library", "hf_hub_id", "url"}``. Raises SourceError when there are none.
    """
    _check_options(name, kwargs)
    weights_info = backbone_spec(name).weights_info
    if weights_info is None:
        raise SourceError(f"backbone '{name}' {NO_IMAGENET}")
    return weights_info(**kwargs)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise SourceError(f"backbone '{name}' {NO_IMAGENET}")


def _init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _pool_flatten() -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


# --------------------------------------------------------------------------- small_cnn


@register_backbone("small_cnn", min_input_size=4, can_encode=True, can_discriminate=True)
def _small_cnn(
    in_chans: int,
    input_size: int,
    small_input: bool,
    pretrained: bool,
    *,
    width: PositiveInt = 32,
    feature_dim: PositiveInt = 128,
    dropout: float = 0.0,
    batch_norm: bool = True,
    pool_first: bool = False,
) -> Backbone:
    """LeNet-style CNN: conv(width)-pool, conv(2*width)-pool, fc(feature_dim).

    Each block is conv-BN-ReLU-pool, or with ``pool_first`` conv-pool-BN-ReLU: max-pooling
    before the normalisation and the activation runs them on a quarter of the positions
    (the order of fast CIFAR-10 speed runs such as airbench), about 1.25x faster per step
    on a CPU (docs/benchmarks.md). The fc layer is sized for ``input_size`` (>= 4); other
    input sizes do not fit. ``small_input`` has no effect.
    """
    _no_pretrained("small_cnn", pretrained)
    if input_size < 4:
        raise ConfigError(f"small_cnn needs input_size >= 4, got {input_size}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"small_cnn: dropout must be in [0, 1), got {dropout!r}")

    def conv_block(cin: int, cout: int) -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)
        )
        if pool_first:
            layers["pool"] = nn.MaxPool2d(2)
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(cout)
        layers["relu"] = nn.ReLU(inplace=True)
        if not pool_first:
            layers["pool"] = nn.MaxPool2d(2)
        return nn.Sequential(layers)

    side = input_size // 4
    fc: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=nn.Flatten(1),
        linear=nn.Linear(2 * width * side * side, feature_dim),
        relu=nn.ReLU(inplace=True),
    )
    if dropout > 0:
        fc["dropout"] = nn.Dropout(float(dropout))
    stages = {
        "conv1": conv_block(in_chans, width),
        "conv2": conv_block(width, 2 * width),
        "fc": nn.Sequential(fc),
    }
    return Backbone("small_cnn", stages, feature_dim, min_input_size=4)


# --------------------------------------------------------------------------- seed CNNs


def _conv_relu_pool(cin: int, cout: int, kernel: int, pool: bool = True) -> nn.Sequential:
    """A valid (unpadded) conv, ReLU and, with ``pool``, a 2x2 max-pool."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel), relu=nn.ReLU(inplace=True)
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def _fc_relu(sizes: list[int]) -> nn.Sequential:
    """Flatten, then Linear-ReLU for each consecutive pair of ``sizes``."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten(1))
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers[f"fc{i}"] = nn.Linear(fan_in, fan_out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


@register_backbone("lenet5", min_input_size=16)
def _lenet5(in_chans: int, input_size: int, small_input: bool, pretrained: bool) -> Backbone:
    """LeNet-5 as in seed 002 (the PyTorch CIFAR-10 tutorial net), up to fc2 (84-d features).

    conv 6@5x5-ReLU-pool, conv 16@5x5-ReLU-pool (no padding), fc 120, fc 84; the 10-way fc3
    is the strategy's head. At 32 px the flattened size is 16*5*5 as in the seed; other sizes
    >= 16 get an fc1 sized for them. PyTorch's default initialisation. ``small_input`` has no
    effect.
    """
    _no_pretrained("lenet5", pretrained)
    side = ((input_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(f"lenet5 needs input_size >= 16, got {input_size}")
    stages = {
        "conv1": _conv_relu_pool(in_chans, 6, 5),
        "conv2": _conv_relu_pool(6, 16, 5),
        "fc": _fc_relu([16 * side * side, 120, 84]),
    }
    return Backbone("lenet5", stages, 84, min_input_size=16)


@register_backbone("cnn_c32_64_64", min_input_size=18)
def _cnn_c32_64_64(in_chans: int, input_size: int, small_input: bool, pretrained: bool) -> Backbone:
    """Seed 001's Keras CNN up to its Dense(64) layer (64-d features).

    Conv2D 32@3x3-ReLU-pool, 64@3x3-ReLU-pool, 64@3x3-ReLU (valid padding), flatten, Dense 64
    ReLU; the Dense(10) is the strategy's head (its softmax is in the loss). Keras' default
    initialisation (Glorot-uniform weights, zero biases). At 32 px the flattened size is
    64*4*4 as in the seed. ``small_input`` has no effect.
    """
    _no_pretrained("cnn_c32_64_64", pretrained)
    side = ((input_size - 2) // 2 - 2) // 2 - 2
    if side < 1:
        raise ConfigError(f"cnn_c32_64_64 needs input_size >= 18, got {input_size}")
    stages = {
        "conv1": _conv_relu_pool(in_chans, 32, 3),
        "conv2": _conv_relu_pool(32, 64, 3),
        "conv3": _conv_relu_pool(64, 64, 3, pool=False),
        "fc": _fc_relu([64 * side * side, 64]),
    }
    backbone = Backbone("cnn_c32_64_64", stages, 64, min_input_size=18)
    for module in backbone.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return backbone


# --------------------------------------------------------------------------- CIFAR ResNets


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (1x1 conv-BN shortcut on a change)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _cifar_resnet(name: str, blocks: int, in_chans: int, width: float) -> Backbone:
    chans = [max(1, round(c * width)) for c in (16, 32, 64)]
    stem = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_chans, chans[0], 3, 1, 1, bias=False),
            bn=nn.BatchNorm2d(chans[0]),
            relu=nn.ReLU(inplace=True),
        )
    )
    stages: dict[str, nn.Module] = {"stem": stem}
    cin = chans[0]
    for index, (cout, stride) in enumerate(zip(chans, (1, 2, 2))):
        layer = [
            BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
            for i in range(blocks)
        ]
        stages[f"layer{index + 1}"] = nn.Sequential(*layer)
        cin = cout
    backbone = Backbone(name, stages, chans[-1], _pool_flatten(), min_input_size=4)
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            _init_conv(module)
    return backbone


@register_backbone("resnet8", min_input_size=4, can_encode=True, can_discriminate=True)
def _resnet8(
    in_chans: int, input_size: int, small_input: bool, pretrained: bool, *, width: PositiveFloat = 1
) -> Backbone:
    """CIFAR ResNet-8 (He et al. 2016): 1 BasicBlock per stage, 16/32/64 x ``width`` channels."""
    _no_pretrained("resnet8", pretrained)
    return _cifar_resnet("resnet8", 1, in_chans, width)


@register_backbone("resnet20", min_input_size=4, can_encode=True, can_discriminate=True)
def _resnet20(
    in_chans: int, input_size: int, small_input: bool, pretrained: bool, *, width: PositiveFloat = 1
) -> Backbone:
    """CIFAR ResNet-20 (He et al. 2016): 3 BasicBlocks per stage, 16/32/64 x ``width``."""
    _no_pretrained("resnet20", pretrained)
    return _cifar_resnet("resnet20", 3, in_chans, width)


# --------------------------------------------------------------------------- torchvision


def _tv_weights(arch: str) -> Any:
    """The torchvision DEFAULT weights enum entry of ``arch`` (e.g. ``resnet18``)."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def _tv_info(arch: str) -> dict[str, Any]:
    url = _tv_weights(arch).url
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
    return {"library": "torchvision", "arch": arch, "url": url, "cache_file": cache}


def _tv_pretrained_cfg(weights: Any) -> dict[str, Any]:
    transform = weights.transforms()
    size = int(list(transform.crop_size)[0])
    return {
        "mean": tuple(transform.mean),
        "std": tuple(transform.std),
        "input_size": (3, size, size),
    }


def _adapt_first_conv(conv: nn.Conv2d, in_chans: int, pretrained: bool) -> nn.Conv2d:
    """``conv`` for ``in_chans`` input channels; pretrained RGB kernels are summed/rescaled
    over channels (timm's ``adapt_input_conv``), otherwise the new conv is freshly initialised.
    """
    if in_chans == conv.in_channels:
        return conv
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    if pretrained:
        from timm.models import adapt_input_conv

        with torch.no_grad():
            new.weight.copy_(adapt_input_conv(in_chans, conv.weight.detach()))
            if conv.bias is not None:
                new.bias.copy_(conv.bias.detach())
        return new
    return _init_conv(new)


def _tv_resnet(
    arch: str, num_features: int, in_chans: int, small_input: bool, pretrained: bool
) -> Backbone:
    import torchvision

    weights = _tv_weights(arch) if pretrained else None
    model = getattr(torchvision.models, arch)(weights=weights)
    if small_input:
        if pretrained:
            logger.warning(
                "model.small_input=true: %s's pretrained 7x7/2 conv1 and max-pool replaced by a "
                "randomly initialised 3x3/1 conv and no max-pool (the rest stays pretrained)",
                arch,
            )
        conv1: nn.Module = _init_conv(nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False))
        maxpool: nn.Module = nn.Identity()
    else:
        conv1, maxpool = _adapt_first_conv(model.conv1, in_chans, pretrained), model.maxpool
    stem = nn.Sequential(OrderedDict(conv1=conv1, bn1=model.bn1, relu=model.relu, maxpool=maxpool))
    stages = {"stem": stem, **{f"layer{i}": getattr(model, f"layer{i}") for i in range(1, 5)}}
    return Backbone(
        arch,
        stages,
        num_features,
        _pool_flatten(),
        min_input_size=8 if small_input else 32,
        pretrained_cfg=_tv_pretrained_cfg(weights) if weights is not None else None,
    )


_RESNET_DOC = """torchvision {arch} without its fc layer ({features}-d pooled features).

``in_chans != 3`` replaces conv1 (from the RGB kernels when pretrained). ``small_input``
replaces the 7x7/2 conv1 by a randomly initialised 3x3/1 conv and drops the max-pool; auto
never does so with ImageNet weights, an explicit ``small_input=true`` does and logs it.
"""


def _make_tv_resnet(arch: str, num_features: int) -> None:
    def build(in_chans: int, input_size: int, small_input: bool, pretrained: bool) -> Backbone:
        return _tv_resnet(arch, num_features, in_chans, small_input, pretrained)

    build.__doc__ = _RESNET_DOC.format(arch=arch, features=num_features)
    build.__name__ = f"_{arch}"
    # resnet50's mirror would be a 25 M-parameter decoder: too heavy to pretrain on a CPU
    encoder = arch != "resnet50"
    register_backbone(
        arch, weights_info=lambda: _tv_info(arch), min_input_size=8, can_encode=encoder
    )(build)


for _arch, _features in (("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)):
    _make_tv_resnet(_arch, _features)


def _vgg16_info(*, batch_norm: bool = False) -> dict[str, Any]:
    return _tv_info("vgg16_bn" if batch_norm else "vgg16")


@register_backbone("vgg16", weights_info=_vgg16_info, min_input_size=32)
def _vgg16(
    in_chans: int,
    input_size: int,
    small_input: bool,
    pretrained: bool,
    *,
    batch_norm: bool = False,
) -> Backbone:
    """torchvision VGG-16 (``vgg16_bn`` with ``batch_norm``), fc7 features (4096-d).

    Stages ``block1``..``block5`` (each ends with its max-pool) and ``fc`` (7x7 adaptive
    avg-pool, flatten, fc6, fc7). Needs inputs >= 32 px; ``small_input`` has no effect.
    """
    import torchvision

    arch = "vgg16_bn" if batch_norm else "vgg16"
    weights = _tv_weights(arch) if pretrained else None
    model = getattr(torchvision.models, arch)(weights=weights)
    features = list(model.features)
    features[0] = _adapt_first_conv(features[0], in_chans, pretrained)
    stages: dict[str, nn.Module] = {}
    block: list[nn.Module] = []
    for layer in features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages[f"block{len(stages) + 1}"] = nn.Sequential(*block)
            block = []
    stages["fc"] = nn.Sequential(
        OrderedDict(avgpool=model.avgpool, flatten=nn.Flatten(1), classifier=model.classifier[:-1])
    )
    return Backbone(
        "vgg16",
        stages,
        4096,
        min_input_size=32,
        pretrained_cfg=_tv_pretrained_cfg(weights) if weights is not None else None,
    )


# --------------------------------------------------------------------------- timm


class _StageView(nn.Module):
    """A group of a timm model's submodules and parameters, shared (not copied)."""

    def __init__(self, modules: list[nn.Module], params: list[nn.Parameter]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)
        for index, param in enumerate(params):
            self.register_parameter(f"param{index}", param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a timm stage view cannot run alone; call the backbone")


class TimmBackbone(Backbone):
    """A timm model (``num_classes=0``) whose stages are views onto its submodules.

    The model runs as timm defines it; ``stages()`` groups its submodules at the
    ``feature_info`` boundaries. ``state_dict`` keys are the timm keys prefixed ``model.``.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: list[tuple[str, list[str], list[str]]],
        num_features: int,
        min_input_size: int,
        pretrained_cfg: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(
            "timm", {}, num_features, min_input_size=min_input_size, pretrained_cfg=pretrained_cfg
        )
        self.model = model
        self.model_name = str(getattr(model, "default_cfg", {}).get("architecture", ""))
        self._groups = groups  # (stage name, module paths, parameter paths); not registered

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _, _ in self._groups]

    def stages(self) -> list[nn.Module]:
        return [
            _StageView(
                [self.model.get_submodule(p) for p in modules],
                [self.model.get_parameter(p) for p in params],
            )
            for _, modules, params in self._groups
        ]

    def stage_output_modules(self) -> list[nn.Module]:
        """Each stage's last module (its ``feature_info`` boundary); the whole model for the
        ``head`` stage after the last boundary."""
        return [
            self.model if name == "head" else self.model.get_submodule(name)
            for name, _, _ in self._groups
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _timm_groups(model: nn.Module) -> list[tuple[str, list[str], list[str]]]:
    """Split ``model`` into stages ending at its ``feature_info`` modules; what follows the
    last one is a ``head`` stage (or joins the last stage when it has no parameters)."""
    try:
        ends = [str(info["module"]) for info in getattr(model, "feature_info", [])]
    except (TypeError, KeyError):
        ends = []
    # Units in registration order: modules that contain a boundary are expanded.
    units: list[tuple[str, str]] = []  # (kind, path), kind "module" or "param"

    def expand(prefix: str, module: nn.Module) -> None:
        units.extend(("param", f"{prefix}{n}") for n, _ in module.named_parameters(recurse=False))
        for child_name, child in module.named_children():
            path = f"{prefix}{child_name}"
            if any(end.startswith(path + ".") for end in ends):
                expand(path + ".", child)
            else:
                units.append(("module", path))

    expand("", model)
    paths = {path for _, path in units}
    ends = [end for end in ends if end in paths]
    if not ends:  # fallback: one stage per top-level child with parameters
        ends = [
            path
            for kind, path in units
            if kind == "module" and _has_params(model.get_submodule(path))
        ]
    groups: list[tuple[str, list[str], list[str]]] = []
    modules: list[str] = []
    params: list[str] = []
    for kind, path in units:
        (modules if kind == "module" else params).append(path)
        if path in ends:
            groups.append((path, modules, params))
            modules, params = [], []
    if modules or params:
        rest = [model.get_submodule(p) for p in modules]
        if params or any(_has_params(m) for m in rest) or not groups:
            groups.append(("head", modules, params))
        else:
            groups[-1][1].extend(modules)
    return groups


def _timm_name(model_name: Any) -> str:
    import timm

    if not isinstance(model_name, str) or not model_name:
        raise ConfigError("backbone 'timm' needs model_name=<a timm model, e.g. resnet18>")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
        raise ConfigError(f"unknown timm model '{model_name}'; {hint}")
    return model_name


def _timm_info(
    *, model_name: str = "", model_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    name = _timm_name(model_name)
    cfg = get_pretrained_cfg(name)
    hf_hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    if not hf_hub_id and not url:
        raise SourceError(f"timm model '{name}' {NO_IMAGENET}")
    return {"library": "timm", "model_name": name, "hf_hub_id": hf_hub_id, "url": url}


@register_backbone("timm", weights_info=_timm_info, min_input_size=32)
def _timm(
    in_chans: int,
    input_size: int,
    small_input: bool,
    pretrained: bool,
    *,
    model_name: str = "",
    model_kwargs: Mapping[str, Any] | None = None,
) -> Backbone:
    """Any timm model by ``model_name`` (``num_classes=0``: pooled pre-logit features).

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``img_size`` for ViTs);
    ``small_input`` has no effect. Stages follow the model's ``feature_info``.
    """
    import timm

    name = _timm_name(model_name)
    extra = dict(model_kwargs or {})
    reserved = {"pretrained", "num_classes", "in_chans"} & set(extra)
    if reserved:
        raise ConfigError(
            f"timm: model_kwargs may not set {', '.join(sorted(reserved))}; "
            "use the backbone options instead"
        )
    try:
        model = timm.create_model(
            name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **extra
        )
    except TypeError as err:
        raise ConfigError(f"timm model '{name}' rejected model_kwargs {extra}: {err}") from None
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    min_size = 32
    if cfg.get("min_input_size"):
        min_size = int(cfg["min_input_size"][-1])
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if cfg.get("fixed_input_size") and img_size:
        min_size = int(img_size[-1])
    pretrained_cfg = None
    if pretrained:
        pretrained_cfg = {
            "mean": tuple(cfg.get("mean", ())),
            "std": tuple(cfg.get("std", ())),
            "input_size": tuple(cfg.get("input_size", ())),
        }
    backbone = TimmBackbone(model, _timm_groups(model), num_features, min_size, pretrained_cfg)
    backbone.model_name = name
    return backbone
