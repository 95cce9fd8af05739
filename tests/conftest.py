"""Shared fixtures: offline settings, composing configs, a session-wide source cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # failed hub lookups retry for ~46 s otherwise
os.environ.setdefault("TRANSFERLAB_OFFLINE", "1")

import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from transferlab.core.config import RUN_ID_ENV, config_dir, register_resolvers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# experiments whose data or weights come from the internet: offline they must stop at the
# network boundary with one clear line (CIFAR-10 download, ImageNet weights); their
# sources cannot be built here either
NEEDS_NETWORK = {
    "cifar10_resnet18",
    "cifar10_resnet18_quick",
    "seed000_resnet18_cifar10",
    "seed001_cnn_transfer",
    "seed002_lenet5_cifar10",
    "seed003_vgg16_zeroshot",
    "seed004_resnet18_modes",
}


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a fresh command typed in a shell, writing under ``root``
    (``TRANSFERLAB_ROOT``), with hub lookups offline and no inherited run id."""
    env = {**os.environ, "TRANSFERLAB_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    env.pop(RUN_ID_ENV, None)
    return env


def cli_command(script: str, *args: str) -> list[str]:
    """The command line of one of the repository's scripts (``train.py``,
    ``scripts/benchmark.py``, ``scripts/*.sh``) with ``args``; ``script="-m"`` runs a module
    instead: ``cli_command("-m", "transferlab", "report")`` is ``python -m transferlab report``."""
    if script == "-m":
        return [sys.executable, "-m", *args]
    path = str(REPO / script)
    return ["bash", path, *args] if script.endswith(".sh") else [sys.executable, path, *args]


def run_cli(
    script: str, *args: str, root: Path, timeout: int = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``script`` with ``args`` as a separate process under ``root`` (see
    :func:`cli_env`), in ``cwd`` (default ``root``); output captured as text."""
    return subprocess.run(
        cli_command(script, *args),
        env=cli_env(root),
        cwd=cwd or root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drop_stale_log_handlers() -> None:
    """Earlier in-process runs leave logging handlers on pytest's closed capture streams."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(getattr(handler, "stream", None), "closed", False):
                logger.removeHandler(handler)


@pytest.fixture(scope="session")
def source_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One source cache for the whole test session, so each source is built once."""
    return tmp_path_factory.mktemp("cache")


def compose_config(
    name: str,
    overrides: Sequence[str],
    out_dir: Path,
    cache_dir: Path,
    with_hydra: bool = False,
) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as ``python <name>.py`` would, writing under ``out_dir``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            name,
            overrides=[
                f"paths.output_dir={out_dir}",
                f"paths.log_dir={out_dir}/logs",
                f"paths.cache_dir={cache_dir}",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
            return_hydra_config=with_hydra,
        )


@pytest.fixture
def make_cfg(tmp_path: Path, source_cache: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, name='train')``: a composed config writing into tmp_path."""

    def _make(
        *overrides: str, name: str = "train", out: Path | None = None, with_hydra: bool = False
    ) -> DictConfig:
        return compose_config(name, overrides, out or tmp_path, source_cache, with_hydra)

    return _make
