"""``mlnb contract NB``: learn the data contract again from a run, show the diff, write it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = (
    "learn the notebook's data contract (NAME.contract.yaml) from its latest run and show the diff"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="the notebook (.ipynb)")
    parser.add_argument(
        "--run",
        help="learn from this run (default: the latest run whose data stages saved their "
        "values, also one that failed on the contract)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show the diff, do not write the file"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the contract differs from what the run shows (CI)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def run(args: argparse.Namespace) -> int:
    from mlnb.contract.from_run import learn_from_run

    outcome = learn_from_run(
        args.notebook, args.store, args.run, write=not (args.dry_run or args.check)
    )
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        _print(outcome.to_json())
    return 1 if args.check and outcome.changed else 0


def _print(outcome: dict[str, Any]) -> None:
    if outcome["diff"]:
        sys.stdout.write(outcome["diff"])
    name = outcome["file"]
    if not outcome["changed"]:
        print(f"{name} is what run {outcome['run_id']} shows: nothing to change")
    elif outcome["written"]:
        print(f"wrote {name}, learned from run {outcome['run_id']}: review the diff and commit it")
    else:
        print(
            f"{name} would change as shown (learned from run {outcome['run_id']}); nothing written"
        )
