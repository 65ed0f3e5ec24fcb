"""Shared test helpers: notebook builders and paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_notebooks"
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def mlnb(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``mlnb`` command as a user runs it: a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mlnb", *args], capture_output=True, text=True, check=False
    )


def code_cell(source: str, tags: tuple[str, ...] = (), mlnb: dict[str, Any] | None = None) -> dict:
    metadata: dict[str, Any] = {}
    if tags:
        metadata["tags"] = list(tags)
    if mlnb is not None:
        metadata["mlnb"] = mlnb
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": metadata,
        "outputs": [],
        "source": source,
    }


def notebook_json(cells: list[dict]) -> dict:
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture
def write_notebook(tmp_path: Path):
    """Write a notebook made of the given cells and return its path."""

    def write(cells: list[dict], name: str = "notebook.ipynb") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(notebook_json(cells)))
        return path

    return write
