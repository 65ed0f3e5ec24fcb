"""``mlnb inspect NOTEBOOK``: the pipeline mlnb reads from a notebook."""

from __future__ import annotations

import argparse
import json

from mlnb.cell_numbers import cell_label, cell_ranges
from mlnb.inspection import declared_dependencies, inferred_dependencies, notes_for, pipeline_json
from mlnb.pipeline import Pipeline, load_pipeline

__all__ = ["add_arguments", "cell_ranges", "render_table", "run"]

HELP = "show the stages, dependencies and parameters mlnb reads from a notebook"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="path to the .ipynb file")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.notebook)
    notes = notes_for(pipeline, args.notebook)
    if args.json:
        print(json.dumps(pipeline_json(pipeline, notes), indent=2, default=str))
    else:
        print(render_table(pipeline))
        for note in notes:
            print(note)
    return 0


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
            row.append(_shorten(", ".join(stage.defines), 48))
        rows.append(tuple(row))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for line in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    if pipeline.setup_cells:
        lines.append(f"setup cells (run before every stage): {cell_ranges(pipeline.setup_cells)}")
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
