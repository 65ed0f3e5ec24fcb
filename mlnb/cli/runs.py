"""``mlnb runs``: list recorded runs, ``runs show ID``, ``runs diff A B``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mlnb.store_finder import FIX_ELSEWHERE
from mlnb.text_table import format_number, text_table

HELP = "list the recorded runs (newest first), show one, or compare two"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _shared(parser, None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="show one run", description="show one run")
    show.add_argument("run_id")
    diff = actions.add_parser("diff", help="compare two runs", description="compare two runs")
    diff.add_argument("a", metavar="RUN_A")
    diff.add_argument("b", metavar="RUN_B")
    for sub in (show, diff):  # the options work after the action too
        _shared(sub, argparse.SUPPRESS)
        sub.add_argument("--store", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _shared(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=default if default is not None else False,
        help="print JSON",
    )
    parser.add_argument(
        "--notebook",
        default=default,
        help="only this notebook's runs (its store: .mlnb beside it, unless --store)",
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.run.compare import diff_runs
    from mlnb.run.record import with_index_keys
    from mlnb.store import Store, dumps
    from mlnb.store_finder import holds_runs, use_store

    if args.action == "show":
        wanted = [args.run_id]
    elif args.action == "diff":
        wanted = [args.a, args.b]
    else:
        wanted = []
    choice = use_store(
        args.store,
        args.notebook,
        holds=holds_runs(*wanted) if wanted else None,
        holds_what=f"holds run {' and '.join(wanted)}" if wanted else None,
    )
    with Store((choice.exists() if wanted else choice).root) as store:
        if args.action == "show":
            record = store.get_run(args.run_id)
            print(dumps(with_index_keys(record), indent=2) if args.json else render_run(record))
        elif args.action == "diff":
            result = diff_runs(store.get_run(args.a), store.get_run(args.b))
            print(dumps(result, indent=2) if args.json else render_diff(result))
        else:
            records = store.list_runs(args.notebook)
            if args.json:
                print(dumps([with_index_keys(abbreviate(r)) for r in records]))
            elif records:
                print(render_list(records))
            else:
                print(no_runs_yet(choice.where_looked(), args.notebook))
    return 0


def no_runs_yet(where: str, notebook: str | None) -> str:
    """The empty listing: where it looked and how to point elsewhere (not back here)."""
    which = f"of {notebook} " if notebook else ""
    return f"no runs {which}recorded yet in {where}\nFix: {FIX_ELSEWHERE}"


def abbreviate(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run record without the bulky training profile (``runs show`` has it)."""
    short = dict(record)
    training = short.get("training_data")
    if training:
        short["training_data"] = {k: v for k, v in training.items() if k != "profile"}
    return short


def render_list(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return no_runs_yet("this store", None)
    rows = [("run", "status", "started (UTC)", "seconds", "notebook", "stages", "metrics")]
    for r in records:
        stages = " ".join(f"{s['name']}:{s['status']}" for s in r.get("stages", []))
        metrics = " ".join(f"{k}={format_number(v)}" for k, v in (r.get("metrics") or {}).items())
        rows.append(
            (
                r["run_id"],
                r["status"],
                r["started_at"][:19].replace("T", " "),
                format_number(r.get("seconds")),
                os.path.basename(r["notebook"]["path"]),
                stages,
                metrics,
            )
        )
    return "\n".join(text_table(rows))


def render_run(r: Mapping[str, Any]) -> str:
    from mlnb.cell_numbers import cell_ranges
    from mlnb.run.record import error_place

    lines = [
        f"run {r['run_id']}: {r['status']}",
        f"notebook: {r['notebook']['path']} (sha256 {r['notebook']['sha256'][:12]})",
        f"started: {r['started_at']}  finished: {r.get('finished_at') or '-'}"
        f"  seconds: {format_number(r.get('seconds'))}",
        "parameters: " + (", ".join(f"{k}={v!r}" for k, v in r["parameters"].items()) or "-"),
    ]
    rows = [("stage", "kind", "cells", "status", "seconds", "key", "reason")]
    for s in r.get("stages", []):
        key = (s.get("cache_key") or "")[:12]
        cells = cell_ranges(s.get("cell_indexes", s.get("cells")) or ()) or "-"
        seconds = format_number(s.get("seconds"))
        rows.append((s["name"], s["kind"], cells, s["status"], seconds, key, s.get("reason") or ""))
    lines.extend(text_table(rows))
    if r.get("metrics"):
        lines.append(
            "metrics: " + ", ".join(f"{k}={format_number(v)}" for k, v in r["metrics"].items())
        )
    if r.get("model"):
        m = r["model"]
        lines.append(f"model: {m['variable']} ({m['class']}) from stage {m['stage']}: {m['path']}")
    error = r.get("error")
    if error:
        lines.append(f"error: {error_place(error)}: {error.get('ename')}: {error.get('evalue')}")
    env = r.get("environment") or {}
    if env:
        packages = ", ".join(f"{k}=={v}" for k, v in (env.get("packages") or {}).items())
        lines.append(f"python {env.get('python')} on {env.get('platform')}; {packages}")
    git = r.get("git")
    if git:
        dirty = " (dirty)" if git.get("dirty") else ""
        lines.append(f"git: {git.get('commit')}{dirty}")
    for build in r.get("builds") or []:
        lines.append(
            f"build: {build.get('bento')} ({build.get('format')}, {build.get('built_at')})"
        )
    if r.get("executed_notebook"):
        lines.append(f"executed notebook: {os.path.join(r['store'], r['executed_notebook'])}")
    return "\n".join(lines)


def render_diff(d: Mapping[str, Any]) -> str:
    lines = [f"{d['a']} -> {d['b']}"]
    if d.get("notebook"):
        lines.append("notebook: differs")
    for name, v in d["parameters"].items():
        lines.append(f"parameter {name}: {v['a']!r} -> {v['b']!r}")
    for name, v in d["stages"].items():
        what = "key changed" if v["key_changed"] else "same key"
        lines.append(f"stage {name}: {what}; {v['a']['status']} -> {v['b']['status']}")
    for name, v in d["metrics"].items():
        delta = f" ({v['delta']:+.4g})" if v["delta"] is not None else ""
        lines.append(f"metric {name}: {format_number(v['a'])} -> {format_number(v['b'])}{delta}")
    if len(lines) == 1:
        lines.append("no differences in parameters, stages or metrics")
    return "\n".join(lines)
