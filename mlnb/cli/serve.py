"""``mlnb serve NOTEBOOK|BENTO_TAG``: run ``bentoml serve`` on a Bento mlnb built."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = "serve a notebook's latest Bento (building it when needed) or a Bento tag"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NOTEBOOK|BENTO_TAG", help="an .ipynb file or a tag")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    parser.add_argument(
        "--templates", metavar="DIR", help="templates for a build this command starts"
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.bento import bentoml_store

    bentoml_store.quiet_bentoml()
    env = dict(os.environ)
    store_root: str | None
    if _is_notebook(args.target):
        tag, store_root = _notebook_bento(args)
    else:
        tag = _known_bento(args.target)
        store_root = _store_of_tag(tag, args)
    name, _, version = tag.partition(":")
    if store_root and not env.get("MLNB_MONITOR_DIR"):
        from mlnb.reporting.paths import default_monitor_folder

        env["MLNB_MONITOR_DIR"] = str(default_monitor_folder(store_root, name, version))
    command = [sys.executable, "-m", "bentoml", "serve", tag]
    command += ["--host", args.host, "--port", str(args.port)]
    url = f"http://{args.host}:{args.port}"
    print(
        f"mlnb serve: {tag} on {url} (POST /predict, /explain; docs at /, /readyz, /metrics)",
        file=sys.stderr,
        flush=True,
    )
    os.execve(sys.executable, command, env)
    return 0  # pragma: no cover - execve does not return


def _is_notebook(target: str) -> bool:
    return target.endswith(".ipynb") or Path(target).is_file()


def _notebook_bento(args: argparse.Namespace) -> tuple[str, str]:
    """The newest Bento built from the notebook's newest successful run; build one if none."""
    from mlnb.bento import bentoml_store
    from mlnb.store import Store

    with Store.for_notebook(args.target, args.store) as store:
        run = store.latest_successful(args.target)
    for build in reversed((run.get("builds") if run else None) or []):
        if bentoml_store.bento_exists(build["bento"]):
            return str(build["bento"]), str(store.root)
    from mlnb.bento.builder import build as build_bento

    def progress(message: str) -> None:
        print(f"mlnb build: {message}", file=sys.stderr, flush=True)

    result = build_bento(args.target, store=args.store, templates=args.templates, progress=progress)
    return result.bento, str(store.root)


def _store_of_tag(tag: str, args: argparse.Namespace) -> str | None:
    """The store whose monitoring folder a served tag logs into: --store, else the store
    found below that built it or holds its logs (none found: the Bento's own default)."""
    from mlnb.cli.bento_store import store_of_bento

    if os.environ.get("MLNB_MONITOR_DIR"):
        given: str | None = args.store
        return given
    choice = store_of_bento(tag, args.store, None, command="mlnb serve")
    return None if choice is None else str(choice.root)


def _known_bento(tag: str) -> str:
    from mlnb.bento import bentoml_store
    from mlnb.errors import UnknownBentoError

    if bentoml_store.bento_exists(tag):
        return str(bentoml_store.bento_tag(tag))
    raise UnknownBentoError(
        f"no Bento {tag!r} in the BentoML store, and no such notebook",
        fix="list Bentos with `bentoml list`, or pass the notebook to build and serve it",
    )
