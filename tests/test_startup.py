"""Start-up: the CLI checks a command line before torch and Lightning load, so a mistake is
answered at once (import time itself is measured by the benchmark, not here)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import types

import lightning
import pytest
from lightning_utilities.core.imports import RequirementCache

from transferlab.core.overrides import trainer_arguments
from transferlab.core.startup import HIDDEN_FROM_TORCHMETRICS, OPT_OUT_VARIABLE, mark_unavailable

needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed"
)


def test_cli_import_loads_neither_torch_nor_lightning() -> None:
    code = "import sys, transferlab.cli; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trainer_arguments_read_without_import_match_the_class() -> None:
    params = inspect.signature(lightning.Trainer.__init__).parameters
    assert trainer_arguments() == frozenset(p for p in params if p != "self")


def _loaded_after_lightning(opt_out: str, entry: str = "transferlab.cli") -> list[str]:
    code = (
        f"import sys, {entry}, lightning, torchmetrics\n"
        "from torchmetrics.utilities.imports import _TRANSFORMERS_GREATER_EQUAL_4_4 as flag\n"
        "print('transformers' in sys.modules, bool(flag))"
    )
    env = {**os.environ, OPT_OUT_VARIABLE: opt_out}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.split()


@needs_transformers
@pytest.mark.parametrize("entry", ["transferlab.cli", "transferlab.commands"])
def test_entry_points_keep_torchmetrics_from_loading_transformers(entry: str) -> None:
    assert _loaded_after_lightning("0", entry) == ["False", "False"]


@needs_transformers
def test_importing_the_library_leaves_torchmetrics_alone() -> None:
    assert _loaded_after_lightning("0", "transferlab.tasks") == ["True", "True"]


@needs_transformers
def test_opt_out_keeps_torchmetrics_transformers_metrics() -> None:
    assert _loaded_after_lightning("1") == ["True", "True"]


def test_mark_unavailable_turns_the_flags_false() -> None:
    module = types.ModuleType("flags")
    module._TRANSFORMERS_AVAILABLE = RequirementCache("torch")  # met, like an installed package
    module._TRANSFORMERS_GREATER_EQUAL_4_4 = RequirementCache("torch>=0.1")
    module._TORCHVISION_AVAILABLE = RequirementCache("torch")
    module._SCIPY_AVAILABLE = RequirementCache("torch")  # not hidden: left as it is
    assert bool(module._TRANSFORMERS_AVAILABLE)
    changed = mark_unavailable(module)
    assert changed == [
        "_TRANSFORMERS_AVAILABLE",
        "_TRANSFORMERS_GREATER_EQUAL_4_4",
        "_TORCHVISION_AVAILABLE",
    ]
    assert not module._TRANSFORMERS_AVAILABLE and not module._TRANSFORMERS_GREATER_EQUAL_4_4
    assert not module._TORCHVISION_AVAILABLE and bool(module._SCIPY_AVAILABLE)


# imported by metrics or features a plain training run does not use; each costs 0.3-1.5 s
# (scipy.signal: torchmetrics' patch for the SRMR audio metric)
NOT_FOR_A_TRAINING_RUN = (
    "transformers",
    "torchvision",
    "matplotlib",
    "peft",
    "sklearn",
    "scipy.signal",
)


def test_the_training_path_imports_none_of_the_heavy_optional_packages() -> None:
    """What train.py's job imports (the tasks, the strategies, Lightning, torchmetrics) leaves
    out the packages only some runs need; each is imported where it is used."""
    code = (
        "import sys, transferlab.cli, transferlab.cli.job, lightning, torchmetrics\n"
        f"print(sorted(set({NOT_FOR_A_TRAINING_RUN!r}) & set(sys.modules)))"
    )
    env = {**os.environ, OPT_OUT_VARIABLE: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_hidden_packages_are_torchmetrics_optional_ones() -> None:
    import torchmetrics.utilities.imports as flags

    for names in HIDDEN_FROM_TORCHMETRICS.values():
        for name in names:
            assert hasattr(flags, name), f"torchmetrics has no flag {name} any more"


def test_skipping_torchmetrics_scipy_patch_leaves_scipy_to_its_metrics() -> None:
    """torchmetrics' __init__ is told scipy is missing, nobody else: its metrics still see scipy,
    and lightning-utilities' ``package_available`` is the original again afterwards."""
    code = (
        "import sys, transferlab.cli, lightning, torchmetrics\n"
        "import lightning_utilities.core.imports as imports\n"
        "from torchmetrics.utilities.imports import _SCIPY_AVAILABLE\n"
        "print('scipy.signal' in sys.modules, bool(_SCIPY_AVAILABLE),\n"
        "      imports.package_available('scipy'),\n"
        "      hasattr(imports.package_available, 'cache_info'),\n"
        "      torchmetrics.package_available is imports.package_available)"
    )
    env = {**os.environ, OPT_OUT_VARIABLE: "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["False", "True", "True", "True", "True"]
