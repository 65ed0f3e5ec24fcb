"""The run store: run records, the stage cache and content-addressed objects on one disk.

Layout of a store directory (``.mlnb/`` beside the notebook by default)::

    mlnb.db                     SQLite index: runs, the stage cache, file fingerprints
    runs/<run_id>/run.json      the run record, rewritten atomically while the run goes
    runs/<run_id>/notebook.ipynb  the executed notebook
    objects/<sha[:2]>/<sha>     content-addressed files (stage outputs, the model, samples)

Pure core: the standard library only (sqlite3 and json). Every file is written to a temporary
name and renamed, and SQLite runs in WAL mode with a busy timeout, so several runs, builds
and readers can share one store at once.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import re
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mlnb.errors import RunIdError, RunNotFoundError, StoreError

DB_NAME = "mlnb.db"
DEFAULT_DIR = ".mlnb"
RUN_FILE = "run.json"
NOTEBOOK_FILE = "notebook.ipynb"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_SHA_PATTERN = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_notebook ON runs (notebook, started_at);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE TABLE IF NOT EXISTS stage_cache (
    cache_key TEXT PRIMARY KEY,
    notebook TEXT NOT NULL,
    stage TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_by_stage ON stage_cache (notebook, stage, created_at);
CREATE TABLE IF NOT EXISTS fingerprints (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def new_run_id() -> str:
    """A sortable, unique-enough id: UTC date and time plus six random hex digits."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` and tuples as lists, for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(json_safe(value), indent=indent, allow_nan=False, default=str)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """One store directory. Opening it creates nothing; the first write creates the files."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(os.path.abspath(path))
        self.db_path = self.root / DB_NAME
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @classmethod
    def for_notebook(cls, notebook_path: str | Path, store: str | Path | None = None) -> Store:
        """``store`` if given, else ``$MLNB_STORE``, else ``.mlnb/`` beside the notebook."""
        if store:
            return cls(store)
        if os.environ.get("MLNB_STORE"):
            return cls(os.environ["MLNB_STORE"])
        return cls(Path(os.path.abspath(notebook_path)).parent / DEFAULT_DIR)

    @classmethod
    def default(cls, store: str | Path | None = None) -> Store:
        """For commands without a notebook: ``store``, ``$MLNB_STORE`` or ``./.mlnb``."""
        return cls(store or os.environ.get("MLNB_STORE") or DEFAULT_DIR)

    # --- paths ---

    def run_dir(self, run_id: str) -> Path:
        check_run_id(run_id)
        return self.root / "runs" / run_id

    def object_path(self, sha256: str) -> Path:
        if not _SHA_PATTERN.match(sha256):
            raise StoreError(f"{sha256!r} is not a sha256 hex digest", fix="pass 64 hex digits")
        return self.root / "objects" / sha256[:2] / sha256

    def resolve(self, relative: str) -> Path:
        """The absolute path of a path recorded relative to the store (``objects/..``)."""
        return self.root / relative

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- the SQLite connection ---

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.db_path.exists():
            return None
        try:
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _create_schema(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the store index {self.db_path} ({exc})",
                fix="check that the store directory is writable, or pass another --store",
            ) from None
        self._conn = conn
        return conn

    def _db(self) -> sqlite3.Connection:
        conn = self._connect(create=True)
        assert conn is not None
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- runs ---

    def create_run(self, record: dict[str, Any]) -> Path:
        """Make the run's directory (the id must be new) and write its first record."""
        run_id = record["run_id"]
        directory = self.run_dir(run_id)
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir()
        except FileExistsError:
            raise RunIdError(
                f"a run with id {run_id!r} exists already in {self.root}",
                fix="pass another --run-id, or none to get a new id",
            ) from None
        self.save_run(record)
        return directory

    def save_run(self, record: dict[str, Any]) -> None:
        """Rewrite run.json atomically and update the index."""
        text = dumps(record, indent=2)
        write_atomic(self.run_dir(record["run_id"]) / RUN_FILE, text)
        conn = self._db()
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO runs (run_id, notebook, status, started_at, "
                "finished_at, record) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record["run_id"],
                    record["notebook"]["path"],
                    record["status"],
                    record["started_at"],
                    record.get("finished_at"),
                    text,
                ),
            )

    def get_run(self, run_id: str) -> dict[str, Any]:
        try:
            path = self.run_dir(run_id) / RUN_FILE
        except RunIdError:
            path = None
        record: dict[str, Any] | None = None
        if path is not None:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                record = None
        if record is None:
            conn = self._connect(create=False)
            row = None
            if conn is not None:
                row = conn.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(
                    f"no run {run_id!r} in the store {self.root}",
                    fix="list the runs with `mlnb runs` (pass --store DIR for another store)",
                )
            record = json.loads(row[0])
        return self._reap_if_stale(record)

    def list_runs(self, notebook: str | Path | None = None) -> list[dict[str, Any]]:
        """Run records, newest first; only the notebook's when ``notebook`` is given."""
        conn = self._connect(create=False)
        if conn is None:
            return []
        if notebook is None:
            rows = conn.execute(
                "SELECT record FROM runs ORDER BY started_at DESC, rowid DESC"
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT record FROM runs WHERE notebook = ? ORDER BY started_at DESC, rowid DESC",
                (os.path.abspath(notebook),),
            ).fetchall()
        return [self._reap_if_stale(json.loads(row[0])) for row in rows]

    def latest_successful(self, notebook_path: str | Path) -> dict[str, Any] | None:
        conn = self._connect(create=False)
        if conn is None:
            return None
        row = conn.execute(
            "SELECT run_id FROM runs WHERE notebook = ? AND status = 'succeeded' "
            "ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (os.path.abspath(notebook_path),),
        ).fetchone()
        return None if row is None else self.get_run(row[0])

    def add_build(self, run_id: str, build: dict[str, Any]) -> dict[str, Any]:
        """Append a build to the run's ``builds`` (one writer at a time); return the record."""
        conn = self._db()
        with _transaction(conn, immediate=True):
            record = self.get_run(run_id)
            record.setdefault("builds", []).append(build)
            text = dumps(record, indent=2)
            write_atomic(self.run_dir(run_id) / RUN_FILE, text)
            conn.execute(
                "UPDATE runs SET record = ? WHERE run_id = ?",
                (text, run_id),
            )
        return record

    def _reap_if_stale(self, record: dict[str, Any]) -> dict[str, Any]:
        """A ``running`` run whose process is gone is recorded ``failed``."""
        if record.get("status") != "running":
            return record
        pid, host = record.get("pid"), record.get("host")
        if not isinstance(pid, int) or host != socket.gethostname() or pid_alive(pid):
            return record
        running = [s for s in record.get("stages", []) if s.get("status") == "running"]
        for stage in record.get("stages", []):
            if stage.get("status") in ("running", "pending"):
                stage["status"] = "failed" if stage in running else "not-run"
        record["status"] = "failed"
        record["finished_at"] = record.get("finished_at") or utc_now()
        record["error"] = record.get("error") or {
            "stage": running[0]["name"] if running else None,
            "cell": None,
            "ename": "RunAborted",
            "evalue": f"the mlnb run process (pid {pid}) ended without recording a result",
        }
        with contextlib.suppress(OSError, sqlite3.Error):
            self.save_run(record)
        return record

    # --- the stage cache ---

    def cache_lookup(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cache entries by key, for the keys that have one."""
        keys = list(keys)
        conn = self._connect(create=False)
        if conn is None or not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = conn.execute(
            f"SELECT cache_key, record FROM stage_cache WHERE cache_key IN ({marks})", keys
        ).fetchall()
        return {key: json.loads(text) for key, text in rows}

    def cache_latest_all(self, notebook: str) -> dict[str, dict[str, Any]]:
        """The newest cache entry of each stage of a notebook."""
        conn = self._connect(create=False)
        if conn is None:
            return {}
        rows = conn.execute(
            "SELECT stage, record FROM stage_cache WHERE notebook = ? ORDER BY created_at",
            (notebook,),
        ).fetchall()
        return {stage: json.loads(text) for stage, text in rows}

    def cache_put(self, key: str, notebook: str, stage: str, entry: dict[str, Any]) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO stage_cache (cache_key, notebook, stage, run_id, "
                "created_at, record) VALUES (?, ?, ?, ?, ?, ?)",
                (key, notebook, stage, entry["run_id"], utc_now(), dumps(entry)),
            )

    # --- file fingerprints ---

    def fingerprints(self, paths: Iterable[str]) -> dict[str, str | None]:
        """sha256 of each file (``None`` when it is gone), rehashing only changed files."""
        stats: dict[str, os.stat_result | None] = {}
        for path in paths:
            try:
                stats[path] = os.stat(path)
            except OSError:
                stats[path] = None
        known: dict[str, tuple[int, int, str]] = {}
        conn = self._connect(create=False)
        present = [p for p, st in stats.items() if st is not None]
        if conn is not None and present:
            marks = ",".join("?" * len(present))
            for path, size, mtime, sha in conn.execute(
                f"SELECT path, size, mtime_ns, sha256 FROM fingerprints WHERE path IN ({marks})",
                present,
            ):
                known[path] = (size, mtime, sha)
        result: dict[str, str | None] = {}
        fresh: list[tuple[str, int, int, str]] = []
        for path, st in stats.items():
            if st is None:
                result[path] = None
                continue
            cached = known.get(path)
            if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
                result[path] = cached[2]
                continue
            try:
                result[path] = sha256_file(path)
            except OSError:
                result[path] = None
                continue
            fresh.append((path, st.st_size, st.st_mtime_ns, result[path] or ""))
        if fresh:
            with contextlib.suppress(sqlite3.Error, StoreError):
                conn = self._db()
                with _transaction(conn):
                    conn.executemany(
                        "INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)", fresh
                    )
        return result


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RunIdError(
            f"{run_id!r} is not a valid run id",
            fix="use up to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return run_id


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, immediate: bool = False) -> Iterator[None]:
    """One explicit transaction on an autocommit connection; nested calls join the outer one."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_schema(conn: sqlite3.Connection) -> None:
    """WAL mode and the tables, once per store. Two processes creating one store at the same
    moment can get "database is locked" from the switch to WAL, which SQLite does not wait
    for (no busy handler there): try again for a while."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            conn.execute("PRAGMA journal_mode = WAL")
            with _transaction(conn, immediate=True):
                if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    return
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
