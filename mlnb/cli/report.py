"""``mlnb report RUN_ID``: a recorded run as one self-contained HTML page (nbconvert).

The page shows the global importance of the run's model (:mod:`mlnb.importance`); ``--json``
prints it, with the page's path, as one JSON object (``--no-html``: the JSON only, no page).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = (
    "render a recorded run (header, stages, metrics, global importance, lineage, the "
    "notebook) as HTML"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument(
        "--notebook",
        metavar="NB",
        help="the notebook whose store holds the run (.mlnb beside it, unless --store); "
        "default: ./.mlnb, else the store below that holds the run",
    )
    parser.add_argument("-o", "--output", help="the HTML file to write (report-RUN_ID.html)")
    parser.add_argument(
        "--template", help="your own nbconvert template folder (index.html.j2, conf.json)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the report's path and the model's global importance as JSON",
    )
    parser.add_argument(
        "--no-html",
        action="store_true",
        help="with --json: compute and print the importance only, write no page",
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.run_report import render_run_report, run_importance
    from mlnb.store import Store, dumps
    from mlnb.store_finder import holds_runs, use_store

    choice = use_store(
        args.store,
        args.notebook,
        holds=holds_runs(args.run_id),
        holds_what=f"holds run {args.run_id}",
    )
    output: Path | None = None
    with Store(choice.exists().root) as store:
        record = store.get_run(args.run_id)
        importance = run_importance(store, record)
        html = None
        if not (args.json and args.no_html):
            html = render_run_report(store, args.run_id, args.template, importance=importance)
    if html is not None:
        output = Path(args.output or f"report-{args.run_id}.html")
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(output)
    if args.json:
        payload = {
            "run_id": args.run_id,
            "report": None if output is None else str(output),
            "importance": importance,
        }
        print(dumps(payload))
    elif output is not None:
        print(output)
    return 0
