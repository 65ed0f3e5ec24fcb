"""``mlnb inspect NOTEBOOK``: the pipeline mlnb reads from a notebook."""

from __future__ import annotations

import argparse
import json

from mlnb.pipeline import Pipeline, load_pipeline

HELP = "show the stages, dependencies and parameters mlnb reads from a notebook"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="path to the .ipynb file")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.notebook)
    if args.json:
        print(json.dumps(pipeline.to_json(), indent=2, default=str))
    else:
        print(render_table(pipeline))
    return 0


def render_table(pipeline: Pipeline) -> str:
    """The pipeline as a plain-text table for people."""
    flavour = " (Kale tags)" if pipeline.flavour == "kale" else ""
    lines = [f"{pipeline.notebook}{flavour}: {len(pipeline.stages)} stage(s)"]
    if pipeline.parameters:
        params = ", ".join(f"{p.name}={p.default!r}" for p in pipeline.parameters)
        lines.append(f"parameters: {params}")
    rows = [("#", "stage", "kind", "cells", "depends on", "defines")]
    for number, stage in enumerate(pipeline.stages, 1):
        rows.append(
            (
                str(number),
                stage.name,
                stage.kind,
                cell_ranges(stage.cells),
                ", ".join(stage.depends_on) or "-",
                _shorten(", ".join(stage.defines), 48),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if pipeline.setup_cells:
        lines.append(f"setup cells (run before every stage): {cell_ranges(pipeline.setup_cells)}")
    return "\n".join(lines)


def cell_ranges(cells: tuple[int, ...]) -> str:
    """``(1, 2, 3, 5)`` -> ``"1-3, 5"``."""
    parts: list[str] = []
    start = prev = None
    for index in [*cells, None]:
        if index is not None and prev is not None and index == prev + 1:
            prev = index
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = index
    return ", ".join(parts)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
