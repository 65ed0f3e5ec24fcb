"""What mlnb tells people about a notebook beside its pipeline: how to tag it, what a run
needs under Jupyter, and each stage's declared and inferred dependencies.

``mlnb inspect`` and the server's inspect route both answer with :func:`pipeline_json`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlnb.cell_numbers import cell_ranges
from mlnb.errors import MlnbError
from mlnb.notebook import NotebookFile, read_notebook
from mlnb.pipeline import Pipeline, Stage

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


def load_ext_notice(notebook: str | Path | NotebookFile) -> str | None:
    """A note when ``%%mlnb`` cells have no ``%load_ext mlnb`` before them in the notebook."""
    try:
        read = notebook if isinstance(notebook, NotebookFile) else read_notebook(notebook)
    except MlnbError:
        return None
    cells = read.code_cells
    magic = [c.index for c in cells if MAGIC_LINE.match(_first_line(c.source))]
    if not magic:
        return None
    loads = [c.index for c in cells if LOAD_EXT.search(c.source)]
    if loads and min(loads) < magic[0]:
        return None
    listed = cell_ranges(magic[:5]) + (", ..." if len(magic) > 5 else "")
    return (
        f"note: cell(s) {listed} start with %%mlnb, and no cell before them runs "
        "%load_ext mlnb: mlnb run loads it by itself, but under Jupyter or papermill the cell "
        'fails with "UsageError: Cell magic `%%mlnb` not found". Fix: add a first code cell '
        "%load_ext mlnb"
    )


def _first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")


def notes_for(pipeline: Pipeline, notebook: str | Path | NotebookFile) -> list[str]:
    """What to tell a person beside the table: how to tag, what the analysis cannot see."""
    notes = [f"note: {n}" for n in getattr(pipeline, "notices", ())]
    if not pipeline.stages:
        notes.append(UNTAGGED)
    magic = load_ext_notice(notebook)
    if magic:
        notes.append(magic)
    return notes


def pipeline_json(pipeline: Pipeline, notes: list[str]) -> dict[str, Any]:
    payload = pipeline.to_json()
    inferred = inferred_dependencies(pipeline)
    for stage, item in zip(pipeline.stages, payload["stages"], strict=True):
        declared = declared_dependencies(stage)
        item.setdefault("declared_depends_on", None if declared is None else list(declared))
        item.setdefault("inferred_depends_on", list(inferred[stage.name]))
    payload["hints"] = notes
    return payload


def declared_dependencies(stage: Stage) -> tuple[str, ...] | None:
    """A Kale step's ``prev:`` names (None for mlnb's tags, which declare none)."""
    declared = getattr(stage, "declared_deps", None)
    return None if declared is None else tuple(declared)


def inferred_dependencies(pipeline: Pipeline) -> dict[str, tuple[str, ...]]:
    """Per stage, the earlier stages whose names it reads (the data flow mlnb infers)."""
    found: dict[str, tuple[str, ...]] = {}
    defined_by: dict[str, str] = {}
    for stage in pipeline.stages:
        own = getattr(stage, "inferred_deps", None)
        if own is None:
            own = tuple(dict.fromkeys(defined_by[n] for n in stage.uses if n in defined_by))
        found[stage.name] = tuple(own)
        for name in stage.defines:
            defined_by[name] = stage.name
    return found
