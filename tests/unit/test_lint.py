"""ruff and mypy stay clean (the quality bar is part of the suite, so CI enforces it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support import REPO


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(REPO / ".venv" / "bin")) or shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return exe


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "gantry", "actors", "tests", "ops"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
