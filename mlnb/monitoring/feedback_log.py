"""The feedback log: labels as Arrow IPC segments, written in the worker.

``<folder>/feedback/`` holds one row per label received (:data:`FEEDBACK_SCHEMA`), written by
:class:`FeedbackLog`'s thread in the worker that answers ``POST /feedback``, in segments as
:mod:`mlnb.monitoring.segments` writes them; :mod:`mlnb.reporting.feedback_log` reads it back
offline. What a label is compared as (:func:`same_class`, a regressor's absolute error) and
when a live figure is past its bound (:func:`breaches`) are defined here once, for the live
book (:mod:`mlnb.monitoring.feedback`) and for the logs alike.

Imports pyarrow, no numpy or pandas: this module runs inside the serving worker.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mlnb.monitoring import segments
from mlnb.monitoring.reference import prediction_labels

if TYPE_CHECKING:
    from mlnb.serving.feedback import Label

logger = logging.getLogger("mlnb.monitoring")

FEEDBACK_LOG = "feedback"
FEEDBACK_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("label", pa.string()),  # the label as text (what a classifier's class is compared to)
        ("value", pa.float64()),  # the label as a number, when it is one
    ]
)
DEFAULT_WINDOW = 500
DEFAULT_MARGIN = 0.05
DEFAULT_MIN_LABELS = 50
FLUSH_SECONDS = 0.5  # the longest a label waits before it is written


# --- what a label and a prediction are compared as ---------------------------------------


def label_text(value: Any) -> str:
    """A label as text, as the predictions log writes a class that is not text (``str``)."""
    return value if type(value) is str else str(value)


def label_value(value: Any) -> float | None:
    """A label as a number, when it is one (bools are not)."""
    if type(value) is int or type(value) is float:
        return float(value)
    return None


def same_class(predicted: str | None, label: str) -> bool:
    """Whether a logged class equals a label's text; ``"1"`` equals ``"1.0"`` (an int label
    of a model whose classes are floats, or the other way round)."""
    if predicted is None:
        return False
    if predicted == label:
        return True
    try:
        return float(predicted) == float(label)
    except ValueError:
        return False


def class_texts(predictions: Sequence[Any]) -> list[str | None]:
    """Each prediction's class as the predictions log has it (records.py)."""
    labels = prediction_labels(predictions, True)
    return [v if type(v) is str else (None if v is None else str(v)) for v in labels]


def prediction_values(predictions: Sequence[Any]) -> list[float | None]:
    """Each prediction's value as the predictions log has it, None where it is no number."""
    values: list[float | None] = []
    for v in prediction_labels(predictions, False):
        number = float(v) if isinstance(v, (int, float)) and type(v) is not bool else None
        values.append(number if number is not None and math.isfinite(number) else None)
    return values


def training_metric(task: str, metrics: Mapping[str, Any] | None) -> tuple[str, float | None]:
    """The metric live labels are compared with (``accuracy`` or ``mae``) and the run's figure
    for it, None when the run did not log it."""
    name = "accuracy" if task == "classification" else "mae"
    value = (metrics or {}).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return name, float(value)
    return name, None


def breaches(metric: str, live: float | None, training: float | None, margin: float) -> bool | None:
    """Whether a live figure is past its bound; None when there is nothing to compare."""
    if live is None or training is None:
        return None
    if metric == "accuracy":
        return live < training - margin
    return live > training * (1 + margin)


# --- settings ----------------------------------------------------------------------------


def env_number(name: str, default: float, kind: type = float) -> Any:
    """``$name`` as a ``kind`` (float or int), ``default`` when unset or not a number."""
    text = os.environ.get(name, "").strip()
    try:
        return kind(text) if text else kind(default)
    except ValueError:
        logger.warning("mlnb feedback: %s=%r is not a number; using %s", name, text, default)
        return kind(default)


class FeedbackLog:
    """Labels queued by :meth:`FeedbackBook.receive`, written by a thread of its own."""

    def __init__(self, folder: Path) -> None:
        rotate = env_number("MLNB_LOG_ROTATE_SECONDS", segments.ROTATE_SECONDS)
        self.writer = segments.SegmentWriter(folder, FEEDBACK_SCHEMA, rotate_seconds=rotate)
        self._queue: queue.SimpleQueue[tuple[float, Sequence[Label]]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the writer: the thread, or flush() of a caller
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlnb-feedback", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def put(self, at: float, items: Sequence[Label]) -> None:
        self._queue.put((at, items))

    def _loop(self) -> None:
        while not self._stopping.wait(FLUSH_SECONDS):
            try:
                self.flush()
                with self._lock:
                    self.writer.rotate_if_due()
            except Exception:  # the thread outlives a disk that fails now and then
                logger.exception("mlnb feedback: labels could not be logged")

    def flush(self) -> None:
        with self._lock:
            queued = []
            while True:
                try:
                    queued.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if queued:
                self.writer.write(feedback_batch(queued))

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(10)
        try:
            self.flush()
            with self._lock:
                self.writer.close()
        except Exception:
            logger.exception("mlnb feedback: the last labels could not be logged")


def feedback_batch(queued: Sequence[tuple[float, Sequence[Label]]]) -> pa.RecordBatch:
    """Labels, each with the time it was received, as a record batch of the feedback log."""
    micros = [round(at * 1e6) for at, items in queued for _ in items]
    items = [item for _, batch in queued for item in batch]
    arrays = [
        pa.array(micros, pa.int64()).cast(FEEDBACK_SCHEMA.field("time").type),
        pa.array([i.request_id for i in items], pa.string()),
        pa.array([i.row for i in items], pa.int32()),
        pa.array([label_text(i.label) for i in items], pa.string()),
        pa.array([label_value(i.label) for i in items], pa.float64()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=FEEDBACK_SCHEMA)
