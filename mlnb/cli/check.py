"""``mlnb check NOTEBOOK...``: run notebooks (cache-aware) and hold metrics to floors, for CI."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mlnb.check import (
    CheckUsageError,
    NotebookVerdict,
    judge,
    junit_xml,
    parse_floor,
    unused_floors,
)
from mlnb.cli.child import run_in_child
from mlnb.cli.run import add_parameter_option

HELP = "run notebooks and fail when a run fails or a metric is below its floor (for CI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    parser.add_argument(
        "--min",
        dest="floors",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail when a run's METRIC is below VALUE (repeatable)",
    )
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    parser.add_argument("--no-cache", action="store_true", help="run every stage")
    add_parameter_option(parser, "run with this parameter, as `mlnb run -p` (every notebook)")


def run(args: argparse.Namespace) -> int:
    floors = [parse_floor(text) for text in args.floors]
    verdicts: list[NotebookVerdict] = []
    for number, notebook in enumerate(args.notebooks, 1):
        print(f"[{number}/{len(args.notebooks)}] {notebook} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        options = [part for name, value in args.parameter for part in ("-p", name, value)]
        record, error = run_in_child(notebook, options, args.store, args.no_cache)
        verdict = judge(notebook, record, floors, error)
        verdicts.append(verdict)
        print(_verdict_line(verdict, time.perf_counter() - started), flush=True)
    missing = unused_floors(floors, verdicts)
    if args.junit:
        _write_atomically(Path(args.junit), junit_xml(verdicts))
    if missing:
        names = ", ".join(f.metric for f in missing)
        raise CheckUsageError(
            f"no run records the metric(s) {names}",
            fix="check the spelling against the metrics the train stage records "
            "(`mlnb runs show ID`)",
        )
    failed = [v.notebook for v in verdicts if not v.passed]
    print(f"{len(verdicts) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _verdict_line(verdict: NotebookVerdict, seconds: float) -> str:
    mark = "PASS" if verdict.passed else "FAIL"
    lines = [f"{mark} {verdict.notebook} ({seconds:.1f} s)"]
    for case in verdict.cases:
        if case.outcome != "passed" or case.name != "run":
            lines.append(f"  {case.outcome:7} {case.name}: {case.message}")
    return "\n".join(lines)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
