"""Issue 20, item 6 (docs/reliability.md "Leakage"): a transfer source never trained on target
classes of the same data set unless ``source.allow_overlap=true`` (then recorded); the shipped
defaults and experiments never overlap; the source cache keys did not change."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import NEEDS_NETWORK
from hydra.core.override_parser.overrides_parser import OverridesParser
from PIL import Image

from transferlab.core.config import available_options
from transferlab.core.errors import ConfigError
from transferlab.core.results import run_hash
from transferlab.data import ImageClassificationDataModule
from transferlab.data.target import target_datamodule
from transferlab.sources import check_source_overlap, make_source, pretrain_source_key
from transferlab.tasks import run_training, to_plain
from transferlab.tasks.classify import source_kind_for

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# the sweep keys that decide which classes a source and its target see
OVERLAP_KEYS = ("strategy", "source", "source.classes", "data.classes", "data", "source.data")


_TARGETS: dict[str, ImageClassificationDataModule] = {}  # loaded once per data config


def _checked(cfg) -> dict:
    """The overlap check of a run of ``cfg`` (nothing is built); its source_info additions."""
    plain = to_plain(cfg)
    kind = source_kind_for(plain)
    source = make_source(plain["source"] if kind != "none" else {"name": "none"})
    data = json.dumps([plain["data"], plain["seed"]], sort_keys=True, default=str)
    if data not in _TARGETS:
        _TARGETS[data] = target_datamodule(plain["data"], plain["seed"], source.requirement)[0]
    return check_source_overlap(source, _TARGETS[data])


def _sweep_overrides(make_cfg, experiment: str) -> list[list[str]]:
    """Every combination of an experiment's swept values for the keys in OVERLAP_KEYS."""
    params = make_cfg(f"experiment={experiment}", with_hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = []
    for key, value in params.items():
        if key not in OVERLAP_KEYS:
            continue
        (override,) = parser.parse_overrides([f"{key}={value}"])
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else []
        axes.append([f"{key}={v}" for v in values or [override.get_value_element_as_str()]])
    return [list(combo) for combo in itertools.product(*axes)] or [[]]


@pytest.mark.parametrize("experiment", sorted(available_options("experiment")))
def test_no_shipped_experiment_trains_a_source_on_its_target_classes(
    make_cfg, experiment: str
) -> None:
    if "fmnist" in experiment and not FASHION_DIR.is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    for overrides in _sweep_overrides(make_cfg, experiment):
        cfg = make_cfg(f"experiment={experiment}", *overrides)
        if cfg.strategy.name in ("zeroshot", "adapt", "transfer_gan") or (
            experiment in NEEDS_NETWORK
        ):
            continue  # other tasks (zero-shot has its own leakage check); ImageNet sources
        recorded = _checked(cfg)
        if cfg.source.get("allow_overlap"):  # fmnist_layer_transfer's BnB control, on purpose
            assert recorded["source_allow_overlap"] is True
            bnb = list(cfg.source.classes) == list(cfg.data.classes)
            assert recorded["source_overlap_classes"] == (list(cfg.data.classes) if bnb else [])
        else:
            assert recorded == {}, (experiment, overrides)


@pytest.mark.parametrize(
    ("data", "strategy"),
    [
        (d, s)
        for d in ("digits", "fashion_mnist")
        for s in ("finetune", "gan", "autoencoder", "scratch")
    ],
)
def test_the_defaults_never_overlap(make_cfg, data: str, strategy: str) -> None:
    if data == "fashion_mnist" and not FASHION_DIR.is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    assert _checked(make_cfg(f"data={data}", f"strategy={strategy}")) == {}


@pytest.mark.parametrize("experiment", ["seed001_cnn_transfer", "seed002_lenet5_cifar10"])
def test_cifar10_seed_sources_never_overlap(make_cfg, experiment: str) -> None:
    """The CIFAR-10 seed systems' sources (classes 0-4) never see the target classes 5-9."""
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.source.name == "pretrain" and cfg.source.dataset == cfg.data.dataset == "cifar10"
    assert not set(cfg.source.classes) & set(cfg.data.classes)
    assert not cfg.source.allow_overlap


def test_cifar10_defaults_never_overlap(make_cfg) -> None:
    """CIFAR-10 cannot be loaded offline: its default classes are compared as configured."""
    cfg = make_cfg("data=cifar10")
    assert not set(cfg.source.classes) & set(cfg.data.classes)
    assert cfg.source.dataset == cfg.data.dataset == "cifar10"


def _folder(root: Path, classes: int) -> Path:
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(5):
            pixels = np.full((8, 8), (30 * label + 7 * i) % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{label}" / f"{i}.png")
    return root


def test_an_image_folder_with_the_default_source_names_what_to_set(make_cfg, tmp_path) -> None:
    root = _folder(tmp_path / "images", 7)
    folder = ("data=image_folder", f"data.root={root}", "data.image_size=8")
    with pytest.raises(ConfigError) as info:
        _checked(make_cfg(*folder))
    line = str(info.value)
    assert "\n" not in line and "data.classes=null makes all 7 classes" in line
    assert "set data.classes and source.classes to disjoint classes" in line
    assert "source.allow_overlap=true" in line
    # disjoint classes of the same folder, or another folder, are fine
    assert _checked(make_cfg(*folder, "data.classes=[5,6]", "source.classes=[0,1,2,3,4]")) == {}
    other = _folder(tmp_path / "other", 5)
    assert _checked(make_cfg(*folder, f"source.root={other}")) == {}


def test_allowed_overlap_is_recorded_in_the_results(make_cfg, tmp_path: Path) -> None:
    overrides = (
        "source.classes=[4,5,6]",
        "source.max_epochs=1",
        "source.limit_train_batches=2",
        "debug=fast_dev_run",
    )
    with pytest.raises(ConfigError, match="source=pretrain trains on target classes"):
        run_training(make_cfg(*overrides), tmp_path / "refused")
    record = run_training(make_cfg(*overrides, "source.allow_overlap=true"), tmp_path / "run")
    info = record["source_info"]
    assert info["source_allow_overlap"] is True and info["source_overlap_classes"] == [5, 6]
    assert info["source_classes_seen"] == [4, 5, 6]


def test_an_autoencoder_on_the_target_pool_is_not_an_overlap(make_cfg) -> None:
    cfg = make_cfg("strategy=autoencoder", "source.data=target_pool", "source.classes=[5,6]")
    assert _checked(cfg) == {}


def test_allow_overlap_leaves_the_source_cache_keys_unchanged(make_cfg) -> None:
    """Entries built before ``allow_overlap`` existed are still found: the default source of
    ``python train.py`` keeps its key, and the option is not part of any key."""
    plain = to_plain(make_cfg())
    source = make_source(plain["source"])
    _, spec = target_datamodule(plain["data"], plain["seed"], source.requirement)
    assert pretrain_source_key(plain["source"], plain["model"], spec) == "32c364f34fd580aa"
    for strategy in ("finetune", "gan", "autoencoder"):
        cfg = to_plain(make_cfg(f"strategy={strategy}"))
        allowed = {**cfg["source"], "allow_overlap": True}
        keys = {make_source(c).key(cfg["model"], spec) for c in (cfg["source"], allowed)}
        assert len(keys) == 1, strategy


def test_late_model_options_at_their_default_keep_keys_and_run_hashes(make_cfg) -> None:
    """``model.pool_first`` came after runs existed: false (its default) leaves the source key
    and the run hash as they were; true changes both."""
    plain = to_plain(make_cfg())
    _, spec = target_datamodule(
        plain["data"], plain["seed"], make_source(plain["source"]).requirement
    )
    without = {k: v for k, v in plain["model"].items() if k != "pool_first"}
    assert pretrain_source_key(plain["source"], without, spec) == "32c364f34fd580aa"
    assert run_hash({**plain, "model": without}) == run_hash(plain)
    pooled = to_plain(make_cfg("model.pool_first=true"))
    assert pretrain_source_key(pooled["source"], pooled["model"], spec) != "32c364f34fd580aa"
    assert run_hash(pooled) != run_hash(plain)
    # strategy.test_time_flip came later too: false is the run hash of a config without it
    strategy = {k: v for k, v in plain["strategy"].items() if k != "test_time_flip"}
    assert plain["strategy"]["test_time_flip"] is False
    assert run_hash({**plain, "strategy": strategy}) == run_hash(plain)
    assert run_hash(to_plain(make_cfg("strategy.test_time_flip=true"))) != run_hash(plain)
