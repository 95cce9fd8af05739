"""Shared fixtures: offline settings, composing configs, a session-wide source cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # failed hub lookups retry for ~46 s otherwise
os.environ.setdefault("TRANSFERLAB_OFFLINE", "1")

from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from transferlab.core.config import config_dir, register_resolvers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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
