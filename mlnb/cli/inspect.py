"""``mlnb inspect NOTEBOOK``: the pipeline mlnb reads from a notebook."""

from __future__ import annotations

import argparse
import json

from mlnb.cell_numbers import cell_ranges
from mlnb.inspection import notes_for, pipeline_json
from mlnb.pipeline import load_pipeline
from mlnb.pipeline_table import render_table

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
