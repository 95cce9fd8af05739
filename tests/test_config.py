"""Every option of every config group composes; every experiment runs with fast_dev_run."""

from __future__ import annotations

import pytest
from conftest import NEEDS_NETWORK
from omegaconf import OmegaConf

from transferlab.cli import check_group_choices
from transferlab.core.config import available_options, config_dir, run_id
from transferlab.core.errors import ConfigError, TransferlabError
from transferlab.tasks import run_training

GROUPS = [
    "data",
    "model",
    "source",
    "strategy",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "experiment",
    "hparams_search",
]
ALL_OPTIONS = [(group, option) for group in GROUPS for option in available_options(group)]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert available_options(group), group
    assert {
        "small_cnn",
        "resnet8",
        "resnet20",
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg16",
        "timm",
    } <= set(available_options("model"))
    assert {"digits", "fashion_mnist", "cifar10", "image_folder"} <= set(available_options("data"))


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS)
def test_every_option_composes(make_cfg, group: str, option: str) -> None:
    cfg = make_cfg(f"{group}={option}")
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert plain["data"]["dataset"] and plain["model"]["name"] and plain["strategy"]["name"]


def test_seed_zero_is_a_seed(make_cfg) -> None:
    assert make_cfg().seed == 0
    assert make_cfg("seed=0").seed == 0


def test_run_id_is_unique_per_process() -> None:
    rid = run_id()
    assert rid == run_id()
    date, clock, pid, suffix = rid.split("_")
    assert int(pid) > 0 and len(suffix) == 4 and len(date) == 10 and len(clock) == 8


def test_unknown_group_choice_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        check_group_choices(["model=resnet1000"])
    message = str(info.value)
    assert "\n" not in message and "resnet18" in message and "small_cnn" in message
    with pytest.raises(ConfigError, match=r"unknown strategy 'nope'; valid: .*finetune.*scratch"):
        check_group_choices(["-m", "strategy=finetune,nope"])
    check_group_choices(["model=resnet8", "strategy=finetune,scratch", "data.classes=[1,2]"])


# experiments whose fast_dev_run takes over a minute on 2 cores (they build an ImageNet-sized
# source or extractor) or starts extra processes (digits_ddp: two, about 45 s): in the slow
# suite, which CI runs too
SLOW_FAST_DEV_RUNS = {"seed003_vgg16_zeroshot_fmnist", "digits_ddp"}
# models whose one-batch run takes about 20 s on 2 cores (VGG-16's 138M parameters): slow suite
SLOW_MODELS = {"vgg16"}


@pytest.mark.parametrize(
    "experiment",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_FAST_DEV_RUNS else name
        for name in available_options("experiment")
    ],
)
def test_every_experiment_runs_fast_dev_run(make_cfg, tmp_path, experiment: str) -> None:
    cfg = make_cfg(f"experiment={experiment}", "debug=fast_dev_run")
    if experiment in NEEDS_NETWORK:
        with pytest.raises(TransferlabError) as info:
            run_training(cfg, tmp_path)
        assert "\n" not in str(info.value) and "internet" in str(info.value)
        assert not (tmp_path / "results.json").exists()
        return
    record = run_training(cfg, tmp_path)
    assert record["status"] == "debug"  # a one-batch run: kept out of report tables
    metrics = record["metrics"]
    if "test/fid" in metrics:  # a GAN-to-GAN run is scored by FID against real images
        assert metrics["test/fid"] >= 0.0 and metrics["init/fid"] >= 0.0
    else:
        assert 0.0 <= metrics["test/acc"] <= 1.0
    assert (tmp_path / "results.json").is_file()


@pytest.mark.parametrize("experiment", available_options("experiment"))
def test_every_experiment_states_its_budget(experiment: str) -> None:
    # pre-registration (issue 14): how long it trains, and whether that was fixed in advance
    # or chosen on validation, is written where the numbers come from
    text = (config_dir() / "experiment" / f"{experiment}.yaml").read_text()
    stated = "# Budget:" in text or "# Pre-registered" in text
    assert stated, f"conf/experiment/{experiment}.yaml has no '# Budget:' comment"


def test_experiment_sweeps_are_defined_in_config(make_cfg) -> None:
    params = make_cfg("experiment=fmnist_budgets", with_hydra=True).hydra.sweeper.params
    assert params["data.labels_per_class"] == "1,5,20,100,null"
    assert params["strategy"] == "finetune,scratch" and params["seed"] == "0,1,2,3,4"


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_MODELS else name
        for name in available_options("model")
    ],
)
def test_every_model_trains_with_fast_dev_run(make_cfg, tmp_path, model: str) -> None:
    overrides = [f"model={model}", "strategy=scratch", "debug=fast_dev_run"]
    if model == "timm":
        overrides.append("model.model_name=resnet10t")
    record = run_training(make_cfg(*overrides), tmp_path)
    assert record["identity"]["source"] == "none"
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0


@pytest.mark.slow  # about 20 s on 2 cores
def test_small_inputs_are_resized_for_backbones_that_need_more(make_cfg, tmp_path) -> None:
    record = run_training(
        make_cfg("model=vgg16", "strategy=scratch", "debug=fast_dev_run"), tmp_path
    )
    assert record["config"]["model"]["min_input_size"] == 32
    assert record["test_details"]["class_names"] == ["5", "6", "7", "8", "9"]


def test_configs_ship_inside_the_package() -> None:
    from transferlab.core.config import config_dir

    assert config_dir().parent.name == "transferlab"
    assert (config_dir() / "train.yaml").is_file() and (config_dir() / "eval.yaml").is_file()
