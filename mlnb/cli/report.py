"""``mlnb report RUN_ID``: a recorded run as one self-contained HTML page (nbconvert)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "render a recorded run (header, stages, metrics, lineage, the notebook) as HTML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("-o", "--output", help="the HTML file to write (report-RUN_ID.html)")
    parser.add_argument(
        "--template", help="your own nbconvert template folder (index.html.j2, conf.json)"
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.run_report import render_run_report
    from mlnb.store import Store

    html = render_run_report(Store.default(args.store), args.run_id, args.template)
    output = Path(args.output or f"report-{args.run_id}.html")
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    print(output)
    return 0
