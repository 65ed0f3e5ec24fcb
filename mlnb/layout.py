"""How a notebook's code cells group into setup, parameters and stages, before any analysis.

Two readers produce a :class:`Layout`: :func:`mlnb_layout` for mlnb's own tags and magics
(here) and :func:`mlnb.kale.kale_layout` for Kale-tagged notebooks. The pipeline builder then
analyses and validates a layout the same way whichever reader made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlnb.errors import CellRef, DuplicateStageError
from mlnb.notebook import NotebookFile
from mlnb.tags import StageOptions, read_cell

Flavour = Literal["mlnb", "kale"]


@dataclass
class StageDraft:
    """A stage being collected: its mark and the cells that belong to it."""

    name: str
    kind: str
    options: StageOptions
    cells: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # Kale states dependencies (``prev:``); mlnb infers them from names.
    declared_deps: list[str] | None = None

    def add(self, index: int, source: str) -> None:
        self.cells.append(index)
        self.sources.append(source)


@dataclass
class Layout:
    notebook: str
    flavour: Flavour
    setup_cells: list[int] = field(default_factory=list)
    setup_sources: list[str] = field(default_factory=list)
    parameters_cell: int | None = None
    parameters_source: str = ""
    skipped_cells: list[int] = field(default_factory=list)
    stages: list[StageDraft] = field(default_factory=list)
    # Kale's ``pipeline-metrics`` cell names the metrics instead of a train stage option.
    metrics_cell: int | None = None
    cell_sources: dict[int, str] = field(default_factory=dict)

    def cell_ref(self, index: int) -> CellRef:
        return CellRef.of(index, self.cell_sources.get(index, ""))


def mlnb_layout(notebook: NotebookFile) -> Layout:
    """Group cells by mlnb's tags and ``%%mlnb`` lines."""
    layout = Layout(notebook.path, "mlnb")
    first_cell_of: dict[str, int] = {}
    for cell in notebook.code_cells:
        layout.cell_sources[cell.index] = cell.source
        role = read_cell(cell.index, cell.source, cell.tags, cell.metadata, notebook.path)
        if role.role == "skip":
            layout.skipped_cells.append(cell.index)
        elif role.role == "parameters":
            if layout.parameters_cell is None and "parameters" in cell.tags:
                layout.parameters_cell = cell.index
                layout.parameters_source = role.body
            else:
                layout.skipped_cells.append(cell.index)
        elif role.role == "stage" and role.mark is not None:
            mark = role.mark
            if mark.name in first_cell_of:
                raise DuplicateStageError(
                    f"a second stage is named {mark.name!r} "
                    f"(the first starts at {layout.cell_ref(first_cell_of[mark.name])})",
                    fix=f"give each stage its own name, e.g. mlnb:{mark.kind}:{mark.name}_2 "
                    f"or %%mlnb {mark.kind} --name {mark.name}_2",
                    notebook=notebook.path,
                    cell=layout.cell_ref(cell.index),
                )
            first_cell_of[mark.name] = cell.index
            layout.stages.append(StageDraft(mark.name, mark.kind, mark.options))
            layout.stages[-1].add(cell.index, role.body)
        elif layout.stages:
            layout.stages[-1].add(cell.index, role.body)
        else:
            layout.setup_cells.append(cell.index)
            layout.setup_sources.append(role.body)
    return layout
