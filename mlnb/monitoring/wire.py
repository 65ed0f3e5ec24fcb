"""What a serving worker sends its recorder process: length-prefixed pickled batches on a pipe.

The worker answers requests; everything monitoring does with an answer (JSON lines, metrics,
drift, alerts) happens in a separate recorder process, so that it takes nothing from the
worker's event loop (they would share the GIL). Every ``FLUSH_SECONDS`` the worker packs
what it answered into one :class:`Batch`: the rows of each request schema as one matrix.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
from dataclasses import dataclass, field
from typing import Any

_HEADER = struct.Struct("!I")
PIPE_BYTES = 1 << 20  # Linux's default limit for a pipe an unprivileged process widens
# Sent to a stopping worker's children as well: the recorder outlives them and ends when the
# worker closes the pipe (started with them blocked, then ignoring them).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@dataclass
class Answered:
    """The requests answered with one list of column names, rows stacked in order."""

    names: list[str]
    values: Any  # numpy matrix: rows by columns, every request's rows in turn
    times: list[float]  # time.time() when each request was answered
    rows: list[int]  # how many rows each request had
    predictions: list[Any]  # one per row, as answered


@dataclass
class Rejected:
    """One rejected request: what ``mlnb.errors.RequestRejected`` says about it."""

    reason: str
    status: int
    field: str | None
    row: int | None


@dataclass
class Batch:
    answered: list[Answered] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.answered or self.rejected)


def widen_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Let a whole batch fit in the pipe (Linux): one write and one read instead of one per
    64 KiB, each of which wakes the other process. Elsewhere, or past the system's limit
    (``/proc/sys/fs/pipe-max-size``), the pipe keeps its size."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return
    command = getattr(fcntl, "F_SETPIPE_SZ", None)
    if command is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, command, size)


def write_message(fd: int, message: object) -> None:
    """Send one message; blocks while the recorder is behind (the pipe is full)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def read_message(fd: int) -> Any | None:
    """The next message, or None at the end of the stream (the worker is gone)."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    payload = _read_exactly(fd, length)
    if payload is None:
        return None
    return pickle.loads(payload)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
