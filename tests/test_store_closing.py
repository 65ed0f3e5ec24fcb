"""A store closes its SQLite connection when its ``with`` block ends, and commands close theirs.

Python 3.11's sqlite3 does not warn about a connection left open (3.13 does, with a
ResourceWarning), so these tests look for open connections themselves: the connection a
``with Store(...)`` block used refuses work after the block, and a command run in this
process leaves no file descriptor open on the store's ``mlnb.db``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlnb.cli import main
from mlnb.store import DB_NAME, Store

from .conftest import EXAMPLES, mlnb

PROC_FD = Path("/proc/self/fd")


def open_db_files(store: Path) -> list[str]:
    """The files of the store's index this process holds open (mlnb.db, -wal, -shm)."""
    found = []
    for fd in PROC_FD.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while listing (the directory's own descriptor)
            continue
        if Path(target).name.startswith(DB_NAME) and Path(target).parent == store:
            found.append(target)
    return found


def a_record(run_id: str, notebook: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": "succeeded",
        "notebook": {"path": notebook, "sha256": "0" * 64, "flavour": "mlnb"},
        "stages": [],
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
    }


def test_a_with_block_closes_the_connection(tmp_path: Path) -> None:
    with Store(tmp_path / "store") as store:
        store.create_run(a_record("r1", str(tmp_path / "nb.ipynb")))  # type: ignore[arg-type]
        assert [r["run_id"] for r in store.list_runs()] == ["r1"]
        connection = store._conn
        assert connection is not None
        connection.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")
    assert store._conn is None


def test_a_with_block_closes_the_connection_when_it_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError), Store(tmp_path / "store") as store:
        store.create_run(a_record("r1", str(tmp_path / "nb.ipynb")))  # type: ignore[arg-type]
        connection = store._conn
        raise KeyError("inside")
    assert connection is not None and store._conn is None
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")


def test_a_closed_store_opens_again_when_used(tmp_path: Path) -> None:
    """Closing is safe for code that keeps the store: the next read opens a connection."""
    store = Store(tmp_path / "store")
    with store:
        store.create_run(a_record("r1", str(tmp_path / "nb.ipynb")))  # type: ignore[arg-type]
    with store:
        assert store.get_run("r1")["run_id"] == "r1"
    assert store._conn is None


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A store holding one real run of breast_cancer.ipynb: (notebook, store, run id)."""
    folder = tmp_path_factory.mktemp("closing")
    for name in ("breast_cancer.ipynb", "breast_cancer.contract.yaml"):
        shutil.copy(EXAMPLES / name, folder / name)
    notebook, store = folder / "breast_cancer.ipynb", folder / "store"
    done = mlnb("run", str(notebook), "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr
    return notebook, store, json.loads(done.stdout)["run_id"]


@pytest.mark.skipif(not PROC_FD.is_dir(), reason="reads the open files in /proc/self/fd")
@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["runs", "--json"],
        ["runs", "show", "{run}"],
        ["runs", "diff", "{run}", "{run}"],
        ["run", "{notebook}"],  # every stage cached: no kernel
        ["store", "verify"],
        ["report", "{run}", "--json", "--no-html"],
    ],
)
def test_a_command_closes_its_store(
    ran: tuple[Path, Path, str], command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    notebook, store, run_id = ran
    argv = [a.format(run=run_id, notebook=notebook) for a in command]
    assert main([*argv, "--store", str(store)]) == 0
    capsys.readouterr()
    assert open_db_files(store) == []
