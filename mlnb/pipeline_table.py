"""The pipeline mlnb reads from a notebook, as a plain-text table for people.

``mlnb inspect`` prints it and ``%mlnb status`` shows it in the notebook.
"""

from __future__ import annotations

from mlnb.cell_numbers import cell_label, cell_ranges
from mlnb.inspection import declared_dependencies, inferred_dependencies
from mlnb.pipeline import Pipeline
from mlnb.text_table import text_table

__all__ = ["DEFINES_WIDTH", "render_table"]

DEFINES_WIDTH = 48  # a longer list of the names a stage defines is cut


def render_table(pipeline: Pipeline) -> str:
    """The pipeline as a plain-text table for people."""
    kale = pipeline.flavour == "kale"
    flavour = " (Kale tags)" if kale else ""
    lines = [f"{pipeline.notebook}{flavour}: {len(pipeline.stages)} stage(s)"]
    if pipeline.parameters:
        params = ", ".join(f"{p.name}={p.default!r}" for p in pipeline.parameters)
        where = (
            f" ({cell_label(pipeline.parameters_cell)})"
            if pipeline.parameters_cell is not None
            else ""
        )
        lines.append(f"parameters{where}: {params}")
    header = ["#", "stage", "kind", "cells", "depends on"]
    if kale:
        header += ["prev:", "inferred"]
    rows: list[tuple[str, ...]] = [(*header, "model" if kale else "defines")]
    inferred = inferred_dependencies(pipeline)
    for number, stage in enumerate(pipeline.stages, 1):
        row = [
            str(number),
            stage.name,
            stage.kind,
            cell_ranges(stage.cells),
            ", ".join(stage.depends_on) or "-",
        ]
        if kale:
            row += [
                ", ".join(declared_dependencies(stage) or ()) or "-",
                ", ".join(inferred[stage.name]) or "-",
                stage.options.model or "-",
            ]
        else:
            row.append(", ".join(stage.defines))
        rows.append(tuple(row))
    lines += text_table(rows, limits={} if kale else {len(header): DEFINES_WIDTH})
    if pipeline.setup_cells:
        lines.append(f"setup cells (run before every stage): {cell_ranges(pipeline.setup_cells)}")
    return "\n".join(lines)
