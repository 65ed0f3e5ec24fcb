"""Hints the commands print for people: how to tag a notebook, what a run needs in Jupyter."""

from __future__ import annotations

import re
from pathlib import Path

from mlnb.errors import MlnbError
from mlnb.notebook import read_notebook

UNTAGGED = (
    "hint: no cell opens a stage, so mlnb sees the whole notebook as setup. Mark the first "
    "cell of each stage in one of two ways:\n"
    "  - a cell tag mlnb:data, mlnb:train or mlnb:serve (optionally mlnb:train:NAME), set in "
    "Jupyter's property inspector (the gear icon) or with the mlnb sidebar's stage buttons;\n"
    "  - a first line %%mlnb data|train|serve in the cell (then the notebook needs "
    "%load_ext mlnb in its first cell to run under Jupyter; mlnb run loads it itself)."
)
LOAD_EXT = re.compile(r"^\s*%(re)?load_ext\s+(\S+\s+)*mlnb(\s|$)", re.MULTILINE)
MAGIC_LINE = re.compile(r"^\s*%%mlnb(\s|$)")


def load_ext_notice(notebook: str | Path) -> str | None:
    """A note when ``%%mlnb`` cells have no ``%load_ext mlnb`` before them in the notebook."""
    try:
        cells = read_notebook(notebook).code_cells
    except MlnbError:
        return None
    magic = [c.index for c in cells if MAGIC_LINE.match(_first_line(c.source))]
    if not magic:
        return None
    loads = [c.index for c in cells if LOAD_EXT.search(c.source)]
    if loads and min(loads) < magic[0]:
        return None
    listed = ", ".join(str(i) for i in magic[:5]) + (", ..." if len(magic) > 5 else "")
    return (
        f"note: cell(s) {listed} start with %%mlnb, and no cell before them runs "
        "%load_ext mlnb: mlnb run loads it by itself, but under Jupyter or papermill the cell "
        'fails with "UsageError: Cell magic `%%mlnb` not found". Fix: add a first code cell '
        "%load_ext mlnb"
    )


def _first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")
