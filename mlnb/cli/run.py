"""``mlnb run NOTEBOOK``: run the pipeline with papermill, reusing unchanged stages."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb.inspection import UNTAGGED
from mlnb.text_table import format_number, text_table

HELP = "run a notebook's pipeline in a fresh kernel, reusing unchanged stages"


def add_parameter_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``-p NAME VALUE`` (repeatable), as papermill takes it: ``mlnb run`` and ``mlnb check``."""
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=help,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="path to the .ipynb file")
    add_parameter_option(
        parser, "set a parameter, typed as papermill types it (True, None, 3, 0.5, text)"
    )
    parser.add_argument(
        "-r",
        "--raw-parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter to a string, as given",
    )
    parser.add_argument(
        "-y",
        "--parameters-yaml",
        "--parameters_yaml",
        dest="parameters_yaml",
        action="append",
        default=[],
        metavar="YAML",
        help="set parameters from a YAML (or JSON) mapping of typed values, as papermill's -y; "
        "for a value that starts with '-', which -p/-r NAME would read as an option: "
        "-y 'name: \"-x\"'",
    )
    parser.add_argument(
        "-f",
        "--parameters-file",
        "--parameters_file",
        dest="parameters_file",
        action="append",
        default=[],
        metavar="FILE",
        help="set parameters from a YAML file, as papermill's -f (files, then -y, then -p, "
        "then -r: the later wins)",
    )
    parser.add_argument(
        "-k",
        "--kernel",
        metavar="NAME",
        help="the Jupyter kernel to run in, as papermill's -k (default: the notebook's "
        "kernelspec, else python3); `jupyter kernelspec list` shows the installed ones",
    )
    parser.add_argument("--no-cache", action="store_true", help="run every stage")
    parser.add_argument("--json", action="store_true", help="print the run record as JSON")
    parser.add_argument("--run-id", help="the id to give the run (default: a new one)")
    parser.add_argument(
        "--grid", metavar="GRID.yaml", help="run every point of a parameter grid (a YAML file)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="with --grid: runs at once (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    if args.grid:
        from mlnb.cli.grid import run_grid

        if args.parameters_yaml or args.parameters_file:
            from mlnb.errors import MlnbError

            raise MlnbError(
                "--grid takes fixed values by -p and -r only",
                fix="put the fixed values into the grid file as one-value lists",
            )
        return run_grid(args)
    from mlnb.run.params import given_with_sources, runner_pairs
    from mlnb.run.progress import Progress, Quiet
    from mlnb.run.runner import run_notebook
    from mlnb.store import dumps

    given, sources = given_with_sources(
        args.parameters_file, args.parameters_yaml, args.parameter, args.raw_parameter
    )
    typed, raw = runner_pairs(given)
    record = run_notebook(
        args.notebook,
        store=args.store,
        parameters=typed,
        raw_parameters=raw,
        parameter_sources=sources,
        no_cache=args.no_cache,
        run_id=args.run_id,
        progress=Quiet() if args.json else Progress(),
        kernel=args.kernel,
    )
    if args.json:
        print(dumps(record))
    else:
        print(summary(record))
        if record["status"] != "succeeded":
            from mlnb.run.failure import failure_message

            print(f"mlnb: {failure_message(record)}", file=sys.stderr)
        if not record["stages"]:
            print(UNTAGGED, file=sys.stderr)
        print(follow_ups(record, args.notebook, args.store, os.getcwd()))
    return 0 if record["status"] == "succeeded" else 1


def summary(record: Mapping[str, Any]) -> str:
    counts: dict[str, int] = {}
    for stage in record["stages"]:
        counts[stage["status"]] = counts.get(stage["status"], 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    line = (
        f"run {record['run_id']} {record['status']} in {record.get('seconds') or 0:.2f}s ({parts})"
    )
    lines = [line]
    if record.get("metrics"):
        lines.append(
            "metrics: " + ", ".join(f"{k}={format_number(v)}" for k, v in record["metrics"].items())
        )
    if record.get("executed_notebook"):
        from mlnb.store_finder import relative

        executed = Path(record["store"], record["executed_notebook"])
        lines.append(f"executed notebook: {relative(executed, Path.cwd())}")
    return "\n".join(lines)


def follow_ups(record: Mapping[str, Any], notebook: str, store: str | None, cwd: str) -> str:
    """The next commands, as typed from ``cwd``; each finds the store this run used."""
    from mlnb.store_finder import relative

    here = Path(cwd)
    source = Path(os.path.abspath(notebook))
    nb = shlex.quote(relative(source, here))
    extra = ""  # --store only when the run's store is not the one beside the notebook
    if store and Path(os.path.abspath(store)) != source.parent / ".mlnb":
        extra = f" --store {shlex.quote(relative(Path(os.path.abspath(store)), here))}"
    run_id = record["run_id"]
    commands = [(f"mlnb runs show {run_id} --notebook {nb}{extra}", "stages, metrics, lineage")]
    if record["status"] == "succeeded":
        commands.append((f"mlnb report {run_id} --notebook {nb}{extra}", "the run as HTML"))
        if record.get("model"):
            commands.append((f"mlnb build {nb}{extra}", "a BentoML service of this run"))
            commands.append((f"mlnb serve {nb}{extra}", "serve it (builds it if needed)"))
    commands.append((f"mlnb runs --notebook {nb}{extra}", "every run of this notebook"))
    rows = [(command, f"# {why}") for command, why in commands]
    return "\n".join(["next:", *text_table(rows, indent="  ")])
