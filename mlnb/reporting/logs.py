"""Reading a service's monitoring folder, one segment at a time.

A generated service writes, under one folder per Bento version::

    reference.json          what the service compares live rows with
    predictions/*.arrow     one row per answered row (Arrow IPC files, see segments.py)
    rejections/*.arrow      one row per rejected request

Everything needed for a report is in that folder, so it can be copied to another machine.
Readers get a table of about ``CHUNK_ROWS`` rows at a time (segments hold batches of at most
32,768 rows), so their memory does not grow with the log. A folder written by an older mlnb
(JSON lines under ``predictions/data/data.*.log``) is read in chunks of lines and given the
same columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from mlnb import bounded_json
from mlnb.errors import InputLimitError
from mlnb.errors import MonitorLogError as MonitorLogError  # re-exported: it lived here
from mlnb.monitoring import segments
from mlnb.monitoring.records import (
    PREDICTIONS_LOG,
    REFERENCE_FILE,
    REQUEST,
    TIME,
)
from mlnb.reporting.reference import reference_problem

MAX_REFERENCE_BYTES = 64 * 1024 * 1024
MAX_REFERENCE_DEPTH = 32  # the service writes 5 levels (features, a feature, its bins, ...)
CHUNK_ROWS = 32_768  # rows a reader holds at once (whole batches: a little more)
LEGACY_CHUNK_LINES = 20_000
MAX_LINE_BYTES = 1024 * 1024  # a longer legacy line is counted unreadable, not parsed
MAX_LINE_DEPTH = 32  # a legacy record is an object of values, a prediction a few levels more


@dataclass
class MonitorFolder:
    """A monitoring folder: its reference, and its logs as a stream of tables."""

    path: Path
    reference: dict[str, Any]
    unreadable: list[str] = field(default_factory=list)  # what could not be read, and why
    unreadable_lines: int = 0  # legacy JSON lines that were not JSON objects

    @property
    def features(self) -> list[str]:
        return list(self.reference.get("features", {}))

    def tables(
        self, log: str = PREDICTIONS_LOG, columns: list[str] | None = None
    ) -> Iterator[pa.Table]:
        """The rows of ``log`` as tables of about ``CHUNK_ROWS`` rows (only ``columns`` when
        given), oldest segment first; a segment's rows are never split across two tables
        within one of its batches."""
        folder = self.path / log
        found = segments.segments(folder)
        if not found and (folder / "data").is_dir():
            yield from self._legacy_tables(folder / "data", columns)
            return
        for path in found:
            chunk: list[pa.RecordBatch] = []
            rows = 0
            try:
                for batch in segments.read_segment(path, columns=columns):
                    chunk.append(batch)
                    rows += batch.num_rows
                    if rows >= CHUNK_ROWS:
                        yield pa.Table.from_batches(chunk)
                        chunk, rows = [], 0
            except (pa.ArrowInvalid, OSError) as exc:
                self.unreadable.append(f"{path.name}: {exc}")
            if chunk:
                yield pa.Table.from_batches(chunk)

    def _legacy_tables(self, data: Path, columns: list[str] | None) -> Iterator[pa.Table]:
        for file in sorted(data.glob("data.*.log*")):
            chunk: list[dict[str, Any]] = []
            with file.open("rb") as handle:
                for line in _bounded_lines(handle, MAX_LINE_BYTES):
                    record = self._legacy_record(line)
                    if record is not None:
                        chunk.append(record)
                    if len(chunk) >= LEGACY_CHUNK_LINES:
                        yield legacy_table(chunk, columns)
                        chunk = []
            if chunk:
                yield legacy_table(chunk, columns)

    def _legacy_record(self, line: bytes | None) -> dict[str, Any] | None:
        """One JSON-lines record; None for a blank line, and for one that is too long
        (``line`` None), too deep, not JSON (bare NaN included) or not an object, counted."""
        if line is not None and not line.strip():
            return None
        try:
            if line is None:
                raise bounded_json.too_large("a log line", MAX_LINE_BYTES + 1, MAX_LINE_BYTES)
            record = bounded_json.loads(
                line.decode("utf-8", "replace"),
                max_bytes=MAX_LINE_BYTES,
                max_depth=MAX_LINE_DEPTH,
                what="a log line",
                constants=False,
            )
        except InputLimitError:
            self.unreadable_lines += 1
            return None
        if not isinstance(record, dict):
            self.unreadable_lines += 1
            return None
        return record


_LEGACY_NAMES = {"timestamp": TIME, "mlnb_request": REQUEST}


def legacy_table(records: list[dict[str, Any]], columns: list[str] | None = None) -> pa.Table:
    """JSON-lines records of an older mlnb as a table with today's column names and types."""
    names = list(dict.fromkeys(name for record in records for name in record))
    arrays = {}
    for name in names:
        target = _LEGACY_NAMES.get(name, name)
        if name == "request_id" and "mlnb_request" in names:
            continue  # BentoML's own id was never set; mlnb's is the request
        if columns is not None and target not in columns:
            continue
        values = [record.get(name) for record in records]
        arrays[target] = _legacy_array(target, values)
    return pa.table(arrays) if arrays else pa.table({TIME: pa.array([], pa.timestamp("us"))})


def _legacy_array(name: str, values: list[Any]) -> pa.Array:
    if name == TIME:
        text = pa.array([v if isinstance(v, str) else None for v in values], pa.string())
        for kind in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):  # offset, or none: UTC
            try:
                return text.cast(kind).cast(pa.timestamp("us", tz="UTC"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return pa.nulls(len(values), pa.timestamp("us", tz="UTC"))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def open_monitor_folder(folder: str | Path) -> MonitorFolder:
    path = Path(folder)
    reference_path = path / REFERENCE_FILE
    if not reference_path.is_file():
        raise MonitorLogError(
            f"{path} is not an mlnb monitoring folder: it has no {REFERENCE_FILE}",
            fix="pass the folder a generated service logs to (shown by `mlnb serve`), "
            "or a Bento tag",
        )
    return MonitorFolder(path, read_reference(reference_path))


def read_reference(path: Path) -> dict[str, Any]:
    """``reference.json``, checked: an object of bounded size and depth, of the shape the
    service writes (:func:`mlnb.monitoring.reference.reference_problem`)."""
    fix = "copy the whole monitoring folder again (the service rewrites the file when it starts)"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_REFERENCE_BYTES + 1)
        reference = bounded_json.loads(
            data,
            max_bytes=MAX_REFERENCE_BYTES,
            max_depth=MAX_REFERENCE_DEPTH,
            what=str(path),
            fix=fix,
        )
    except OSError as exc:
        raise MonitorLogError(f"cannot read {path}: {exc.strerror or exc}", fix=fix) from None
    except InputLimitError as error:
        raise MonitorLogError(f"cannot read {error.message}", fix=fix) from None
    problem = reference_problem(reference)
    if problem:
        raise MonitorLogError(f"cannot read {path}: {problem}", fix=fix)
    return reference  # type: ignore[no-any-return]


def _bounded_lines(handle: BinaryIO, limit: int) -> Iterator[bytes | None]:
    """The lines of a binary file, each read with at most ``limit`` + 1 bytes in memory: a
    longer line is skipped to its end and given as None."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line
            continue
        while line and not line.endswith(b"\n"):  # the rest of the long line, in pieces
            line = handle.readline(limit + 1)
        yield None
