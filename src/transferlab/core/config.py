"""Finding the config tree (checkout or installed package), resolvers, and printing configs."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_GROUPS = (
    "data",
    "model",
    "source",
    "strategy",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "debug",
    "hparams_search",
)

_RUN_ID = time.strftime("%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{secrets.token_hex(2)}"
# set by the CLI before Hydra starts, inherited by the processes it launches (joblib workers,
# Lightning's DDP ranks), so they all resolve the same run/sweep directory
RUN_ID_ENV = "TRANSFERLAB_RUN_ID"


def run_id() -> str:
    """This run's id: date, time, process id and a random suffix (``$TRANSFERLAB_RUN_ID`` when
    a parent process set it, so the workers of one command share one directory).

    Two runs started in the same second differ in pid (and suffix), so never share a directory.
    """
    return os.environ.get(RUN_ID_ENV) or _RUN_ID


def share_run_id() -> str:
    """Publish this process's run id to the processes it starts (see :data:`RUN_ID_ENV`)."""
    if not os.environ.get(RUN_ID_ENV):
        os.environ[RUN_ID_ENV] = _RUN_ID
    return os.environ[RUN_ID_ENV]


def register_resolvers() -> None:
    """Register the ``${tl_run_id:}`` resolver used by the hydra run/sweep directories."""
    if not OmegaConf.has_resolver("tl_run_id"):
        OmegaConf.register_new_resolver("tl_run_id", run_id)


def config_dir() -> Path:
    """The config tree: ``$TRANSFERLAB_CONFIG_DIR`` or the one inside the package
    (``src/transferlab/conf``, which a checkout's top-level ``conf/`` links to)."""
    candidates = []
    if os.environ.get("TRANSFERLAB_CONFIG_DIR"):
        candidates.append(Path(os.environ["TRANSFERLAB_CONFIG_DIR"]))
    here = Path(__file__).resolve().parents[1]
    candidates.append(here / "conf")
    for candidate in candidates:
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"transferlab configs not found; looked in {candidates}")


def available_options(group: str) -> list[str]:
    """Names of the options of a config group (the yaml files in ``conf/<group>/``)."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def print_config_tree(
    cfg: DictConfig,
    save_to: Path | None = None,
    order: Sequence[str] = CONFIG_GROUPS,
    show: bool = True,
) -> None:
    """Print the composed config as a rich tree (``show``) and save it as text next to the
    run; neither is cut at the terminal's width."""
    import rich.console
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    widest = 0
    for key in keys:
        if key == "hydra":
            continue
        branch = tree.add(str(key), style="bold")
        value = cfg[key]
        text = (
            OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        )
        widest = max([widest, *(len(line) for line in text.splitlines())])
        branch.add(rich.syntax.Syntax(text, "yaml", word_wrap=False))
    width = widest + 16  # room for the tree's guides
    if show:
        terminal = rich.console.Console()
        rich.console.Console(width=max(terminal.width, width)).print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as handle:
            rich.console.Console(file=handle, width=width, no_color=True).print(tree)
