"""The run store: run records, the stage cache and content-addressed objects on one disk.

Layout of a store directory (``.mlnb/`` beside the notebook by default)::

    mlnb.db                     SQLite index: runs, the stage cache, file fingerprints
    runs/<run_id>/run.json      the run record, rewritten atomically while the run goes
    runs/<run_id>/notebook.ipynb  the executed notebook
    cache/<key[:2]>/<key>.json  one stage cache entry
    objects/<sha[:2]>/<sha>     content-addressed files (stage outputs, the model, samples)

The files are the truth and the index is derived from them: an index that is missing, empty
or damaged (``PRAGMA quick_check`` at open) is set aside and rebuilt from ``run.json`` and
``cache/`` with a notice. An index row is written in the same transaction as its file, so a
failed write leaves neither. Objects are named by their sha256 and checked against it before
they are used (:meth:`Store.check_object`).

Pure core: the standard library only (sqlite3 and json). Every file is written to a temporary
name and renamed, and SQLite runs in WAL mode with a busy timeout, so several runs, builds
and readers can share one store at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from mlnb.errors import (
    RunIdError,
    RunNotFoundError,
    StoreDiskError,
    StoredObjectError,
    StoreError,
)
from mlnb.record_types import BuildEntry, RunRecord

DB_NAME = "mlnb.db"
DEFAULT_DIR = ".mlnb"
RUN_FILE = "run.json"
NOTEBOOK_FILE = "notebook.ipynb"
CACHE_DIR = "cache"
DAMAGED_DIR = "damaged"  # objects/damaged/: objects set aside because their bytes were wrong
SCHEMA_VERSION = 2  # 2: cache entries are also files under cache/
MAX_RECORD_BYTES = 64 << 20  # a run.json or cache entry larger than this is not read
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


def read_record(path: Path, limit: int = MAX_RECORD_BYTES) -> Any:
    """A JSON file mlnb wrote, read with a size limit; ``ValueError`` when it is not JSON."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"it is larger than {limit >> 20} MB")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def disk_error(exc: BaseException, where: Path | str, doing: str) -> StoreDiskError | None:
    """The disk's own reason a write failed (full, read-only, not allowed), or None."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text:
        return StoreDiskError(
            f"the disk holding {where} is full ({doing})",
            fix="free some space on that disk, or pass --store DIR (or set MLNB_STORE) "
            "on another one; nothing was recorded as done",
        )
    if code == errno.EROFS or "readonly" in text or "read-only" in text:
        return StoreDiskError(
            f"{where} is on a read-only file system ({doing})",
            fix="pass --store DIR (or set MLNB_STORE) on a writable disk",
        )
    if code in (errno.EACCES, errno.EPERM):
        return StoreDiskError(
            f"this user may not write to {where} ({doing})",
            fix="give the user write access to the store directory, or pass --store DIR",
        )
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def notice(text: str) -> None:
    """One line to the person at the terminal (stderr), for what the store repaired."""
    print(f"mlnb: {text}", file=sys.stderr)


_T = TypeVar("_T")


class Store:
    """One store directory. Opening it creates nothing; the first write creates the files."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(os.path.abspath(path))
        self.db_path = self.root / DB_NAME
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def cache_path(self, key: str) -> Path:
        if not _SHA_PATTERN.match(key):
            raise StoreError(f"{key!r} is not a cache key", fix="pass 64 hex digits")
        return self.root / CACHE_DIR / key[:2] / f"{key}.json"

    def resolve(self, relative: str) -> Path:
        """The absolute path of a path recorded relative to the store (``objects/..``)."""
        return self.root / relative

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- objects ---

    def object_problem(self, ref: Mapping[str, Any], *, rehash: bool = True) -> str | None:
        """Why the object a reference names cannot be used, or None when its bytes match."""
        return self.object_problems([ref], rehash=rehash).get(str(ref.get("path")))

    def object_problems(
        self,
        refs: Iterable[Mapping[str, Any]],
        *,
        rehash: bool = True,
        known: Mapping[str, str | None] | None = None,
    ) -> dict[str, str]:
        """Store-relative path -> why that object cannot be used, for the refs whose object
        is missing or whose bytes do not match (those are set aside).

        ``rehash=False`` trusts the fingerprint index for a file whose size and mtime are
        unchanged since it was last hashed (one lookup for all, cheap: for the plan of a run
        that loads nothing); ``known`` gives those fingerprints, read already (by
        :meth:`plan_lookup` for :meth:`object_files`); otherwise each file is hashed now.
        """
        problems, present = self._objects(refs)
        if known is None and not rehash:
            known = self.fingerprints(str(p) for _, p in present.values())
        for relative, (sha, path) in present.items():
            try:
                found = known[str(path)] if known and str(path) in known else sha256_file(path)
            except OSError as exc:
                problems[relative] = f"{relative} cannot be read ({exc.strerror or exc})"
                continue
            if found != sha:
                self.set_aside(path)
                problems[relative] = (
                    f"{relative} does not match its sha256 (damaged or changed; set aside)"
                )
        return problems

    def object_files(self, refs: Iterable[Mapping[str, Any]]) -> list[str]:
        """The absolute paths of the objects :meth:`object_problems` would check the bytes of
        (the refs named by their sha256 whose file is there)."""
        return [str(path) for _, path in self._objects(refs)[1].values()]

    def _objects(
        self, refs: Iterable[Mapping[str, Any]]
    ) -> tuple[dict[str, str], dict[str, tuple[str, Path]]]:
        """(path -> problem for refs misnamed or missing, path -> (sha256, file) for the rest)."""
        problems: dict[str, str] = {}
        present: dict[str, tuple[str, Path]] = {}
        for ref in refs:
            relative, sha = ref.get("path"), ref.get("sha256")
            if not relative:
                continue
            relative = str(relative)
            path = self.resolve(relative)
            if not isinstance(sha, str) or not _SHA_PATTERN.match(sha) or path.name != sha:
                problems[relative] = f"{relative} is not named by its sha256"
            elif not path.is_file():
                problems[relative] = f"{relative} is missing from the store"
            else:
                present[relative] = (sha, path)
        return problems, present

    def check_object(self, ref: Mapping[str, Any], what: str) -> Path:
        """The path of a referenced object whose bytes match its name; else a clear error."""
        problem = self.object_problem(ref)
        if problem:
            raise StoredObjectError(
                f"{what}: {problem}",
                fix="run the notebook again (mlnb re-runs the stages whose saved results are "
                "damaged), or see everything at once with `mlnb store verify --repair`",
            )
        return self.resolve(str(ref["path"]))

    def set_aside(self, path: Path) -> Path | None:
        """Move a damaged object to ``objects/damaged/`` (kept to look at, never loaded)."""
        target = self.root / "objects" / DAMAGED_DIR / f"{path.name}.{secrets.token_hex(3)}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError:
            return None
        return target

    # --- the SQLite index ---

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.db_path.exists() and not self._has_files():
            return None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            problem = self.index_problem()
            if problem:
                self.rebuild_index(problem)
            self._conn = self._open()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise self._index_error(exc) from None
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _create_schema(conn, self._export_cache)
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    def index_problem(self) -> str | None:
        """Why the index cannot be trusted (missing or empty with records on disk, or
        damaged), or None."""
        try:
            size = self.db_path.stat().st_size
        except FileNotFoundError:
            size = None
        wal = Path(f"{self.db_path}-wal")
        if not size and not (wal.exists() and wal.stat().st_size):
            if self._has_files():
                return "it is missing" if size is None else "it is empty (0 bytes)"
            return None
        try:
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            return f"SQLite cannot open it: {exc}"
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                return f"SQLite's quick_check says: {verdict}"
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and self._has_files():
                return "it holds no tables"
        except sqlite3.OperationalError as exc:
            if _is_damage(exc):
                return f"SQLite says: {exc}"
            raise
        except sqlite3.DatabaseError as exc:
            return f"SQLite says: {exc}"
        finally:
            conn.close()
        return None

    def _has_files(self) -> bool:
        """Whether the store holds a run record or a cache entry the index could show."""
        found = (self.root / "runs").glob(f"*/{RUN_FILE}"), (self.root / CACHE_DIR).glob("*/*.json")
        return any(next(paths, None) is not None for paths in found)

    def rebuild_index(self, problem: str) -> None:
        """Set the index aside and build a new one from run.json and cache/ (one process at
        a time; a process that waited finds the work done)."""
        with _locked(self.root / f".{DB_NAME}.lock"):
            if self.index_problem() is None:
                return
            kept = None
            if self.db_path.exists() and self.db_path.stat().st_size:
                kept = self.db_path.with_name(f"{DB_NAME}.damaged-{secrets.token_hex(3)}")
                os.replace(self.db_path, kept)
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.db_path}{suffix}")
            tmp = self.root / f".{DB_NAME}.{os.getpid()}.rebuild"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                _create_schema(conn, lambda conn: None)
                runs, entries, skipped = _fill_index(conn, self.root)
                conn.execute("PRAGMA journal_mode = DELETE")
            finally:
                conn.close()
            os.replace(tmp, self.db_path)
        where = f"; the old file is kept as {kept.name}" if kept else ""
        unread = f" ({skipped} unreadable files skipped)" if skipped else ""
        notice(
            f"the store index {self.db_path} could not be used ({problem}): rebuilt it from "
            f"{runs} run records and {entries} cache entries{unread}{where}"
        )

    def _export_cache(self, conn: sqlite3.Connection) -> None:
        """Schema 1 to 2: write each cache entry that only the index holds to cache/."""
        for key, notebook, stage, run_id, created, text in conn.execute(
            "SELECT cache_key, notebook, stage, run_id, created_at, record FROM stage_cache"
        ):
            with contextlib.suppress(StoreError, OSError, ValueError):
                path = self.cache_path(key)
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    entry = _cache_file(key, notebook, stage, run_id, created, json.loads(text))
                    write_atomic(path, dumps(entry))

    def _index_error(self, exc: BaseException) -> StoreError:
        problem = disk_error(exc, self.root, "opening the store index")
        if problem is not None:
            return problem
        return StoreError(
            f"cannot open the store index {self.db_path} ({exc})",
            fix="check that the store directory exists and is yours, or pass another --store",
        )

    def _db(self) -> sqlite3.Connection:
        conn = self._connect(create=True)
        assert conn is not None
        return conn

    def _write(self, doing: str, action: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run one write; an index found damaged is rebuilt and the write tried once more,
        and a disk that refuses names its reason."""
        for attempt in (1, 2):
            conn = self._db()
            try:
                return action(conn)
            except sqlite3.DatabaseError as exc:
                if attempt == 1 and _is_damage(exc):
                    self.close()
                    self.rebuild_index(f"SQLite says: {exc}")
                    continue
                raise disk_error(exc, self.root, doing) or StoreError(
                    f"cannot record {doing} in {self.db_path} ({exc})",
                    fix="run `mlnb store verify --repair`, or pass another --store",
                ) from None
            except OSError as exc:
                problem = disk_error(exc, self.root, doing)
                if problem is None:
                    raise
                raise problem from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- runs ---

    def create_run(self, record: RunRecord) -> Path:
        """Make the run's directory (the id must be new) and write its first record."""
        run_id = record["run_id"]
        directory = self.run_dir(run_id)
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir()
        except FileExistsError:
            raise RunIdError(
                f"a run with id {run_id!r} exists already in {self.root}",
                fix="pass another --run-id, or none to get a new id",
            ) from None
        except OSError as exc:
            raise disk_error(exc, self.root, f"creating run {run_id}") or exc from None
        self.save_run(record)
        return directory

    def save_run(self, record: RunRecord) -> None:
        """Rewrite run.json atomically and update the index, in one transaction: when either
        fails, neither changes."""
        text = dumps(record, indent=2)
        path = self.run_dir(record["run_id"]) / RUN_FILE

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                _index_run(conn, record, text)
                write_atomic(path, text)

        self._write(f"run {record['run_id']}", write)

    def get_run(self, run_id: str) -> RunRecord:
        """The run's record from its run.json, else from the index (a record written before
        ``record_version`` existed is returned as it was written: see
        :func:`mlnb.record_types.record_version`)."""
        try:
            path = self.run_dir(run_id) / RUN_FILE
        except RunIdError:
            path = None
        record: RunRecord | None = None
        if path is not None:
            try:
                found = read_record(path)
                record = cast(RunRecord, found) if isinstance(found, dict) else None
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
                    fix="list this store's runs with `mlnb runs --store DIR`; a run of another "
                    "notebook is in its store: pass --notebook NB.ipynb (or --store DIR)",
                )
            record = cast(RunRecord, json.loads(row[0]))
        return self._reap_if_stale(record)

    def list_runs(self, notebook: str | Path | None = None) -> list[RunRecord]:
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

    def latest_successful(self, notebook_path: str | Path) -> RunRecord | None:
        conn = self._connect(create=False)
        if conn is None:
            return None
        row = conn.execute(
            "SELECT run_id FROM runs WHERE notebook = ? AND status = 'succeeded' "
            "ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (os.path.abspath(notebook_path),),
        ).fetchone()
        return None if row is None else self.get_run(row[0])

    def add_build(self, run_id: str, build: BuildEntry) -> RunRecord:
        """Append a build to the run's ``builds`` (one writer at a time); return the record."""

        def write(conn: sqlite3.Connection) -> RunRecord:
            with _transaction(conn, immediate=True):
                record = self.get_run(run_id)
                record.setdefault("builds", []).append(build)
                text = dumps(record, indent=2)
                conn.execute("UPDATE runs SET record = ? WHERE run_id = ?", (text, run_id))
                write_atomic(self.run_dir(run_id) / RUN_FILE, text)
            return record

        return self._write(f"the build of run {run_id}", write)

    # --- the index, row by row (for `mlnb store verify`) ---

    def indexed_runs(self) -> dict[str, str]:
        """run_id -> the record text the index holds."""
        conn = self._connect(create=False)
        rows = [] if conn is None else conn.execute("SELECT run_id, record FROM runs")
        return {run_id: text for run_id, text in rows}

    def indexed_cache(self) -> dict[str, dict[str, Any]]:
        """cache key -> the cache/ file's content that the index row stands for."""
        conn = self._connect(create=False)
        rows = (
            []
            if conn is None
            else conn.execute(
                "SELECT cache_key, notebook, stage, run_id, created_at, record FROM stage_cache"
            )
        )
        found = {}
        for key, notebook, stage, run_id, created, text in rows:
            with contextlib.suppress(ValueError):
                found[key] = _cache_file(key, notebook, stage, run_id, created, json.loads(text))
        return found

    def index_run(self, record: RunRecord) -> None:
        """Index a run record as its run.json holds it (the file is not rewritten)."""

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                _index_run(conn, record, dumps(record, indent=2))

        self._write(f"run {record['run_id']}", write)

    def unindex_run(self, run_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

        self._write(f"removing run {run_id} from the index", write)

    def index_cache_file(self, data: Mapping[str, Any]) -> None:
        """Index a cache/ file's entry, or write the file of an index row (both ways)."""

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                _index_cache(conn, data)
                path = self.cache_path(data["cache_key"])
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, dumps(data))

        self._write(f"the cached result of stage {data['stage']!r}", write)

    def _reap_if_stale(self, record: RunRecord) -> RunRecord:
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
            "cell_index": None,
            "ename": "RunAborted",
            "evalue": f"the mlnb run process (pid {pid}) ended without recording a result",
        }
        with contextlib.suppress(OSError, sqlite3.Error, StoreError):
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
        """Record a stage's result: its cache/ file and its index row, together."""
        self.index_cache_file(_cache_file(key, notebook, stage, entry["run_id"], utc_now(), entry))

    def cache_forget(self, key: str) -> None:
        """Drop one cache entry (its file and its row)."""

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM stage_cache WHERE cache_key = ?", (key,))
                with contextlib.suppress(FileNotFoundError):
                    self.cache_path(key).unlink()

        self._write("forgetting a cache entry", write)

    # --- file fingerprints ---

    def fingerprints(self, paths: Iterable[str]) -> dict[str, str | None]:
        """sha256 of each file (``None`` when it is gone), rehashing only changed files."""
        stats = _stats(paths)
        conn = self._connect(create=False)
        present = [p for p, st in stats.items() if st is not None]
        known = _fingerprint_rows(conn, present) if conn is not None and present else {}
        result, fresh = _hashes(stats, known)
        self._save_fingerprints(fresh)
        return result

    def _save_fingerprints(self, fresh: list[tuple[str, int, int, str]]) -> None:
        if fresh:
            with contextlib.suppress(sqlite3.Error, StoreError):
                conn = self._db()
                with _transaction(conn):
                    conn.executemany(
                        "INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)", fresh
                    )

    # --- what planning a run needs, in one read ---

    def plan_lookup(
        self, notebook: str, files: Iterable[str], needs: Callable[[PlanAnswer], PlanNeeds]
    ) -> PlanAnswer:
        """What the planner of a run of ``notebook`` needs from the index, read in one
        transaction (one snapshot of it).

        The first SELECT reads every cache entry of the notebook (the newest of each stage is
        ``latest``; the others answer lookups by key) and the fingerprints of ``files``. Then
        ``needs(answer)`` says which cache keys and files it still needs (the keys depend on
        the fingerprints, what a reused entry read on the keys); each round fetches them in one
        SELECT, until ``needs`` asks for nothing new. Files are hashed as by
        :meth:`fingerprints`; rows for rehashed files are written after the read.
        """
        answer = PlanAnswer()
        texts: dict[str, str] = {}  # cache key -> entry text, decoded when asked for
        stats: dict[str, os.stat_result | None] = {}
        fresh: list[tuple[str, int, int, str]] = []
        conn = self._connect(create=False)
        first, paths = True, list(dict.fromkeys(files))
        keys: list[str] = []
        with contextlib.ExitStack() as reading:
            if conn is not None:
                reading.enter_context(_transaction(conn))
            while first or keys or paths:
                found = _stats(paths)
                stats.update(found)
                present = [p for p, st in found.items() if st is not None]
                known: dict[str, tuple[int, int, str]] = {}
                newest: dict[str, tuple[str, int, str]] = {}  # stage -> (created, rowid, key)
                if conn is not None and (first or keys or present):
                    for kind, name, a, b, c, d in conn.execute(
                        *_plan_query(notebook, first, keys, present)
                    ):
                        if kind == "file":
                            known[name] = (a, b, c)
                            continue
                        texts[name] = b
                        if kind == "entry" and (c, d) > newest.get(a, ("", -1))[:2]:
                            newest[a] = (c, d, name)
                for stage, (_, _, key) in newest.items():  # its own copy, as cache_latest_all
                    answer.latest[stage] = json.loads(texts[key])
                for key in keys:
                    answer.asked.add(key)
                    if key in texts:
                        _decode(answer, key, texts)
                hashes, rehashed = _hashes(found, known)
                answer.hashes.update(hashes)
                fresh += rehashed
                first = False
                while True:
                    wanted = needs(answer)
                    keys = [k for k in dict.fromkeys(wanted.keys) if k not in answer.asked]
                    paths = [p for p in dict.fromkeys(wanted.files) if p not in stats]
                    mine = [k for k in keys if k in texts]  # the notebook's own: read already
                    for key in mine:
                        _decode(answer, key, texts)
                    keys = [k for k in keys if k not in texts]
                    if not mine or keys or paths:
                        break
        self._save_fingerprints(fresh)
        return answer


class PlanAnswer:
    """What the index answered the planner (see :meth:`Store.plan_lookup`)."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}  # stage -> its newest cache entry
        self.entries: dict[str, dict[str, Any]] = {}  # cache key -> entry, for keys that have one
        self.asked: set[str] = set()  # the cache keys looked up (found or not)
        self.hashes: dict[str, str | None] = {}  # file -> sha256, None when it is gone

    def hashes_of(self, paths: Iterable[str]) -> dict[str, str | None]:
        """:meth:`Store.fingerprints` of files the answer holds."""
        return {p: self.hashes.get(p) for p in paths}

    def lookup(self, keys: Iterable[str]) -> dict[str, dict[str, Any]] | None:
        """The entries of ``keys`` that have one, as :meth:`Store.cache_lookup`; None while
        a key has not been looked up yet."""
        keys = list(keys)
        if any(k not in self.asked for k in keys):
            return None
        return {k: self.entries[k] for k in keys if k in self.entries}


@dataclasses.dataclass(frozen=True)
class PlanNeeds:
    """The cache keys and files the planner still needs (see :meth:`Store.plan_lookup`)."""

    keys: Collection[str] = ()
    files: Collection[str] = ()


def _decode(answer: PlanAnswer, key: str, texts: Mapping[str, str]) -> dict[str, Any]:
    if key not in answer.entries:
        answer.entries[key] = json.loads(texts[key])
    answer.asked.add(key)
    return answer.entries[key]


def _plan_query(
    notebook: str, first: bool, keys: list[str], files: list[str]
) -> tuple[str, list[Any]]:
    """One SELECT of a planning round: rows ``(kind, name, a, b, c, d)``, cache entries as
    ``("entry"|"key", cache_key, stage, record, created_at, rowid)`` and fingerprints as
    ``("file", path, size, mtime_ns, sha256, NULL)``."""
    parts: list[str] = []
    params: list[Any] = []
    if first:
        parts.append(
            "SELECT 'entry', cache_key, stage, record, created_at, rowid FROM stage_cache "
            "WHERE notebook = ?"
        )
        params.append(notebook)
    if keys:
        parts.append(
            "SELECT 'key', cache_key, stage, record, created_at, rowid FROM stage_cache "
            f"WHERE cache_key IN ({','.join('?' * len(keys))})"
        )
        params += keys
    if files:
        parts.append(
            "SELECT 'file', path, size, mtime_ns, sha256, NULL FROM fingerprints "
            f"WHERE path IN ({','.join('?' * len(files))})"
        )
        params += files
    return " UNION ALL ".join(parts), params


def _stats(paths: Iterable[str]) -> dict[str, os.stat_result | None]:
    stats: dict[str, os.stat_result | None] = {}
    for path in paths:
        try:
            stats[path] = os.stat(path)
        except OSError:
            stats[path] = None
    return stats


def _fingerprint_rows(
    conn: sqlite3.Connection, paths: list[str]
) -> dict[str, tuple[int, int, str]]:
    marks = ",".join("?" * len(paths))
    return {
        path: (size, mtime, sha)
        for path, size, mtime, sha in conn.execute(
            f"SELECT path, size, mtime_ns, sha256 FROM fingerprints WHERE path IN ({marks})",
            paths,
        )
    }


def _hashes(
    stats: Mapping[str, os.stat_result | None], known: Mapping[str, tuple[int, int, str]]
) -> tuple[dict[str, str | None], list[tuple[str, int, int, str]]]:
    """sha256 of each file from its index row when size and mtime match, else hashed now;
    and the rows of the files hashed now."""
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
    return result, fresh


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RunIdError(
            f"{run_id!r} is not a valid run id",
            fix="use up to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return run_id


def _cache_file(
    key: str, notebook: str, stage: str, run_id: str, created: str, entry: Any
) -> dict[str, Any]:
    return {
        "cache_key": key,
        "notebook": notebook,
        "stage": stage,
        "run_id": run_id,
        "created_at": created,
        "entry": entry,
    }


def _index_run(conn: sqlite3.Connection, record: RunRecord, text: str) -> None:
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


def _index_cache(conn: sqlite3.Connection, data: Mapping[str, Any]) -> None:
    """The index row of a cache/ file's content (see :func:`_cache_file`)."""
    conn.execute(
        "INSERT OR REPLACE INTO stage_cache (cache_key, notebook, stage, run_id, "
        "created_at, record) VALUES (?, ?, ?, ?, ?, ?)",
        (
            data["cache_key"],
            data["notebook"],
            data["stage"],
            data["run_id"],
            data["created_at"],
            dumps(data["entry"]),
        ),
    )


def run_record_problem(record: Any, folder: str) -> str | None:
    """Why a parsed run.json cannot be indexed, or None."""
    if not isinstance(record, dict):
        return "it is not a JSON object"
    if record.get("run_id") != folder:
        return f"its run_id is {record.get('run_id')!r}, not its folder's name {folder!r}"
    notebook = record.get("notebook")
    if not isinstance(notebook, dict) or not isinstance(notebook.get("path"), str):
        return "it names no notebook path"
    for field in ("status", "started_at"):
        if not isinstance(record.get(field), str):
            return f"its {field!r} is not text"
    return None


def cache_file_problem(data: Any, key: str) -> str | None:
    """Why a parsed cache/ file cannot be indexed, or None."""
    if not isinstance(data, dict) or data.get("cache_key") != key:
        return "it is not a cache entry for its file name"
    for field in ("notebook", "stage", "run_id", "created_at"):
        if not isinstance(data.get(field), str):
            return f"its {field!r} is not text"
    if not isinstance(data.get("entry"), dict):
        return "it holds no entry"
    return None


def _fill_index(conn: sqlite3.Connection, root: Path) -> tuple[int, int, int]:
    """Index every readable run.json and cache/ file; (runs, cache entries, skipped)."""
    runs = entries = skipped = 0
    with _transaction(conn):
        for path in sorted((root / "runs").glob(f"*/{RUN_FILE}")):
            try:
                record = read_record(path)
            except (OSError, ValueError):
                skipped += 1
                continue
            if run_record_problem(record, path.parent.name):
                skipped += 1
                continue
            _index_run(conn, record, dumps(record, indent=2))
            runs += 1
        for path in sorted((root / CACHE_DIR).glob("*/*.json")):
            try:
                data = read_record(path)
            except (OSError, ValueError):
                skipped += 1
                continue
            if cache_file_problem(data, path.stem):
                skipped += 1
                continue
            _index_cache(conn, data)
            entries += 1
    return runs, entries, skipped


def _is_damage(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _create_schema(
    conn: sqlite3.Connection, export_cache: Callable[[sqlite3.Connection], None]
) -> None:
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
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == SCHEMA_VERSION:
                    return
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if version == 1:
                    export_cache(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
