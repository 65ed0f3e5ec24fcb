"""The feedback log (labels as Arrow IPC segments) and the live figures computed from logs.

``<folder>/feedback/`` holds one row per label received (:data:`FEEDBACK_SCHEMA`), written by
:class:`FeedbackLog`'s thread in the worker that answers ``POST /feedback``, in segments as
:mod:`mlnb.monitoring.segments` writes them. Offline, :func:`read_feedback` reads it and
:func:`live_metrics` joins it to a monitoring folder's ``predictions/`` (an ordinary service's,
or a release's ``primary/`` and ``candidate/``) by request id and row position within the
request, for ``mlnb monitor``. What a label is compared as (:func:`same_class`, a regressor's
absolute error) and when a live figure is past its bound (:func:`breaches`) are defined here
once, for the live book (:mod:`mlnb.monitoring.feedback`) and for the logs alike.

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
import pyarrow.compute as pc

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
RELEASE_FILE = "release.json"  # a release's monitoring folder holds it
MAX_RELEASE_BYTES = 1024 * 1024


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


# --- offline: the logs of a monitoring folder --------------------------------------------


def read_feedback(folder: str | Path) -> pa.Table:
    """Every label in ``<folder>/feedback/`` (complete and partial segments), oldest first,
    with the columns of :data:`FEEDBACK_SCHEMA`; an empty table when there are none. A
    segment that cannot be read is skipped with a warning."""
    batches: list[pa.RecordBatch] = []
    for path in segments.segments(Path(folder) / FEEDBACK_LOG):
        try:
            batches.extend(segments.read_segment(path))
        except (pa.ArrowInvalid, OSError) as exc:
            logger.warning("mlnb feedback: %s cannot be read: %s", path.name, exc)
    return pa.Table.from_batches(batches, schema=FEEDBACK_SCHEMA)


def live_metrics(
    folder: str | Path,
    *,
    training: Mapping[str, Mapping[str, Any]] | None = None,
    window: int = DEFAULT_WINDOW,
    margin: float = DEFAULT_MARGIN,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> dict[str, dict[str, Any]]:
    """Per version, the live figures of a monitoring folder's labels, from its logs.

    ``folder`` is a release's folder (``release.json``, ``feedback/``, and ``primary/`` and
    ``candidate/`` with their ``predictions/``: versions ``primary`` and ``candidate``, their
    training metrics from ``release.json``) or an ordinary service's (``reference.json``,
    ``predictions/``, ``feedback/``: one version, named by the Bento version; its training
    metrics come from ``training``, ``{version: {"accuracy": ...}}``, which also overrides a
    release's). Each label is joined to the row at its position among the rows logged under
    its request id; a row labelled twice counts once (the first label).

    Returns ``{version: {"tag", "metric" ("accuracy" | "mae"), "training" (float | None),
    "live" (over the last ``window`` joined labels, None before any), "labels" (joined),
    "window" (labels ``live`` is over), "unmatched" (labels with no logged row in this
    version), "alerting" (live past the training figure by ``margin``, over at least
    ``min_labels`` labels)}}``.
    """
    root = Path(folder)
    task, versions = _layout(root)
    labels = read_feedback(root)
    first = _first_labels(labels)
    wanted = pa.array(sorted({rid for rid, _ in first}), pa.string())
    figures = {}
    for name, (tag, predictions, metrics) in versions.items():
        metric, trained = training_metric(task, (training or {}).get(name, metrics))
        logged = _logged_rows(predictions, wanted)
        scores: list[float] = []
        for (request_id, row), (text, value) in first.items():
            predicted = logged.get((request_id, row))
            if predicted is None:
                continue
            if task == "classification":
                scores.append(1.0 if same_class(predicted, text) else 0.0)
            elif isinstance(predicted, float) and value is not None and math.isfinite(predicted):
                scores.append(abs(predicted - value))
        recent = scores[-window:]
        live = math.fsum(recent) / len(recent) if recent else None
        past = breaches(metric, live, trained, margin) if len(recent) >= min_labels else None
        figures[name] = {
            "tag": tag,
            "metric": metric,
            "training": trained,
            "live": live,
            "labels": len(scores),
            "window": len(recent),
            "unmatched": len(first) - len(scores),
            "alerting": bool(past),
        }
    return figures


def _layout(root: Path) -> tuple[str, dict[str, tuple[str | None, Path, Mapping[str, Any]]]]:
    """The task, and each version's tag, predictions log and training metrics."""
    from mlnb import bounded_json  # offline only: a Bento ships no mlnb.bounded_json
    from mlnb.errors import InputLimitError
    from mlnb.monitoring.logs import MonitorLogError, read_reference

    release = root / RELEASE_FILE
    if not release.is_file():
        reference = read_reference(root / "reference.json")  # checked; names the fix
        tag = str(reference.get("bento") or "")
        version = tag.partition(":")[2] or tag or root.name
        return str(reference.get("task")), {version: (tag or None, root / "predictions", {})}
    fix = "copy the whole release folder again (the release service writes the file)"
    try:
        data = bounded_json.loads(
            release.read_bytes(), max_bytes=MAX_RELEASE_BYTES, max_depth=16, what=str(release),
            fix=fix,
        )  # fmt: skip
    except OSError as exc:
        raise MonitorLogError(f"cannot read {release}: {exc.strerror or exc}", fix=fix) from None
    except InputLimitError as error:
        raise MonitorLogError(f"cannot read {error.message}", fix=fix) from None
    versions = data.get("versions") if isinstance(data, dict) else None
    if not isinstance(versions, dict) or not all(isinstance(v, dict) for v in versions.values()):
        raise MonitorLogError(f"{release} has no versions object", fix=fix)
    found = {
        str(name): (spec.get("tag"), root / str(name) / "predictions", spec.get("metrics") or {})
        for name, spec in versions.items()
    }
    return str(data.get("task")), found


def _first_labels(labels: pa.Table) -> dict[tuple[str, int], tuple[str, float | None]]:
    """Each labelled ``(request id, row)``'s first label: its text and value, in log order."""
    first: dict[tuple[str, int], tuple[str, float | None]] = {}
    columns = [labels.column(n).to_pylist() for n in ("request_id", "row", "label", "value")]
    for request_id, row, text, value in zip(*columns, strict=True):
        first.setdefault((request_id, row), (text, value))
    return first


def _logged_rows(folder: Path, wanted: pa.Array) -> dict[tuple[str, int], Any]:
    """The logged prediction of each row of the ``wanted`` requests, by (request id, position
    among the rows of that request id)."""
    rows: dict[tuple[str, int], Any] = {}
    seen: dict[str, int] = {}
    if not len(wanted):
        return rows
    for path in segments.segments(folder):
        try:
            for batch in segments.read_segment(path, columns=["request_id", "prediction"]):
                if batch.num_columns < 2:
                    continue
                kept = batch.filter(pc.is_in(batch.column(0), value_set=wanted))
                ids = kept.column(0).to_pylist()
                for request_id, predicted in zip(ids, kept.column(1).to_pylist(), strict=True):
                    position = seen.get(request_id, 0)
                    seen[request_id] = position + 1
                    rows[(request_id, position)] = predicted
        except (pa.ArrowInvalid, OSError) as exc:
            logger.warning("mlnb feedback: %s cannot be read: %s", path.name, exc)
    return rows
