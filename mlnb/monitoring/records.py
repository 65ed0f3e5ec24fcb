"""The columns of the monitoring logs, and answered requests turned into Arrow record batches.

``predictions`` has one row per answered row: ``time`` (UTC, microseconds), ``request_id``
(what the answer's ``X-Request-Id`` header says, the same for every row of one request),
each training column under its own name (``feature:<name>`` where it would clash with
these), and ``prediction`` (the class as text for a classifier, the value for a regressor).
Numbers keep their types; text and categorical columns are text; datetimes and durations are
Arrow timestamps and durations.
``rejections`` has one row per rejected request: ``time``, ``reason``, ``status``, ``field``,
``row`` and ``message``.

Rows of a uniformly float schema (the common case) go from each request's matrix to Arrow
columns in one copy; other schemas go through one ``pandas.concat`` per batch.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlnb.monitoring.reference import prediction_labels

PREDICTIONS_LOG = "predictions"  # folders of a monitoring folder, one per log
REJECTIONS_LOG = "rejections"
REFERENCE_FILE = "reference.json"  # what the logged rows are compared with
TIME = "time"
REQUEST = "request_id"
PREDICTION = "prediction"
RESERVED = frozenset({TIME, REQUEST, PREDICTION, "timestamp", "mlnb_request"})
_DATETIME = re.compile(r"^datetime64\[\w+(?:,\s*(?P<tz>[^\]]+))?\]$")


def log_column(feature: str) -> str:
    """The column a feature is logged under (prefixed only where it would clash)."""
    return f"feature:{feature}" if feature in RESERVED else feature


def drift_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The features drift is scored on: all but datetimes and durations, whose training
    profile holds their text, which live values would not match (reported as not scored)."""
    return {
        str(name): spec
        for name, spec in profile.items()
        if isinstance(spec, Mapping)
        and not str(spec.get("dtype", "")).startswith(("datetime64", "timedelta64"))
    }


def arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    """The log's type for one request-schema field (``{"name", "dtype", "kind"}``)."""
    kind = feature.get("kind")
    if kind == "float":
        return pa.float64()
    if kind == "int":
        return pa.int64()
    if kind == "bool":
        return pa.bool_()
    if kind == "datetime":
        match = _DATETIME.match(str(feature.get("dtype", "")))
        return pa.timestamp("us", tz=match["tz"] if match else None)
    if kind == "timedelta":
        return pa.duration("us")
    return pa.string()


REJECTIONS_SCHEMA = pa.schema(
    [
        (TIME, pa.timestamp("us", tz="UTC")),
        ("reason", pa.string()),
        ("status", pa.int32()),
        ("field", pa.string()),
        ("row", pa.int64()),
        ("message", pa.string()),
    ]
)


@dataclass(frozen=True)
class Answered:
    """One answered request as queued by the request path."""

    at: float  # time.time() when it was answered
    frame: Any  # the validated request, a pandas DataFrame with the training columns
    predictions: Sequence[Any]
    rows: int
    # the answer's X-Request-Id; for a release's shadow batch, (id, rows) of each request
    # in it; None: numbered by the log
    request_id: str | tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True)
class Rejected:
    """One rejected request: what ``mlnb.errors.RequestRejected`` says about it."""

    at: float
    reason: str
    status: int
    field: str | None
    row: int | None
    message: str


@dataclass
class LoggedBatch:
    """One batch of the predictions log, and what monitoring counts from it."""

    batch: pa.RecordBatch
    features: dict[str, Any]  # feature name -> its values, oldest first (numpy or Arrow)
    labels: dict[str, int]  # classifier: rows per predicted class
    values: np.ndarray  # regressor: the predicted values (NaN where not a number)

    @property
    def rows(self) -> int:
        return int(self.batch.num_rows)

    def recent(self, rows: int) -> dict[str, np.ndarray]:
        """The newest ``rows`` values of each feature, as numpy arrays (text as objects)."""
        start = max(0, self.rows - rows)
        return {name: _numpy(values[start:]) for name, values in self.features.items()}


class PredictionRecords:
    """Turns queued answers into record batches of one fixed schema."""

    def __init__(self, features: Sequence[Mapping[str, Any]], classification: bool) -> None:
        self.names = [str(f["name"]) for f in features]
        self.types = [arrow_type(f) for f in features]
        self.classification = classification
        self.uniform_float = bool(self.types) and all(t == pa.float64() for t in self.types)
        prediction_type = pa.string() if classification else pa.float64()
        self.schema = pa.schema(
            [
                (TIME, pa.timestamp("us", tz="UTC")),
                (REQUEST, pa.string()),
                *((log_column(n), t) for n, t in zip(self.names, self.types, strict=True)),
                (PREDICTION, prediction_type),
            ]
        )
        self._worker = ""
        self._requests = 0

    def start(self, worker: int) -> None:
        self._worker = str(worker)

    def build(self, answered: Sequence[Answered]) -> LoggedBatch:
        sizes = np.fromiter((a.rows for a in answered), dtype=np.int64, count=len(answered))
        rows = int(sizes.sum())
        each = np.repeat(np.arange(len(answered)), sizes)
        micros = np.fromiter((round(a.at * 1e6) for a in answered), dtype=np.int64)
        ids, of_row = self._request_ids(answered, sizes)
        self._requests += len(answered)
        features = self._features(answered, rows)
        labels = prediction_labels(
            [p for a in answered for p in a.predictions], self.classification
        )
        prediction = _prediction_array(labels, self.classification)
        arrays = [
            pa.array(micros[each], type=self.schema.field(TIME).type),
            pc.take(ids, pa.array(of_row)),
            *(_arrow(features[n], t) for n, t in zip(self.names, self.types, strict=True)),
            prediction,
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        counts: dict[str, int] = {}
        values = np.zeros(0)
        if self.classification:
            for item in pc.value_counts(prediction).to_pylist():
                if item["values"] is not None:
                    counts[item["values"]] = int(item["counts"])
        else:
            values = prediction.to_numpy(zero_copy_only=False).astype(float)
        return LoggedBatch(batch, features, counts, values)

    def _request_ids(
        self, answered: Sequence[Answered], sizes: np.ndarray
    ) -> tuple[pa.Array, np.ndarray]:
        """The distinct request ids of a batch, and the index of each row's id."""
        ids: list[str] = []
        counts: list[int] = []
        for i, a in enumerate(answered):
            key = a.request_id
            if isinstance(key, tuple) and sum(n for _, n in key) == a.rows:
                ids.extend(rid for rid, _ in key)
                counts.extend(n for _, n in key)
            else:  # one id for the request (a batch whose counts do not add up gets its own)
                ids.append(key if isinstance(key, str) else f"{self._worker}-{self._requests + i}")
                counts.append(int(sizes[i]))
        of_row = np.repeat(np.arange(len(ids)), np.asarray(counts, dtype=np.int64))
        return pa.array(ids, type=pa.string()), of_row

    def _features(self, answered: Sequence[Answered], rows: int) -> dict[str, Any]:
        """Each feature's values over the batch: numpy arrays, or Arrow arrays of the log's
        type for what numpy does not hold as it is."""
        frames = [a.frame for a in answered]
        if self.uniform_float:
            # one row per feature, each contiguous: Arrow takes them without a copy
            matrix = np.empty((len(self.names), rows), dtype=np.float64)
            try:
                parts = [f.to_numpy(dtype=np.float64, na_value=np.nan).T for f in frames]
                np.concatenate(parts, axis=1, out=matrix)
            except (TypeError, ValueError):  # a frame that is not all numbers after all
                pass
            else:
                return {name: matrix[i] for i, name in enumerate(self.names)}
        pandas = sys.modules["pandas"]  # the frames are pandas': it is loaded
        whole = frames[0] if len(frames) == 1 else pandas.concat(frames, ignore_index=True)
        return {
            name: _column(whole[name], kind) if name in whole.columns else pa.nulls(rows, kind)
            for name, kind in zip(self.names, self.types, strict=True)
        }


def _arrow(values: Any, kind: pa.DataType) -> pa.Array:
    """A feature's values as the log's Arrow array: a contiguous float64 column without a
    copy (``pa.array`` with an explicit type would copy and check every value)."""
    if not isinstance(values, np.ndarray):
        return values
    if values.dtype == np.float64 and kind == pa.float64():
        return pa.array(values)
    return pa.array(values, type=kind)


def _column(series: Any, kind: pa.DataType) -> pa.Array:
    """A pandas column as an Arrow array of the log's type; as text when it does not cast."""
    try:
        array = pa.Array.from_pandas(series)
        if isinstance(array, pa.ChunkedArray):  # pandas' Arrow-backed columns
            array = array.combine_chunks()
        if isinstance(array.type, pa.DictionaryType):
            array = array.dictionary_decode()
        return array if array.type == kind else array.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        texts = [None if _missing(v) else str(v) for v in series.tolist()]
        if kind == pa.string():
            return pa.array(texts, type=pa.string())
        return pa.nulls(len(texts), kind)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    array: pa.Array = values
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=float)
    return np.asarray(array.to_pylist(), dtype=object)


def _prediction_array(labels: list[Any], classification: bool) -> pa.Array:
    """Classes as text, values as floats (None where the serve code gave no number)."""
    if classification:
        try:  # pyarrow checks the types: every label text, the common case
            return pa.array(labels, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if v is None else str(v) for v in labels], type=pa.string())
    try:
        if not any(type(v) is bool for v in labels):
            return pa.array(labels, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    numbers = [
        float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        for v in labels
    ]
    return pa.array(numbers, type=pa.float64())


def rejections_batch(rejected: Sequence[Rejected]) -> pa.RecordBatch:
    columns = {
        TIME: [round(r.at * 1e6) for r in rejected],
        "reason": [r.reason for r in rejected],
        "status": [r.status for r in rejected],
        "field": [r.field for r in rejected],
        "row": [r.row for r in rejected],
        "message": [r.message[:1000] for r in rejected],
    }
    arrays = [
        pa.array(columns[f.name], type=pa.int64() if f.name == TIME else f.type)
        for f in REJECTIONS_SCHEMA
    ]
    arrays[0] = arrays[0].cast(REJECTIONS_SCHEMA.field(TIME).type)
    return pa.RecordBatch.from_arrays(arrays, schema=REJECTIONS_SCHEMA)
