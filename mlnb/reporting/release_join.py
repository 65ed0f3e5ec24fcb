"""The two versions of a release compared on the same rows, and against the labels fed back.

A row is named by its request id and its position within the request: a version logs a
request's rows together, in order (``predictions/``), and a label names the same pair
(``feedback/``: ``request_id``, ``row``). Joining logs that may be larger than memory, the
rows are first written, by a hash of their request id, to partition files in a temporary
folder (Arrow IPC, one per log and partition, about ``PARTITION_ROWS`` rows in each); each
partition is then joined on its own. Memory is one chunk of a log while partitioning, one
partition while joining, and a :class:`BoundedSample` of differences.

A key that occurs more than once in one log (a caller that sent the same ``X-Request-Id``
twice) names no one row: its rows are counted as ambiguous and left out. Labels are scored
as :mod:`mlnb.monitoring.feedback_log` scores them for ``/metrics``: a row labelled twice counts
once (its first label), a class is right when its text equals the label's (``"1"`` equals
``"1.0"``), and the live figure is over the newest ``window`` labels as well as over all.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from mlnb.monitoring.feedback_log import DEFAULT_WINDOW
from mlnb.monitoring.records import PREDICTION, REQUEST
from mlnb.reporting.release_traffic import SAMPLE_SIZE, BoundedSample

ROW = "row"
KEYS = [REQUEST, ROW]
FEEDBACK_LOG = "feedback"
FEEDBACK_COLUMNS = [REQUEST, ROW, "label", "value"]
ORDER = "order"  # a label's place in the feedback log
PARTITION_ROWS = 250_000  # rows of all logs together per partition
MAX_PARTITIONS = 256
MAX_EXAMPLES = 10  # disagreeing rows kept as examples
MAX_CLASSES = 1_000  # distinct predicted classes counted by name; the rest as one


@dataclass
class VersionRows:
    """One version's predictions log, as the join read it."""

    rows: int = 0
    bad_values: int = 0  # rows without a usable prediction (null, NaN, not a number)
    without_request: int = 0  # rows without a request id: never joined
    classes: Counter[str] = field(default_factory=Counter)
    values: BoundedSample = field(default_factory=BoundedSample)


@dataclass
class Agreement:
    """The candidate against the primary on the rows both answered (shadow)."""

    kind: str  # "classes" (share of equal predictions) or "values" (candidate - primary)
    matched: int = 0
    equal: int = 0
    primary_only: int = 0  # primary rows the candidate has no prediction for
    candidate_only: int = 0
    ambiguous: int = 0  # rows of keys logged more than once by a version
    differences: BoundedSample = field(default_factory=BoundedSample)
    abs_total: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        if self.kind != "classes" or not self.matched:
            return None
        return self.equal / self.matched

    @property
    def mean_abs(self) -> float | None:
        count = self.differences.count
        return self.abs_total / count if count else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "matched_rows": self.matched,
            "primary_only_rows": self.primary_only,
            "candidate_only_rows": self.candidate_only,
            "ambiguous_rows": self.ambiguous,
        }
        if self.kind == "classes":
            data["equal_rows"] = self.equal
            data["rate"] = _round(self.rate)
        else:
            d = self.differences
            data["differences"] = {
                "rows": d.count,
                "mean": _round(d.mean),
                "mean_abs": _round(self.mean_abs),
                "p5": _round(d.quantile(0.05)),
                "p50": _round(d.quantile(0.5)),
                "p95": _round(d.quantile(0.95)),
                "exact": d.exact,
            }
        data["examples"] = self.examples
        return data


@dataclass
class LiveMetric:
    """A version's predictions against the labels fed back for them: over every label, and
    over the newest ``window`` of them (in the log's order), as ``/metrics`` shows it."""

    metric: str  # "accuracy" (classifiers) or "mae" (regressors)
    window: int = DEFAULT_WINDOW
    labelled: int = 0  # labelled rows this version has a prediction for
    total: float = 0.0  # rows right (classifiers), or the sum of absolute errors
    _order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    _scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def add(self, order: np.ndarray, scores: np.ndarray) -> None:
        """Labels' places in the feedback log and their scores (1/0, or the absolute error)."""
        self.labelled += len(scores)
        self.total += float(scores.sum())
        kept = np.concatenate([self._order, order])
        values = np.concatenate([self._scores, scores])
        if len(kept) > self.window:
            newest = np.argpartition(kept, len(kept) - self.window)[len(kept) - self.window :]
            kept, values = kept[newest], values[newest]
        self._order, self._scores = kept, values

    @property
    def value(self) -> float | None:
        """Over every label."""
        return self.total / self.labelled if self.labelled else None

    @property
    def recent(self) -> float | None:
        """Over the newest ``window`` labels."""
        return float(self._scores.mean()) if len(self._scores) else None

    @property
    def recent_labels(self) -> int:
        return len(self._scores)


@dataclass
class FeedbackRows:
    labels: int = 0  # rows labelled (a row labelled again counts once: its first label)
    bad: int = 0  # rows without a request id, a row number or a label
    repeated: int = 0  # labels of a row labelled before: not counted
    unmatched: int = 0  # labels of rows no version logged a prediction for
    not_numbers: int = 0  # a regressor's labels that are not numbers

    def to_json(self) -> dict[str, int]:
        return {
            "labels": self.labels,
            "bad_rows": self.bad,
            "repeated": self.repeated,
            "unmatched": self.unmatched,
            "not_numbers": self.not_numbers,
        }


@dataclass
class Joined:
    versions: dict[str, VersionRows]
    agreement: Agreement | None
    live: dict[str, LiveMetric]
    feedback: FeedbackRows | None


class _Positions:
    """Each row's position within its request, carried from one chunk of a log to the next."""

    def __init__(self) -> None:
        self.last: Any = None
        self.count = 0

    def of(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        if not n:
            return np.zeros(0, dtype=np.int64)
        change = np.ones(n, dtype=bool)
        change[1:] = ids[1:] != ids[:-1]
        starts = np.flatnonzero(change)
        positions: np.ndarray = np.arange(n) - starts[np.cumsum(change) - 1]
        if self.last is not None and ids[0] == self.last:
            positions[: starts[1] if len(starts) > 1 else n] += self.count
        self.last, self.count = ids[-1], int(positions[-1]) + 1
        return positions


class _Partitions:
    """Tables of several logs, each written to ``parts`` files by a hash of the request id."""

    def __init__(self, folder: Path, parts: int) -> None:
        self.folder = folder
        self.parts = parts
        self._open: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.schemas: dict[str, pa.Schema] = {}

    def add(self, log: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.schemas.setdefault(log, table.schema)
        table = table.cast(self.schemas[log])
        if self.parts == 1:
            self._write(log, 0, table)
            return
        import pandas as pd  # type: ignore[import-untyped]

        ids = np.asarray(table[REQUEST].to_numpy(zero_copy_only=False), dtype=object)
        part = (pd.util.hash_array(ids) % self.parts).astype(np.int64)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for number in range(self.parts):
            if bounds[number] < bounds[number + 1]:
                self._write(log, number, table.take(order[bounds[number] : bounds[number + 1]]))

    def _write(self, log: str, part: int, table: pa.Table) -> None:
        key = (log, part)
        if key not in self._open:
            sink = pa.OSFile(str(self.folder / f"{log}-{part}.arrow"), "wb")
            self._open[key] = (sink, ipc.new_file(sink, self.schemas[log]))
        self._open[key][1].write_table(table)

    def close(self) -> None:
        for sink, writer in self._open.values():
            writer.close()
            sink.close()
        self._open.clear()

    def read(self, part: int) -> dict[str, Any]:
        """Each log's rows of one partition, as pandas frames (absent logs left out)."""
        frames = {}
        for log in self.schemas:
            path = self.folder / f"{log}-{part}.arrow"
            if path.is_file():
                with pa.OSFile(str(path), "rb") as source:
                    frames[log] = ipc.open_file(source).read_all().to_pandas()
        return frames


def join_release(
    predictions: Mapping[str, Iterable[pa.Table]],
    feedback: Iterable[pa.Table] | None,
    *,
    classification: bool,
    shadow: bool,
    expected_rows: int,
    partition_rows: int = PARTITION_ROWS,
    sample_size: int = SAMPLE_SIZE,
    window: int = DEFAULT_WINDOW,
) -> Joined:
    """Read each version's predictions (tables with ``request_id`` and ``prediction``) and
    the labels, and compare them row by row. ``expected_rows`` (the rows of all logs) sets
    the number of partitions. Raises ``OSError`` when the temporary folder cannot be written.
    """
    parts = min(MAX_PARTITIONS, max(1, math.ceil(expected_rows / max(partition_rows, 1))))
    versions = {name: VersionRows(values=BoundedSample(sample_size)) for name in predictions}
    agreement = None
    if shadow:
        kind = "classes" if classification else "values"
        agreement = Agreement(kind, differences=BoundedSample(sample_size, seed=7))
    metric = "accuracy" if classification else "mae"
    live = {name: LiveMetric(metric, max(window, 1)) for name in predictions}
    labels = FeedbackRows() if feedback is not None else None
    with tempfile.TemporaryDirectory(prefix="mlnb-release-") as tmp:
        partitions = _Partitions(Path(tmp), parts)
        try:
            for name, tables in predictions.items():
                positions = _Positions()
                for table in tables:
                    partitions.add(name, _keyed(table, classification, versions[name], positions))
                    del table
            if feedback is not None and labels is not None:
                read = 0
                for table in feedback:
                    partitions.add(FEEDBACK_LOG, _labels(table, labels, read))
                    read += table.num_rows
                    del table
        finally:
            partitions.close()
        for part in range(parts):
            frames = partitions.read(part)
            for name in predictions:
                if name in frames:
                    frames[name] = _unique(frames[name], agreement)
            if agreement is not None:
                _compare(frames, agreement)
            if labels is not None and FEEDBACK_LOG in frames:
                _score(frames, labels, live, classification)
            del frames
    return Joined(versions, agreement, live, labels)


def _keyed(
    table: pa.Table, classification: bool, tally: VersionRows, positions: _Positions
) -> pa.Table:
    """A chunk of a predictions log as (request_id, row, prediction); rows without a
    request id or a usable prediction counted and left out."""
    import pandas as pd

    n = table.num_rows
    tally.rows += n
    ids = _strings(table, REQUEST)
    rows = positions.of(ids)
    if classification:
        labels = _strings(table, PREDICTION)
        usable = pd.notna(labels)
        prediction = pa.array(labels.tolist(), type=pa.string())
        for item in pc.value_counts(prediction).to_pylist():
            label, count = item["values"], int(item["counts"])
            if label is None:
                continue
            if label in tally.classes or len(tally.classes) < MAX_CLASSES:
                tally.classes[label] += count
            else:
                tally.classes["(other classes)"] += count
    else:
        numbers = np.zeros(n)
        if PREDICTION in table.column_names:
            column = table[PREDICTION]
            try:
                numbers = np.asarray(
                    column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float
                )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                texts = pd.Series(column.to_pylist(), dtype=object)
                numbers = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=float)
        else:
            numbers = np.full(n, np.nan)
        usable = np.isfinite(numbers)
        tally.values.add(numbers[usable])
        prediction = pa.array(numbers, type=pa.float64())
    tally.bad_values += int((~usable).sum())
    with_id = pd.notna(ids)
    tally.without_request += int((usable & ~with_id).sum())
    keep = np.flatnonzero(usable & with_id)
    return pa.table(
        {
            REQUEST: pa.array(ids[keep].tolist(), type=pa.string()),
            ROW: pa.array(rows[keep], type=pa.int64()),
            PREDICTION: prediction.take(pa.array(keep)),
        }
    )


def _labels(table: pa.Table, tally: FeedbackRows, read: int) -> pa.Table:
    """A chunk of the feedback log as (request_id, row, label, value, order); ``read``: the
    labels before it."""
    import pandas as pd

    n = table.num_rows
    ids = _strings(table, REQUEST)
    row = _numbers(table, ROW)
    label = _strings(table, "label")
    value = _numbers(table, "value")
    has_id = pd.notna(ids)
    has_label = pd.notna(label)
    whole = np.isfinite(row) & (row >= 0) & (row == np.round(row))
    good = has_id & whole & (has_label | np.isfinite(value))
    tally.bad += int(n - good.sum())
    keep = np.flatnonzero(good)
    return pa.table(
        {
            REQUEST: pa.array(ids[keep].tolist(), type=pa.string()),
            ROW: pa.array(row[keep].astype(np.int64), type=pa.int64()),
            "label": pa.array(label[keep].tolist(), type=pa.string()),
            "value": pa.array(value[keep], type=pa.float64(), from_pandas=True),
            ORDER: pa.array(keep + read, type=pa.int64()),
        }
    )


def _unique(frame: Any, agreement: Agreement | None) -> Any:
    """A version's rows of one partition without the keys it logged more than once."""
    repeated = frame.duplicated(KEYS, keep=False)
    if agreement is not None:
        agreement.ambiguous += int(repeated.sum())
    return frame[~repeated]


def _compare(frames: dict[str, Any], agreement: Agreement) -> None:
    import pandas as pd

    empty = pd.DataFrame({REQUEST: [], ROW: [], PREDICTION: []})
    primary, candidate = frames.get("primary", empty), frames.get("candidate", empty)
    both = primary.merge(candidate, on=KEYS, suffixes=("_primary", "_candidate"))
    agreement.matched += len(both)
    agreement.primary_only += len(primary) - len(both)
    agreement.candidate_only += len(candidate) - len(both)
    if not len(both):
        return
    p, c = both[f"{PREDICTION}_primary"], both[f"{PREDICTION}_candidate"]
    if agreement.kind == "classes":
        equal = (p.astype(object) == c.astype(object)).to_numpy(dtype=bool)
        agreement.equal += int(equal.sum())
        wrong = both[~equal].sort_values(KEYS).head(MAX_EXAMPLES)
        agreement.examples.extend(_example(r, None) for r in wrong.to_dict("records"))
        agreement.examples.sort(key=lambda e: (e["request_id"], e["row"]))
        del agreement.examples[MAX_EXAMPLES:]
        return
    difference = (c.astype(float) - p.astype(float)).to_numpy(dtype=float)
    agreement.differences.add(difference)
    agreement.abs_total += float(np.abs(difference[np.isfinite(difference)]).sum())
    largest = np.argsort(-np.abs(difference), kind="stable")[:MAX_EXAMPLES]
    for i, record in zip(largest.tolist(), both.iloc[largest].to_dict("records"), strict=True):
        agreement.examples.append(_example(record, float(difference[i])))
    agreement.examples.sort(key=lambda e: (-abs(e["difference"]), e["request_id"], e["row"]))
    del agreement.examples[MAX_EXAMPLES:]


def _example(record: Mapping[str, Any], difference: float | None) -> dict[str, Any]:
    data = {
        "request_id": str(record[REQUEST]),
        "row": int(record[ROW]),
        "primary": _plain(record[f"{PREDICTION}_primary"]),
        "candidate": _plain(record[f"{PREDICTION}_candidate"]),
    }
    if difference is not None:
        data["difference"] = round(difference, 6)
    return data


def _score(
    frames: dict[str, Any],
    labels: FeedbackRows,
    live: dict[str, LiveMetric],
    classification: bool,
) -> None:
    """The labels of one partition against each version's predictions of the same rows."""
    import pandas as pd

    feedback = frames[FEEDBACK_LOG].sort_values(ORDER, kind="stable")
    first = feedback.drop_duplicates(KEYS, keep="first")
    labels.repeated += len(feedback) - len(first)
    labels.labels += len(first)
    if not classification:
        numbers = np.isfinite(first["value"].to_numpy(dtype=float))
        labels.not_numbers += int((~numbers).sum())
        first = first[numbers]
    seen = np.zeros(len(first), dtype=bool)
    for name, metric in live.items():
        if name not in frames:
            continue
        keyed = frames[name].assign(_seen=True)
        joined = first.merge(keyed, on=KEYS, how="left")
        found = joined["_seen"].eq(True).to_numpy(dtype=bool)
        seen |= found
        rows = joined[found]
        if not len(rows):
            continue
        if classification:
            predicted = rows[PREDICTION].astype(object)
            text = (rows["label"].astype(object) == predicted).to_numpy(dtype=bool)
            number = pd.to_numeric(rows["label"], errors="coerce") == pd.to_numeric(
                predicted, errors="coerce"
            )
            scores = (text | number.to_numpy(dtype=bool)).astype(float)
        else:
            truth = rows["value"].to_numpy(dtype=float)
            scores = np.abs(truth - rows[PREDICTION].to_numpy(dtype=float))
        metric.add(rows[ORDER].to_numpy(dtype=np.int64), scores)
    labels.unmatched += int((~seen).sum())


def _strings(table: pa.Table, name: str) -> np.ndarray:
    """A column as an object array of text (None where missing)."""
    if name not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    column = table[name]
    try:
        column = column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        texts = [None if v is None else str(v) for v in column.to_pylist()]
        return np.asarray(texts, dtype=object)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _numbers(table: pa.Table, name: str, *, timestamp: bool = False) -> np.ndarray:
    """A column as floats (NaN where missing or not a number; µs for a timestamp)."""
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    column = table[name]
    try:
        if timestamp:
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return np.full(table.num_rows, np.nan)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return None if value is None else str(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
