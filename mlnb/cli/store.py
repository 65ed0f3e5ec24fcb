"""``mlnb store verify [--repair]``: check every object, run record and index row."""

from __future__ import annotations

import argparse
import sys

HELP = "check the store (every object against its sha256, records, index) and repair it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "verify",
        help="check every object, run record and index row; --repair fixes what it can",
        description="check every object, run record and index row; --repair fixes what it can",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="set damaged objects aside, rebuild or correct the index, forget cache entries "
        "whose objects are gone",
    )
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.add_argument(
        "--notebook", help="the store of this notebook (.mlnb beside it, unless --store)"
    )
    check.add_argument("--store", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from mlnb.store import Store, dumps
    from mlnb.store_finder import use_store
    from mlnb.store_verify import verify

    # Verifying (or repairing) a store other than the one meant would say "all sound" about
    # the wrong thing: with several stores below and none named, refuse and list them.
    choice = use_store(
        args.store, args.notebook, ambiguity="refuse", command=f"mlnb store {args.action}"
    )
    store = Store(choice.exists().root)
    with store:
        report = verify(store, repair=args.repair, progress=_Progress())
    remaining = len(report.open_problems)
    if args.json:
        print(dumps(report.to_json(), indent=2))
        return 0 if not remaining else 1
    for finding in report.findings:
        mark = "fixed" if finding.fixed else "problem"
        hint = f" (fix: {finding.fix})" if finding.fix and not finding.fixed else ""
        print(f"{mark}: {finding.subject}: {finding.problem}{hint}")
    fixed = len(report.findings) - remaining
    summary = (
        f"checked {report.objects} objects, {report.runs} run records and "
        f"{report.cache_entries} cache entries in {report.store}: "
    )
    if not report.findings:
        summary += "all sound"
    else:
        summary += f"{fixed} fixed, {remaining} problems left"
        if remaining and not args.repair:
            summary += " (run again with --repair to fix what can be fixed)"
    print(summary)
    return 0 if not remaining else 1


class _Progress:
    """``hashed N/M objects`` on one line, when stderr is a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self.tty and (done == total or done % 50 == 0):
            end = "\n" if done == total else ""
            print(f"\rmlnb: hashed {done}/{total} objects", end=end, file=sys.stderr, flush=True)
