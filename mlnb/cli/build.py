"""``mlnb build NOTEBOOK``: the newest successful run (or ``--run ID``) becomes a Bento."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "package a run's model and serve code into a versioned BentoML service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="path to the .ipynb file")
    parser.add_argument(
        "--run", metavar="ID", help="the run to build (default: the newest successful one)"
    )
    parser.add_argument(
        "--templates", metavar="DIR", help="a folder of templates to use before mlnb's own"
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        metavar="N",
        help="the most rows one request may hold (default 10000; $MLNB_MAX_ROWS overrides)",
    )
    parser.add_argument(
        "--allow-side-effects",
        action="store_true",
        help="build serve code that runs commands, opens connections or writes files "
        "(refused by default: the service runs it in every worker, the build in its checks)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print {bento, model, format, ...} as JSON"
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.bento.builder import build
    from mlnb.serving.schema import DEFAULT_MAX_ROWS

    def progress(message: str) -> None:
        print(f"mlnb build: {message}", file=sys.stderr, flush=True)

    result = build(
        args.notebook,
        run_id=args.run,
        store=args.store,
        templates=args.templates,
        max_rows=args.max_rows or DEFAULT_MAX_ROWS,
        allow_side_effects=args.allow_side_effects,
        progress=progress,
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        how = "onnxruntime" if result.format == "onnx" else "the native model"
        print(f"{result.bento}  (model {result.model}, served by {how})")
        print(f"generated code: {result.build_dir}")
        print(f"serve it: mlnb serve {result.bento}")
    return 0
