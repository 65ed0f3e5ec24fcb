"""The monitor inside a serving worker: queue what was answered, hand it to the recorder.

The request path only queues (a few microseconds). A thread wakes every ``FLUSH_SECONDS``,
packs what was queued into one batch and writes it to this worker's recorder process
(:mod:`mlnb.monitoring.recorder`), which does the logging, metrics, drift and alerts on the
other core. Nothing here may fail a request: callers wrap every call, and when the recorder
is gone the worker goes on serving and says so once in its log.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlnb.monitoring.wire import (
    STOP_SIGNALS,
    Answered,
    Batch,
    Rejected,
    widen_pipe,
    write_message,
)

if TYPE_CHECKING:
    from mlnb.errors import RequestRejected
    from mlnb.serving.info import ServiceInfo

logger = logging.getLogger("mlnb.monitoring")
# The longest an answered row waits before it is sent to the recorder. Each batch wakes the
# recorder, which then shares the worker's core and caches: fewer, larger batches cost the
# worker less (measured in benchmarks/bench_monitoring.py).
FLUSH_SECONDS = 0.5
# Rows answered but not yet handed to the recorder beyond which answering waits for it (about
# 50 MB of 30 float features): a recorder that cannot keep up slows the service down to its
# pace rather than the worker's memory growing without bound or rows being dropped.
MAX_BACKLOG_ROWS = 200_000
# How long a stopping worker waits for its recorder to write the last rows (BentoML itself
# waits for a stopping worker as long as it takes): a stuck recorder must not hold it forever.
STOP_TIMEOUT_S = 30.0


class LiveMonitor:
    """One worker's monitor: a queue, a thread that empties it, and the recorder process."""

    def __init__(self, info: ServiceInfo) -> None:
        self.info = info
        self._queue: queue.SimpleQueue[_Queued] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._columns_seen: object = None
        self._names: list[str] = []
        self._queued_rows = 0  # written by the request path only
        self._sent_rows = 0  # written by the thread only
        self._recorder: subprocess.Popen[bytes] | None = _start_recorder()
        self._send(info)
        self._thread = threading.Thread(target=self._loop, name="mlnb-monitor", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        logger.info("mlnb monitoring: logs in %s", info.monitor_dir)

    # -- request path: queue and return ----------------------------------------------------

    def answer(self, frame: Any, answer: dict[str, Any]) -> None:
        """Queue a validated request (a pandas DataFrame) and the answer it got."""
        if frame.columns is not self._columns_seen:  # the schema reuses one Index object
            self._columns_seen, self._names = frame.columns, [str(c) for c in frame.columns]
        # one conversion to numpy; per-column access would cost ~30 us a column
        values = frame.to_numpy()
        if values.dtype.kind == "O":  # pandas' missing markers (pd.NA, NaT) are null in the log
            values = _missing_as_none(values)
        self._queue.put((time.time(), self._names, values, answer.get("predictions")))
        self._queued_rows += len(frame)
        if self._queued_rows - self._sent_rows > MAX_BACKLOG_ROWS:
            self._wait_for_recorder()

    def _wait_for_recorder(self) -> None:
        """Hold the request path until the recorder has caught up (or is gone)."""
        logger.warning("mlnb monitoring: the recorder is behind; answering waits for it")
        while (
            self._queued_rows - self._sent_rows > MAX_BACKLOG_ROWS // 2
            and self._recorder is not None
            and self._thread.is_alive()
        ):
            time.sleep(FLUSH_SECONDS / 4)

    def reject(self, rejection: RequestRejected) -> None:
        self._queue.put(
            Rejected(rejection.reason, rejection.status, rejection.field, rejection.row)
        )

    # -- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        """Every FLUSH_SECONDS, send all that was answered as one batch.

        Waking on a timer rather than on every answer keeps batches large and the thread
        mostly asleep, so it takes little from the event loop (they share the GIL).
        """
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(FLUSH_SECONDS)
            try:
                batch = pack(_drain(self._queue))
                if batch:
                    self._send(batch)
                    self._sent_rows += sum(sum(group.rows) for group in batch.answered)
            except Exception:  # the thread must outlive any one bad batch
                logger.exception("mlnb monitoring: a batch of answers could not be sent")

    def _send(self, message: object) -> None:
        recorder = self._recorder
        if recorder is None or recorder.stdin is None:
            return
        try:
            write_message(recorder.stdin.fileno(), message)
        except OSError as exc:  # the recorder is gone: serve on, without monitoring
            self._recorder = None
            logger.error(
                "mlnb monitoring stopped: the recorder process exited (%s, exit code %s)",
                exc,
                recorder.poll(),
            )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send what is queued, close the pipe and wait for the recorder to write it all."""
        deadline = time.monotonic() + timeout
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join(timeout)
        recorder, self._recorder = self._recorder, None
        if recorder is not None and recorder.stdin is not None:
            recorder.stdin.close()
            try:
                recorder.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("mlnb monitoring: the recorder did not finish in %.0f s", timeout)


_Queued = tuple[float, list[str], Any, Any] | Rejected


def _missing_as_none(values: Any) -> Any:
    """An object matrix with None wherever pandas sees a missing value (NaN, NaT, pd.NA)."""
    import pandas as pd  # type: ignore[import-untyped]

    missing = pd.isna(values)
    if not missing.any():
        return values
    values = values.copy()
    values[missing] = None
    return values


def _drain(queued: queue.SimpleQueue[_Queued]) -> list[_Queued]:
    items: list[_Queued] = []
    while True:
        try:
            items.append(queued.get_nowait())
        except queue.Empty:
            return items


def pack(items: list[_Queued]) -> Batch:
    """One batch: the answered rows of each list of column names stacked in one matrix."""
    batch = Batch()
    groups: dict[int, list[tuple[float, list[str], Any, Any]]] = {}
    for item in items:
        if isinstance(item, Rejected):
            batch.rejected.append(item)
        else:  # requests share one list of names unless the schema changed
            groups.setdefault(id(item[1]), []).append(item)
    for group in groups.values():
        values = [values for _, _, values, _ in group]
        batch.answered.append(
            Answered(
                names=group[0][1],
                values=np.concatenate(values) if len(values) > 1 else values[0],
                times=[at for at, _, _, _ in group],
                rows=[len(v) for v in values],
                predictions=[p for _, _, _, predictions in group for p in predictions or []],
            )
        )
    return batch


def _start_recorder() -> subprocess.Popen[bytes]:
    """``python -m mlnb.monitoring.recorder`` with this worker's environment and mlnb."""
    import mlnb

    source = str(Path(mlnb.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    # BentoML sends a stopping worker's children its stop signal too. The recorder must outlive
    # the worker (it ends when the worker closes the pipe), so it starts with those signals
    # blocked (a mask survives exec) and ignores them once it can; see recorder.main.
    mask = _block_signals(STOP_SIGNALS)
    try:
        recorder = subprocess.Popen(
            [sys.executable, "-m", "mlnb.monitoring.recorder"],
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # nor does a terminal's Ctrl-C reach it
        )
    finally:
        _restore_signal_mask(mask)
    if recorder.stdin is not None:
        widen_pipe(recorder.stdin.fileno())
    return recorder


def _block_signals(signals: frozenset[signal.Signals]) -> set[int | signal.Signals] | None:
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def _restore_signal_mask(previous: set[int | signal.Signals] | None) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
