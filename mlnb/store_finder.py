"""Which store a command uses: the one ``mlnb run`` chose, found from where the user stands.

``mlnb run NB`` keeps its runs in ``.mlnb`` beside the notebook (unless ``--store`` or
``$MLNB_STORE``). Every other command finds that store again, in this order:

1. ``--store DIR`` (or ``$MLNB_STORE``): that store;
2. ``--notebook NB``: ``.mlnb`` beside the notebook, as ``mlnb run`` chose it;
3. ``./.mlnb`` when it is a store;
4. the stores beside the notebooks below the current folder, found by a bounded walk (hidden
   folders, ``node_modules``, ``site-packages`` and virtual environments skipped, at most
   :data:`MAX_DEPTH` levels and :data:`MAX_FOLDERS` folders).

With several stores below, a command that names what it needs (a run id, a Bento) takes the
store that holds it; otherwise the one with the newest run, naming the others. A command for
which the wrong store would mislead (``mlnb store verify``) refuses instead and lists the
``--notebook`` choices. Cases 3 and 4 are announced in one line on stderr.

:func:`find_store` is the core (the cwd and the environment are arguments; it reads the
folders and each store's index, read-only); :func:`use_store` is the thin edge the CLI calls.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlnb.errors import AmbiguousStoreError, StoreError

STORE_DIR = ".mlnb"
DB_NAME = "mlnb.db"
MAX_DEPTH = 4  # folders below the cwd: ./a/b/c/d/.mlnb is found, one deeper is not
MAX_FOLDERS = 5_000  # folders read in all, so a walk from a home folder stays quick
SKIP_FOLDERS = frozenset(
    {"node_modules", "site-packages", "dist-packages", "__pycache__", "venv", "env"}
)
VENV_MARKERS = ("pyvenv.cfg", "conda-meta")

Reason = Literal["given", "environment", "notebook", "here", "below", "none"]
Ambiguity = Literal["newest", "refuse"]


@dataclass(frozen=True)
class FoundStore:
    """A store folder found by the walk, with what its index says."""

    root: Path
    newest: float | None  # when its newest run started (POSIX seconds), None: no run
    notebooks: tuple[Path, ...]  # the notebooks it holds runs of (or beside it)


@dataclass(frozen=True)
class StoreChoice:
    """The store a command uses, why, and what else was found."""

    root: Path
    reason: Reason
    cwd: Path
    notebooks: tuple[Path, ...] = ()
    others: tuple[FoundStore, ...] = ()
    preferred: str | None = None  # what made this store the choice ("holds run X")

    def announcement(self) -> str | None:
        """The one line a command prints on stderr when it found the store itself."""
        if self.reason not in ("here", "below"):
            return None
        line = f"mlnb: using the store {relative(self.root, self.cwd)}"
        if self.notebooks:
            names = ", ".join(relative(nb, self.cwd) for nb in self.notebooks[:3])
            more = f" and {len(self.notebooks) - 3} more" if len(self.notebooks) > 3 else ""
            line += f" (of {names}{more})"
        if self.preferred and self.others:
            line += f": it {self.preferred}"
        if self.others:
            others = ", ".join(relative(found.root, self.cwd) for found in self.others)
            how = "the one that holds it" if self.preferred else "the one with the newest run"
            line += f"; also found {others} (took {how}; --notebook NB or --store DIR chooses)"
        return line

    def where_looked(self) -> str:
        """Where the store was looked for: "no runs recorded yet in ..." ends with it."""
        shown = relative(self.root, self.cwd)
        if self.reason == "given":
            return f"{shown} (--store)"
        if self.reason == "environment":
            return f"{shown} ($MLNB_STORE)"
        if self.reason == "notebook":
            return f"{shown} (beside the notebook)"
        if self.reason == "none":
            return (
                f"./{STORE_DIR} nor beside any notebook below {self.cwd} ({MAX_DEPTH} levels deep)"
            )
        return shown

    def exists(self) -> StoreChoice:
        """The choice, when its folder is there; else a :class:`StoreError` naming where it
        looked and how to point elsewhere."""
        if self.reason != "none" and self.root.is_dir():
            return self
        raise StoreError(f"there is no store in {self.where_looked()}", fix=FIX_ELSEWHERE)


FIX_ELSEWHERE = (
    "run a notebook first (`mlnb run NB.ipynb`), or point at its store: "
    "--notebook NB.ipynb (its store is .mlnb beside it) or --store DIR"
)


def find_store(
    cwd: str | Path,
    *,
    store: str | Path | None = None,
    notebook: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    holds: Callable[[Path], bool] | None = None,
    holds_what: str | None = None,
    ambiguity: Ambiguity = "newest",
    command: str = "mlnb",
) -> StoreChoice:
    """The store to use, from what the user gave and what lies below ``cwd``.

    ``holds`` tells whether a store holds what the command needs (a run id, a Bento's
    monitoring folder; ``holds_what`` says it in words, "holds run X"): among several stores
    the first that holds it wins. ``ambiguity="refuse"`` raises :class:`AmbiguousStoreError`
    when several stores are found and none is singled out that way.
    """
    base = Path(os.path.abspath(cwd))
    env = os.environ if environ is None else environ
    if store:  # the CLI's --store defaults to $MLNB_STORE: say which it was
        reason: Reason = "environment" if env.get("MLNB_STORE") == str(store) else "given"
        return StoreChoice(_absolute(store, base), reason, base)
    if env.get("MLNB_STORE"):
        return StoreChoice(_absolute(env["MLNB_STORE"], base), "environment", base)
    if notebook:
        path = _absolute(notebook, base)
        return StoreChoice(path.parent / STORE_DIR, "notebook", base, notebooks=(path,))
    here = base / STORE_DIR
    if is_store(here):
        found = read_found(here)
        if holds is None or holds(here):
            return StoreChoice(here, "here", base, notebooks=found.notebooks)
        below = [f for f in order_newest(walk_stores(base)) if holds(f.root)]
        if not below:
            return StoreChoice(here, "here", base, notebooks=found.notebooks)
        return StoreChoice(
            below[0].root,
            "below",
            base,
            notebooks=below[0].notebooks,
            others=(found,),
            preferred=holds_what,
        )
    candidates = order_newest(walk_stores(base))
    if not candidates:
        return StoreChoice(here, "none", base)
    chosen, preferred = candidates[0], None
    if holds is not None:
        holding = [found for found in candidates if holds(found.root)]
        if holding:
            chosen, preferred = holding[0], holds_what
    if len(candidates) > 1 and ambiguity == "refuse" and preferred is None:
        raise ambiguous(candidates, base, command)
    others = tuple(found for found in candidates if found.root != chosen.root)
    return StoreChoice(
        chosen.root,
        "below",
        base,
        notebooks=chosen.notebooks,
        others=others,
        preferred=preferred,
    )


def ambiguous(candidates: list[FoundStore], cwd: Path, command: str) -> AmbiguousStoreError:
    choices = []
    for found in candidates:
        beside = found.notebooks[0] if found.notebooks else found.root.parent / "NB.ipynb"
        choices.append(f"{command} --notebook {shlex.quote(relative(beside, cwd))}")
    stores = ", ".join(relative(found.root, cwd) for found in candidates)
    return AmbiguousStoreError(
        f"{len(candidates)} stores below {cwd}: {stores}; this command does not guess which",
        fix="say which: " + "; ".join(choices) + " (or --store DIR)",
    )


def is_store(folder: Path) -> bool:
    """Whether ``folder`` holds an mlnb store (its index or its run folders)."""
    return (folder / DB_NAME).is_file() or (folder / "runs").is_dir()


def walk_stores(
    cwd: Path, max_depth: int = MAX_DEPTH, max_folders: int = MAX_FOLDERS
) -> list[FoundStore]:
    """The stores (``.mlnb`` folders) below ``cwd``, breadth first, within the bounds."""
    found: list[FoundStore] = []
    level = [cwd]
    seen = 0
    for _depth in range(max_depth + 1):
        below: list[Path] = []
        for folder in level:
            for entry in _folders(folder):
                seen += 1
                if seen > max_folders:
                    return found
                path = Path(entry.path)
                if entry.name == STORE_DIR:
                    if folder != cwd and is_store(path):
                        found.append(read_found(path))
                    continue
                if _skipped(entry.name, path):
                    continue
                below.append(path)
        level = below
        if not level:
            break
    return found


def _folders(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(
                (e for e in entries if e.is_dir(follow_symlinks=False)), key=lambda e: e.name
            )
    except OSError:
        return []


def _skipped(name: str, path: Path) -> bool:
    if name.startswith(".") or name in SKIP_FOLDERS or name.endswith(".egg-info"):
        return True
    return any((path / marker).exists() for marker in VENV_MARKERS)


def read_found(root: Path) -> FoundStore:
    """What a store's index says about it, read-only (no index: its run folders)."""
    newest: float | None = None
    notebooks: list[Path] = []
    db = root / DB_NAME
    if db.is_file():
        try:
            conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
            try:
                row = conn.execute("SELECT max(started_at) FROM runs").fetchone()
                newest = _timestamp(row[0]) if row and row[0] else None
                names = conn.execute("SELECT DISTINCT notebook FROM runs ORDER BY notebook")
                notebooks = [Path(name) for (name,) in names.fetchall()]
            finally:
                conn.close()
        except sqlite3.Error:
            newest, notebooks = None, []
    if newest is None:
        newest = _newest_run_folder(root / "runs")
    beside = [nb for nb in notebooks if nb.parent == root.parent and nb.is_file()]
    if not beside:
        beside = sorted(root.parent.glob("*.ipynb"))
    return FoundStore(root, newest, tuple(beside))


def _newest_run_folder(runs: Path) -> float | None:
    try:
        with os.scandir(runs) as entries:
            times = [e.stat().st_mtime for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return None
    return max(times, default=None)


def _timestamp(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def order_newest(found: list[FoundStore]) -> list[FoundStore]:
    """Newest run first; stores without runs last; ties by path (deterministic)."""
    return sorted(found, key=lambda f: (f.newest is None, -(f.newest or 0.0), str(f.root)))


def relative(path: Path, cwd: Path) -> str:
    """``path`` as the user at ``cwd`` would type it: relative when below, else absolute."""
    try:
        shown = os.path.relpath(path, cwd)
    except ValueError:
        return str(path)
    return str(path) if shown.startswith("..") else shown


def _absolute(path: str | Path, cwd: Path) -> Path:
    return Path(os.path.normpath(cwd / Path(path).expanduser()))


def use_store(
    store: str | None,
    notebook: str | None,
    *,
    holds: Callable[[Path], bool] | None = None,
    holds_what: str | None = None,
    ambiguity: Ambiguity = "newest",
    command: str = "mlnb",
) -> StoreChoice:
    """:func:`find_store` from the process's cwd and environment, announced on stderr."""
    choice = find_store(
        os.getcwd(),
        store=store,
        notebook=notebook,
        holds=holds,
        holds_what=holds_what,
        ambiguity=ambiguity,
        command=command,
    )
    return announce(choice)


def announce(choice: StoreChoice) -> StoreChoice:
    """Print the choice's announcement (when it has one) on stderr; return the choice."""
    line = choice.announcement()
    if line:
        print(line, file=sys.stderr, flush=True)
    return choice


def holds_runs(*run_ids: str) -> Callable[[Path], bool]:
    """A ``holds`` test: the store has the record of every one of ``run_ids``."""

    def test(root: Path) -> bool:
        return all(_plain_name(r) and (root / "runs" / r / "run.json").is_file() for r in run_ids)

    return test


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
