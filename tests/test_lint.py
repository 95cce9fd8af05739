"""The code stays ruff-clean (the project's lint settings are in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO


@pytest.mark.skipif(
    shutil.which("ruff") is None, reason="ruff is a dev extra: pip install -e .[dev]"
)
def test_ruff_check_is_clean() -> None:
    proc = subprocess.run(
        ["ruff", "check", "--quiet", "."], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.skipif(
    shutil.which("lint-imports") is None,
    reason="import-linter is a dev extra: pip install -e .[dev]",
)
def test_layers_import_only_downward() -> None:
    """The layers contract in pyproject.toml (docs/architecture.md): a new upward import, even
    inside a function, fails here."""
    proc = subprocess.run(["lint-imports", "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout
