"""``mlnb run NOTEBOOK --grid GRID.yaml [--jobs N]``: each point a normal recorded, cached run.

Points run as separate ``mlnb run`` processes, ``--jobs`` at a time; the store is safe for
concurrent runs. Not a subcommand of its own: ``mlnb run`` hands over to :func:`run_grid`.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from mlnb.cli.child import run_in_child
from mlnb.grid import load_grid
from mlnb.pipeline import load_pipeline
from mlnb.run.params import yaml_arguments
from mlnb.text_table import format_number, text_table


def run_grid(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.notebook)
    points = load_grid(args.grid, (p.name for p in pipeline.parameters))
    fixed = dict(getattr(args, "parameter", None) or [])
    jobs = max(1, int(getattr(args, "jobs", 1) or 1))
    results: list[dict[str, Any] | None] = [None] * len(points)
    done = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(_run_point, args, {**fixed, **point}): index
            for index, point in enumerate(points)
        }
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            done += 1
            if not args.json:
                status = results[index]["status"]  # type: ignore[index]
                print(f"[{done}/{len(points)}] {status}: {points[index]}", file=sys.stderr)
    rows = [r for r in results if r is not None]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(render_summary(rows, list(points[0]) if points else []))
        for row in rows:
            if row["status"] != "succeeded":
                print(f"mlnb: {point_failure(row)}", file=sys.stderr)
    return 0 if all(r["status"] == "succeeded" for r in rows) else 1


def _run_point(args: argparse.Namespace, parameters: dict[str, Any]) -> dict[str, Any]:
    options = yaml_arguments(parameters)  # typed values; a value may start with '-'
    for name, value in getattr(args, "raw_parameter", None) or []:
        options += ["-r", name, value]
    if getattr(args, "kernel", None):
        options += ["--kernel", args.kernel]
    no_cache = bool(getattr(args, "no_cache", False))
    record, error = run_in_child(args.notebook, options, args.store, no_cache)
    if record is None:
        return {"parameters": parameters, "status": "error", "error": error, "metrics": {}}
    stages = record.get("stages", [])
    return {
        "parameters": parameters,
        "run_id": record.get("run_id"),
        "status": record.get("status"),
        "metrics": record.get("metrics") or {},
        "cached_stages": sum(1 for s in stages if s.get("status") == "cached"),
        "error": record.get("error"),
    }


def point_failure(row: dict[str, Any]) -> str:
    """Why one point of the grid failed, with the cell's own error name and message."""
    from mlnb.run.failure import failure_message

    point = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
    error = row.get("error")
    if isinstance(error, dict):
        record = {"run_id": row.get("run_id"), "error": error}
        return f"point {point}: {failure_message(record)}"
    return f"point {point}: {error or row.get('status')}"


def render_summary(rows: list[dict[str, Any]], names: list[str]) -> str:
    metrics = sorted({m for r in rows for m in r.get("metrics", {})})
    header = [*names, *metrics, "status", "run", "cached"]
    table = [header]
    for row in rows:
        table.append(
            [
                *(str(row["parameters"].get(n, "")) for n in names),
                *(format_number(row.get("metrics", {}).get(m)) for m in metrics),
                str(row.get("status")),
                str(row.get("run_id") or "-"),
                str(row.get("cached_stages", "-")),
            ]
        )
    return "\n".join(text_table(table))
