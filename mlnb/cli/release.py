"""``mlnb release``: a new version beside the live one, then promoted or rolled back.

``mlnb release PRIMARY --shadow CANDIDATE`` or ``--canary CANDIDATE --percent P [--key F]``
builds one Bento serving both (:mod:`mlnb.bento.release`); ``mlnb serve`` serves it.
``mlnb release promote|rollback RELEASE [--why TEXT]`` switches its traffic (the running
service follows within a second), ``mlnb release status RELEASE`` says where it goes and
every switch so far. RELEASE is the release's Bento tag or its monitoring folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HELP = "serve a new Bento in shadow or canary beside the live one; promote or roll back"
ACTIONS = ("promote", "rollback", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="PRIMARY|promote|rollback|status",
        help="the live version's Bento tag, or what to do with a release",
    )
    parser.add_argument("release", nargs="?", metavar="RELEASE", help="the release (tag or folder)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--shadow", metavar="CANDIDATE", help="send every request to it too, off the answer's path"
    )
    mode.add_argument("--canary", metavar="CANDIDATE", help="let it answer --percent of requests")
    parser.add_argument("--percent", type=float, help="the canary's share of requests (0-100)")
    parser.add_argument(
        "--key",
        metavar="FIELD",
        help="canary: the same value of FIELD always goes to the same version",
    )
    parser.add_argument(
        "--promote-if",
        metavar="RULES",
        help="promote by itself when every rule holds, e.g. 'agreement>=0.98,p99<=1.2x'",
    )
    parser.add_argument(
        "--rollback-if",
        metavar="RULES",
        help="roll back when one holds while the candidate answers (default "
        "'error_rate>0.05,p99>3x')",
    )
    parser.add_argument(
        "--after", type=int, metavar="N", help="requests the candidate handles before rules decide"
    )
    parser.add_argument(
        "--name", help="the release's Bento name (default: PRIMARY's name + _release)"
    )
    parser.add_argument("--why", default="", help="promote/rollback: the reason recorded")
    parser.add_argument(
        "--notebook",
        metavar="NB",
        help="the notebook the primary was built from: the release logs in its store "
        "(default: the store below that holds the primary)",
    )
    parser.add_argument(
        "--templates", metavar="DIR", help="a folder with your own release_service.py.j2"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    if args.target in ACTIONS:
        return _act(args)
    return _build(args)


def _build(args: argparse.Namespace) -> int:
    from mlnb.bento import bentoml_store
    from mlnb.bento.release import ReleaseError, ReleaseOptions, build_release, read_version

    if args.release:
        raise ReleaseError(
            f"unexpected {args.release!r} after the primary",
            fix="mlnb release PRIMARY --shadow CANDIDATE (or --canary CANDIDATE --percent P)",
        )
    candidate = args.shadow or args.canary
    if not candidate:
        raise ReleaseError(
            "say how the candidate runs beside the primary",
            fix="add --shadow CANDIDATE or --canary CANDIDATE --percent P",
        )
    bentoml_store.quiet_bentoml()
    primary_tag = bentoml_store.bento_tag(args.target)
    store_root = _store_root(args, primary_tag) or _store_of(read_version(primary_tag).spec)

    def progress(message: str) -> None:
        print(f"mlnb release: {message}", file=sys.stderr, flush=True)

    options = ReleaseOptions(
        mode="shadow" if args.shadow else "canary",
        percent=args.percent,
        key=args.key,
        promote_if=(args.promote_if,) if args.promote_if else (),
        rollback_if=(args.rollback_if,) if args.rollback_if else (),
        after=args.after,
        name=args.name,
    )
    result = build_release(
        primary_tag,
        bentoml_store.bento_tag(candidate),
        options,
        store_root=store_root,
        progress=progress,
        templates=args.templates,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['release']}  ({result['mode']}: {result['candidate']} "
            f"beside {result['primary']})"
        )
        print(f"serve it:   mlnb serve {result['release']}")
        print(f"compare:    mlnb monitor {result['release']}")
        print(f"switch:     mlnb release promote {result['release']}   (or rollback)")
    return 0


def _store_root(args: argparse.Namespace, tag: str) -> Path | None:
    """--store or --notebook's store, else the store found below that holds ``tag``."""
    from mlnb.cli.bento_store import store_of_bento

    choice = store_of_bento(tag, args.store, args.notebook, command="mlnb release")
    return None if choice is None else choice.root


def _store_of(spec: dict[str, Any]) -> Path:
    """The store the primary was built from: its monitoring folder is
    ``<store>/monitoring/<name>/<version>``."""
    monitor = Path(str(spec.get("monitor_dir") or ""))
    if monitor.is_absolute() and len(monitor.parts) > 3:
        return monitor.parents[2]
    return Path(os.environ.get("MLNB_STORE") or ".mlnb")


def release_folder(target: str, store: str | None = None) -> Path:
    """A release's monitoring folder: the folder given, ``$MLNB_MONITOR_DIR``, the release's
    folder in ``store`` (as ``mlnb serve TAG --store`` chooses it), or the one its Bento's
    ``mlnb_release.json`` names."""
    from mlnb.bento import bentoml_store
    from mlnb.bento.release import ReleaseError
    from mlnb.serving.release_state import RELEASE_FILE, ROUTING_FILE

    path = Path(target)
    if path.is_dir() and ((path / RELEASE_FILE).is_file() or (path / ROUTING_FILE).is_file()):
        return path
    if os.environ.get("MLNB_MONITOR_DIR"):
        return Path(os.environ["MLNB_MONITOR_DIR"])
    import bentoml
    from bentoml.exceptions import NotFound

    bentoml_store.quiet_bentoml()
    try:
        found = bentoml.bentos.get(target)
    except (NotFound, ValueError):
        raise ReleaseError(
            f"{target!r} is neither a release's monitoring folder nor a Bento tag",
            fix="pass the tag `mlnb release` printed, or the folder the service logs in",
        ) from None
    spec_path = Path(found.path) / "src" / "mlnb_release.json"
    if not spec_path.is_file():
        raise ReleaseError(f"{found.tag} is not a release", fix="pass a tag `mlnb release` printed")
    if store:
        from mlnb.reporting.paths import default_monitor_folder

        return default_monitor_folder(store, found.tag.name, str(found.tag.version))
    named = Path(json.loads(spec_path.read_text(encoding="utf-8"))["monitor_dir"])
    # a release names its folder relative to where `bentoml serve` starts: from here
    return named if named.is_absolute() else Path.cwd() / named


def _act_store(args: argparse.Namespace) -> str | None:
    given: str | None = args.store
    if Path(args.release).is_dir() or os.environ.get("MLNB_MONITOR_DIR"):
        return given
    root = _store_root(args, args.release)
    return None if root is None else str(root)


def _act(args: argparse.Namespace) -> int:
    from mlnb.bento.release import ReleaseError
    from mlnb.serving import release_state

    if not args.release:
        raise ReleaseError(
            f"mlnb release {args.target} needs the release",
            fix=f"mlnb release {args.target} RELEASE_TAG",
        )
    folder = release_folder(args.release, _act_store(args))
    if args.target == "status":
        routing = release_state.read_routing(folder)
        switches = release_state.read_switches(folder)
        if args.json:
            print(
                json.dumps(
                    {
                        "folder": str(folder),
                        "routing": routing and routing.to_json(),
                        "switches": switches,
                    }
                )
            )
            return 0
        if routing is None:
            print(f"{folder}: the release has not served yet (no routing.json)")
        else:
            share = "" if routing.percent is None else f" ({routing.percent:g}% to the candidate)"
            print(f"answering: {routing.answering}{share}, after {routing.switch} switch(es)")
        for entry in switches:
            print(
                f"  {entry.get('time')}  {entry.get('action')} by {entry.get('by')}: "
                f"{entry.get('why')}"
            )
        return 0
    if release_state.read_routing(folder) is None and not folder.is_dir():
        raise ReleaseError(
            f"{folder} does not exist: the release has not served yet",
            fix="start it with mlnb serve RELEASE first, or pass its monitoring folder",
        )
    routing = release_state.switch(
        folder, args.target, why=args.why or f"mlnb release {args.target}"
    )
    assert routing is not None
    if args.json:
        print(json.dumps({"folder": str(folder), "routing": routing.to_json()}))
    else:
        print(
            f"{args.target}: {routing.answering} answers now (switch {routing.switch}, "
            f"recorded in {folder})"
        )
    return 0
