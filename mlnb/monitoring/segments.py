"""Monitoring logs as Arrow IPC files: one segment per worker and interval, renamed when complete.

A log (``predictions``, ``rejections``) is a folder of segments::

    <log>/20261201T101500123456-4242.arrow            complete: an Arrow IPC file (Feather v2)
    <log>/.20261201T101500123456-4242.arrow.partial   being written by worker 4242

A worker appends one record batch per flush to its open segment and, once the segment is
``rotate_seconds`` old or ``rotate_bytes`` large (or the worker stops), writes the file's
footer and renames it into place, so a reader never sees half a file: pandas
(``pd.read_feather`` per file, or ``pyarrow.dataset.dataset(folder, format="arrow")``), polars
(``pl.scan_ipc``) and DuckDB over a pyarrow dataset read the folder as it is (names starting
with ``.`` are skipped by all of them). ``mlnb monitor`` also reads the ``.partial`` segments
(an IPC file without its footer is an IPC stream after the 8-byte magic) up to their last whole
batch. A segment left ``.partial`` by a worker that died is sealed by the next worker that
starts on the folder.

Imports pyarrow only: this module runs inside the serving worker.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

SUFFIX = ".arrow"
PARTIAL = ".partial"
ROTATE_SECONDS = 60.0
ROTATE_BYTES = 64 * 1024 * 1024
MAX_BATCH_ROWS = 32_768  # rows per record batch written (about 8 MB of 30 float features)
FILE_MAGIC = b"ARROW1\x00\x00"  # an IPC file starts with it; the stream format follows
_NAME = re.compile(r"^\.?(?P<start>\d{8}T\d{12})-(?P<worker>\d+)\.arrow(?:\.partial)?$")


def segment_name(started: float, worker: int) -> str:
    moment = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    return f"{moment.strftime('%Y%m%dT%H%M%S%f')}-{worker}{SUFFIX}"


class SegmentWriter:
    """Appends record batches of one schema to this worker's segments of one log folder.

    Not thread-safe: one thread (the worker's monitor) writes.
    """

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema,
        *,
        rotate_seconds: float = ROTATE_SECONDS,
        rotate_bytes: int = ROTATE_BYTES,
        worker: int | None = None,
    ) -> None:
        self.folder = folder
        self.schema = schema
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.worker = os.getpid() if worker is None else worker
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file: Any = None
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._partial: Path | None = None
        self._started = 0.0
        seal_orphans(folder)

    def write(self, batch: pa.RecordBatch, now: float | None = None) -> None:
        """Append one batch; the segment is completed first when it is old or large enough."""
        now = time.time() if now is None else now
        self.rotate_if_due(now)
        if self._writer is None:
            self._open(now)
        assert self._writer is not None
        for start in range(0, batch.num_rows, MAX_BATCH_ROWS):  # a reader holds one at a time
            # unbuffered: a reader of the partial segment sees each batch whole
            self._writer.write_batch(batch.slice(start, MAX_BATCH_ROWS))

    def rotate_if_due(self, now: float | None = None) -> None:
        """Complete the open segment once it is ``rotate_seconds`` old or ``rotate_bytes``
        large, also when nothing new came in: a quiet service's rows become readable too."""
        if self._writer is None:
            return
        now = time.time() if now is None else now
        if now - self._started >= self.rotate_seconds or self._file.tell() >= self.rotate_bytes:
            self.close()

    def close(self) -> None:
        """Complete the open segment (footer, then the rename that makes it visible)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        finally:
            self._file.close()
        assert self._partial is not None
        os.replace(self._partial, complete_path(self._partial))

    def _open(self, now: float) -> None:
        name = segment_name(now, self.worker)
        self._partial = self.folder / f".{name}{PARTIAL}"
        # Arrow's own file: writes do not go through a Python file object (and the GIL)
        self._file = pa.OSFile(str(self._partial), "wb")
        self._writer = ipc.new_file(self._file, self.schema)
        self._started = now


def complete_path(partial: Path) -> Path:
    return partial.with_name(partial.name[1 : -len(PARTIAL)])


def segments(folder: Path) -> list[Path]:
    """A log's segments, complete and partial, oldest first (by start time, then worker)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((match["start"], int(match["worker"]), path.name.startswith("."), path))
    return [path for *_, path in sorted(found)]


def is_partial(path: Path) -> bool:
    return path.name.endswith(PARTIAL)


def read_segment(
    path: Path, *, partial: bool | None = None, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The record batches of a segment (only ``columns``, when given). A partial one (by its
    name, unless ``partial`` says) yields its whole batches and stops at a torn tail; a
    complete one that cannot be read raises ``pa.ArrowInvalid``.

    Batches are read into memory, not mapped: a reader's memory is what it holds, whatever
    the page cache does with the file. Each batch is read whole (Arrow reads a batch's body
    in one piece, also when asked for some of its fields), hence the small batches.
    """
    with pa.OSFile(str(path), "rb") as source:
        if not (is_partial(path) if partial is None else partial):
            reader = ipc.open_file(source)
            batches: Iterator[pa.RecordBatch] = (
                reader.get_batch(i) for i in range(reader.num_record_batches)
            )
            schema = reader.schema
        else:
            if source.size() < len(FILE_MAGIC) or source.read(len(FILE_MAGIC)) != FILE_MAGIC:
                return
            try:
                stream = ipc.open_stream(source)
            except (pa.ArrowInvalid, OSError):  # not even the schema is whole yet
                return
            batches, schema = _whole_batches(stream), stream.schema
        wanted = None if columns is None else [c for c in columns if c in schema.names]
        for batch in batches:
            yield batch if wanted is None else batch.select(wanted)


def _whole_batches(stream: ipc.RecordBatchStreamReader) -> Iterator[pa.RecordBatch]:
    """A stream's batches up to the end, or up to a batch still being written."""
    while True:
        try:
            yield stream.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):  # the batch being written
            return


def seal_orphans(folder: Path) -> list[Path]:
    """Complete the partial segments of workers that are gone: their whole batches, as a
    normal segment. Each is first renamed to a name of this process's, so two workers
    starting at once never seal the same one."""
    sealed = []
    for path in segments(folder):
        match = _NAME.match(path.name)
        if not is_partial(path) or match is None or _alive(int(match["worker"])):
            continue
        claimed = path.with_name(f"{path.name}.{os.getpid()}.sealing")
        try:
            os.replace(path, claimed)
        except FileNotFoundError:  # another worker claimed it
            continue
        batches = list(read_segment(claimed, partial=True))
        target = complete_path(path)
        if batches:
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with pa.OSFile(str(tmp), "wb") as sink:
                writer = ipc.new_file(sink, batches[0].schema)
                for batch in batches:
                    writer.write_batch(batch)
                writer.close()
            os.replace(tmp, target)
            sealed.append(target)
        claimed.unlink()
    return sealed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
