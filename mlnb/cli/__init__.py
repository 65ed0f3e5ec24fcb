"""The ``mlnb`` command: a thin layer over the core that prints results and errors.

Each subcommand is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Those modules import only the standard library and mlnb's light core at
the top; anything heavy (papermill, BentoML) is imported inside ``run``, so that fast paths
such as a cache hit stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from mlnb import __version__
from mlnb.errors import MlnbError, error_response

# Subcommand name -> module name in this package, in the order ``mlnb --help`` lists them.
COMMANDS: dict[str, str] = {
    "inspect": "inspect",
    "run": "run",
    "runs": "runs",
    "build": "build",
    "serve": "serve",
    "release": "release",
    "monitor": "monitor",
    "check": "check",
    "contract": "contract",
    "export": "export",
    "report": "report",
    "store": "store",
}


def _command_module(name: str) -> ModuleType:
    return importlib.import_module(f"mlnb.cli.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlnb",
        description="From one notebook to a reproducible pipeline and a monitored service.",
    )
    parser.add_argument("--version", action="version", version=f"mlnb {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command_module(name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        sub.add_argument(
            "--store",
            default=os.environ.get("MLNB_STORE"),
            help="the mlnb store directory (default: .mlnb beside the notebook, or $MLNB_STORE)",
        )
        sub.add_argument("--debug", action="store_true", help="show tracebacks for errors")
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except MlnbError as error:
        if args.debug:
            raise
        if getattr(args, "json", False):
            print(json.dumps(error_response(error)[1]))
        print(f"mlnb: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlnb: interrupted", file=sys.stderr)
        return 130


# jsonschema, which nbformat (papermill, nbconvert) imports, imports rfc3987-syntax when it
# is installed (jupyter_events pulls it in), and that module builds an Earley parser for
# IRIs at import: 2.3-3 s of every process that runs or builds a notebook (measured with
# `python -X importtime -c "import nbformat"`). mlnb never validates IRI formats; jsonschema
# skips those two format checks when the import fails. Only mlnb's own command processes do
# this: a Jupyter server or a kernel keeps its jsonschema as it is.
_SLOW_UNUSED_IMPORTS = ("rfc3987_syntax",)


def entry() -> None:
    """The console script: ``main()``, quiet when a reader such as ``head`` stops reading."""
    for name in _SLOW_UNUSED_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # import fails at once
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The Python docs' recipe (signal module, "Note on SIGPIPE"): point stdout at devnull
        # so the interpreter's final flush does not raise a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.exit(code)
