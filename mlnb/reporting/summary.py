"""What a monitoring folder says: traffic, rejections, predictions, drift and data contract
violations, now and over time.

The logs are read one segment at a time and only counts are kept: rows, requests, predicted
classes (or prediction bins), rejection reasons, each feature's counts over its training bins
per period of time, and the newest ``window`` rows (the drift window, as the service scores
it). Memory stays bounded by one segment plus the window, whatever the size of the log.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlnb.monitoring.alerts import DEFAULT_WINDOW
from mlnb.monitoring.drift import (
    DEFAULT_PSI_THRESHOLD,
    MIN_ROWS,
    FeatureBins,
    FeatureDrift,
    feature_bins,
    numeric_bin_counts,
    score,
)
from mlnb.monitoring.records import (
    PREDICTION,
    REJECTIONS_LOG,
    REQUEST,
    TIME,
    drift_profile,
    log_column,
)
from mlnb.reporting.contract_summary import ContractSummary, ContractTally
from mlnb.reporting.logs import MonitorFolder

PERIODS = 12
TIME_SAMPLE = 100_000


@dataclass
class MonitorSummary:
    bento: str
    rows_logged: int
    requests: int
    rejected_requests: int
    rejection_reasons: dict[str, int]
    drift: list[FeatureDrift]
    window_rows: int
    predictions: dict[str, Any]
    drift_over_time: list[dict[str, Any]] = field(default_factory=list)
    unreadable_lines: int = 0
    unreadable_segments: list[str] = field(default_factory=list)
    first: str | None = None  # time of the oldest and newest logged row (ISO 8601)
    last: str | None = None
    window_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    contract: ContractSummary | None = None  # None: the Bento has no contract rules

    @property
    def rejection_rate(self) -> float:
        total = self.requests + self.rejected_requests
        return self.rejected_requests / total if total else 0.0

    @property
    def drifted_features(self) -> list[str]:
        return [d.feature for d in self.drift if d.drifted]

    def to_json(self) -> dict[str, Any]:
        return {
            "bento": self.bento,
            "rows_logged": self.rows_logged,
            "requests": self.requests,
            "rejected_requests": self.rejected_requests,
            "rejection_rate": round(self.rejection_rate, 6),
            "rejection_reasons": self.rejection_reasons,
            "first": self.first,
            "last": self.last,
            "window_rows": self.window_rows,
            "drifted_features": self.drifted_features,
            "features": {d.feature: d.to_json() for d in self.drift},
            "predictions": self.predictions,
            "drift_over_time": self.drift_over_time,
            "unreadable_lines": self.unreadable_lines,
            "unreadable_segments": self.unreadable_segments,
            "contract": None if self.contract is None else self.contract.to_json(),
        }


def summarise(logs: MonitorFolder, periods: int = PERIODS) -> MonitorSummary:
    reference = logs.reference
    profile = drift_profile(reference.get("features", {}))
    window = int(reference.get("window", DEFAULT_WINDOW))
    thresholds = {str(k): float(v) for k, v in (reference.get("thresholds") or {}).items()}
    default_threshold = float(reference.get("default_threshold", DEFAULT_PSI_THRESHOLD))
    bins = {name: b for name, b in ((n, feature_bins(n, s)) for n, s in profile.items()) if b}
    contract = ContractTally.of(reference)
    columns = [TIME, REQUEST, PREDICTION, *(log_column(name) for name in bins)]
    columns = list(dict.fromkeys([*columns, *(contract.columns if contract else [])]))

    bounds = _period_bounds(logs, periods)
    logs.unreadable.clear()  # what could not be read is counted by the next, whole pass
    logs.unreadable_lines = 0
    traffic = _Traffic(reference.get("prediction"))
    recent = _NewestRows(window)
    over_time = _Periods(bounds, bins)
    for table in logs.tables(columns=columns):
        traffic.add(table)
        recent.add(table)
        over_time.add(table)
        if contract is not None:
            contract.add(table)
        del table  # before the next one is read: one chunk in memory at a time
    window_table = recent.table()
    window_values = {name: _values(window_table, log_column(name)) for name in bins}
    drift = [
        score(b, b.count(window_values[name]), thresholds.get(name, default_threshold))
        for name, b in bins.items()
    ]
    reasons = _rejection_reasons(logs)
    return MonitorSummary(
        bento=str(reference.get("bento", "")),
        rows_logged=traffic.rows,
        requests=traffic.requests,
        rejected_requests=sum(reasons.values()),
        rejection_reasons=dict(reasons.most_common()),
        drift=drift,
        window_rows=window_table.num_rows,
        predictions=traffic.distribution(),
        drift_over_time=over_time.points(thresholds, default_threshold),
        unreadable_lines=logs.unreadable_lines,
        unreadable_segments=list(logs.unreadable),
        first=_iso(int(bounds[0])) if bounds is not None else None,
        last=_iso(int(bounds[-1])) if bounds is not None else None,
        window_values=window_values,
        contract=None if contract is None else contract.summary(),
    )


def _period_bounds(logs: MonitorFolder, periods: int) -> np.ndarray | None:
    """Times (µs since the epoch) that cut the log into periods of about equal rows, at
    most ``periods`` of about 1.25 ``MIN_ROWS`` rows or more: a pass over the time column that
    keeps an even sample of at most ``TIME_SAMPLE`` times."""
    kept: list[np.ndarray] = []
    step, held, rows = 1, 0, 0
    for table in logs.tables(columns=[TIME]):
        times = _micros(table)
        del table
        rows += len(times)
        kept.append(times[::step])
        held += len(kept[-1])
        if held > 2 * TIME_SAMPLE:  # keep every other one from now on, and of what was kept
            kept = [np.concatenate(kept)[::2]]
            held, step = len(kept[0]), step * 2
    if not rows:
        return None
    sample = np.sort(np.concatenate(kept))
    count = max(1, min(periods, rows * 4 // (5 * MIN_ROWS)))  # slack for ties at the cuts
    bounds = np.quantile(sample, np.linspace(0.0, 1.0, count + 1), method="lower")
    return np.asarray(bounds, dtype=np.int64)


class _Traffic:
    """Rows, requests and the distribution of predictions."""

    def __init__(self, prediction_reference: Mapping[str, Any] | None) -> None:
        self.reference = prediction_reference
        self.rows = 0
        self.requests = 0
        self._last_request: Any = None
        self._labels: Counter[str] = Counter()
        edges = ((prediction_reference or {}).get("histogram") or {}).get("edges") or []
        self._edges = edges
        self._value_counts = np.zeros(max(len(edges) - 1, 0), dtype=np.int64)
        self._numbers = 0

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if REQUEST in table.column_names and table.num_rows:
            ids = table[REQUEST]
            distinct = pc.count_distinct(ids).as_py()
            # a request's rows are logged together; a legacy chunk may split one
            if self._last_request is not None and ids[0].as_py() == self._last_request:
                distinct -= 1
            self.requests += distinct
            self._last_request = ids[-1].as_py()
        if PREDICTION not in table.column_names:
            return
        column = table[PREDICTION]
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            if self.reference and self.reference.get("kind") == "categorical":
                column = column.cast(pa.string())
            else:
                values = column.to_numpy(zero_copy_only=False).astype(float)
                values = values[np.isfinite(values)]
                self._numbers += len(values)
                if len(self._edges) > 1:
                    self._value_counts += numeric_bin_counts(self._edges, values)
                return
        for item in pc.value_counts(column.cast(pa.string())).to_pylist():
            if item["values"] is not None:
                self._labels[item["values"]] += int(item["counts"])

    def distribution(self) -> dict[str, Any]:
        """Training against live predictions, as fractions over the same categories or bins."""
        reference = self.reference
        if not reference:
            live_rows = sum(self._labels.values()) or self._numbers
            return {"kind": "unknown", "live_rows": live_rows}
        if reference.get("kind") == "categorical":
            training = {str(k): float(v) for k, v in reference.get("frequencies", {}).items()}
            total = sum(self._labels.values())
            labels = list(dict.fromkeys([*training, *self._labels]))
            return {
                "kind": "categorical",
                "labels": labels,
                "training": [training.get(label, 0.0) for label in labels],
                "live": [self._labels.get(label, 0) / total if total else 0.0 for label in labels],
                "live_rows": total,
            }
        counts = np.asarray((reference.get("histogram") or {}).get("counts", []), dtype=float)
        return {
            "kind": "numeric",
            "edges": self._edges,
            "training": (counts / max(counts.sum(), 1)).round(6).tolist(),
            "live": (self._value_counts / max(self._numbers, 1)).round(6).tolist(),
            "live_rows": self._numbers,
        }


class _NewestRows:
    """The newest ``size`` rows seen so far, by time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        if not table.num_rows or self.size <= 0:
            return
        if self._kept is not None:
            table = pa.concat_tables([self._kept, table], promote_options="permissive")
        if table.num_rows > self.size:
            newest = pc.select_k_unstable(table, self.size, [(TIME, "descending")])
            table = table.take(newest)
        self._kept = table.combine_chunks()

    def table(self) -> pa.Table:
        if self._kept is None:
            return pa.table({TIME: pa.array([], pa.timestamp("us", tz="UTC"))})
        order = pc.sort_indices(self._kept, [(TIME, "ascending")])
        return self._kept.take(order)


class _Periods:
    """Each feature's bin counts per period between consecutive ``bounds``."""

    def __init__(self, bounds: np.ndarray | None, bins: Mapping[str, FeatureBins]) -> None:
        self.bounds = bounds
        self.periods = 0 if bounds is None else len(bounds) - 1
        self.bins = bins
        self.rows = np.zeros(self.periods, dtype=np.int64)
        self.counts: dict[tuple[int, str], np.ndarray] = {}

    def add(self, table: pa.Table) -> None:
        if self.bounds is None or not table.num_rows:
            return
        inner = self.bounds[1:-1]
        period = np.searchsorted(inner, _micros(table, missing=int(self.bounds[0])), "right")
        present = np.unique(period)
        values = {name: _values(table, log_column(name)) for name in self.bins}
        for number in present.tolist():
            mask = period == number
            whole = len(present) == 1
            self.rows[number] += int(mask.sum())
            for name, feature in self.bins.items():
                counts = feature.count(values[name] if whole else values[name][mask])
                key = (number, name)
                self.counts[key] = counts + self.counts[key] if key in self.counts else counts

    def points(
        self, thresholds: Mapping[str, float], default_threshold: float
    ) -> list[dict[str, Any]]:
        """PSI per feature for every period with enough rows, oldest first."""
        if self.bounds is None:
            return []
        points = []
        for number in range(self.periods):
            if self.rows[number] < MIN_ROWS:
                continue
            psi = {}
            for name, feature in self.bins.items():
                counts = self.counts.get((number, name))
                if counts is not None:
                    threshold = thresholds.get(name, default_threshold)
                    psi[name] = score(feature, counts, threshold).psi
            points.append(
                {
                    "start": _iso(int(self.bounds[number])),
                    "end": _iso(int(self.bounds[number + 1])),
                    "rows": int(self.rows[number]),
                    "psi": psi,
                }
            )
        return points


def _rejection_reasons(logs: MonitorFolder) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for table in logs.tables(REJECTIONS_LOG, columns=["reason"]):
        if "reason" not in table.column_names:
            reasons["unknown"] += table.num_rows
            continue
        for item in pc.value_counts(table["reason"].cast(pa.string())).to_pylist():
            reasons[item["values"] if item["values"] is not None else "unknown"] += int(
                item["counts"]
            )
    return reasons


def _micros(table: pa.Table, missing: int | None = None) -> np.ndarray:
    """Each row's time in µs since the epoch; rows without one dropped, or given ``missing``."""
    if TIME not in table.column_names:
        rows = 0 if missing is None else table.num_rows
        return np.full(rows, 0 if missing is None else missing, dtype=np.int64)
    column = table[TIME].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    column = pc.drop_null(column) if missing is None else pc.fill_null(column, missing)
    return np.array(column.to_numpy(zero_copy_only=False), dtype=np.int64)  # a copy


def _values(table: pa.Table, column: str) -> np.ndarray:
    """A column as numpy: numbers as floats (null as NaN), anything else as objects."""
    if column not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    data = table[column]
    if pa.types.is_floating(data.type) or pa.types.is_integer(data.type):
        return np.asarray(data.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    if pa.types.is_boolean(data.type):
        return np.asarray(data.to_pylist(), dtype=object)
    return np.asarray(data.cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def _iso(micros: int) -> str:
    moment = datetime.datetime.fromtimestamp(micros / 1e6, datetime.timezone.utc)
    return moment.isoformat()
