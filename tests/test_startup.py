"""Start-up: the CLI checks a command line before torch and Lightning load, so a mistake is
answered at once (import time itself is measured by the benchmark, not here)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import lightning

from transferlab.core.overrides import trainer_arguments


def test_cli_import_loads_neither_torch_nor_lightning() -> None:
    code = "import sys, transferlab.cli; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trainer_arguments_read_without_import_match_the_class() -> None:
    params = inspect.signature(lightning.Trainer.__init__).parameters
    assert trainer_arguments() == frozenset(p for p in params if p != "self")
