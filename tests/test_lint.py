"""The project's own checks, so that one command (pytest) runs them all."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    result = _tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _tool("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_over_all_of_mlnb() -> None:
    result = _tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
