"""The store a Bento belongs to, for the commands that take a Bento tag (serve, monitor,
release): ``--store``/``--notebook`` when given, else the store found from the cwd
(:mod:`mlnb.store_finder`) that holds the Bento: its monitoring folder, or a run that built it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from mlnb.store_finder import DB_NAME, StoreChoice, announce, find_store


def holds_bento(tag: str) -> Callable[[Path], bool]:
    """A ``holds`` test: the store has the Bento's monitoring folder or a run that built it."""
    from mlnb.monitoring.records import REFERENCE_FILE
    from mlnb.reporting.paths import default_monitor_folder, is_release_folder

    name, _, version = tag.partition(":")

    def test(root: Path) -> bool:
        if version:
            folder = default_monitor_folder(root, name, version)
            if (folder / REFERENCE_FILE).is_file() or is_release_folder(folder):
                return True
        return tag in built_bentos(root) or (
            not version and any(b.partition(":")[0] == name for b in built_bentos(root))
        )

    return test


def built_bentos(root: Path) -> set[str]:
    """The Bento tags the store's run records say were built (its index, read-only)."""
    db = root / DB_NAME
    if not db.is_file():
        return set()
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            rows = conn.execute("SELECT record FROM runs WHERE record LIKE '%\"builds\"%'")
            found: set[str] = set()
            for (text,) in rows:
                for build in json.loads(text).get("builds") or []:
                    if isinstance(build, dict) and build.get("bento"):
                        found.add(str(build["bento"]))
            return found
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, AttributeError):
        return set()


def store_of_bento(
    tag: str, store: str | None, notebook: str | None, *, command: str
) -> StoreChoice | None:
    """The store of ``tag``: the one given, else one found that holds it (announced), else
    None (no store found holds it: the caller keeps its own default, and says nothing)."""
    holds = holds_bento(tag)
    choice = find_store(
        os.getcwd(),
        store=store,
        notebook=notebook,
        holds=holds,
        holds_what=f"holds {tag}",
        command=command,
    )
    if choice.reason in ("given", "environment", "notebook"):
        return choice
    if choice.reason == "none" or not holds(choice.root):
        return None
    return announce(choice)
