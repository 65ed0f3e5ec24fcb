"""A release's ``traffic/`` log counted per version and role, in bounded memory.

One row per version that handled a request (see the release monitoring folder in
``mlnb release``'s docs): ``time``, ``request_id``, ``version`` (``primary`` | ``candidate``),
``role`` (``answer`` | ``shadow``), ``status`` (HTTP; 0 when a shadow call failed before any
answer), ``latency_ms``, ``rows`` and ``error``. Per version and role this keeps counts of
calls by outcome and a :class:`BoundedSample` of latencies (exact quantiles up to its size, a
uniform sample beyond), so memory does not grow with the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from mlnb.monitoring.records import REQUEST, TIME

TRAFFIC_LOG = "traffic"
VERSIONS = ("primary", "candidate")
ROLES = ("answer", "shadow")
TRAFFIC_COLUMNS = [TIME, REQUEST, "version", "role", "status", "latency_ms", "rows", "error"]
SAMPLE_SIZE = 100_000  # values a sample holds: its quantiles are exact up to this many
MAX_ERROR_TEXTS = 20  # distinct error messages kept per version and role

Floats = npt.NDArray[np.float64]


class BoundedSample:
    """A uniform sample of at most ``size`` of the finite values added: every one of them
    while there are no more (quantiles are then exact, as pandas computes them), then the
    ``size`` values with the smallest random keys. Count, sum and mean stay exact."""

    def __init__(self, size: int = SAMPLE_SIZE, seed: int = 0) -> None:
        self.size = max(int(size), 1)
        self.count = 0
        self.total = 0.0
        self._rng = np.random.default_rng(seed)
        self._values: Floats = np.zeros(0)
        self._keys: Floats = np.zeros(0)

    def add(self, values: npt.ArrayLike) -> None:
        numbers = np.asarray(values, dtype=float).reshape(-1)
        numbers = numbers[np.isfinite(numbers)]
        if not len(numbers):
            return
        self.count += len(numbers)
        self.total += float(numbers.sum())
        keys = self._rng.random(len(numbers))
        self._values = np.concatenate([self._values, numbers])
        self._keys = np.concatenate([self._keys, keys])
        if len(self._values) > self.size:
            keep = np.argpartition(self._keys, self.size - 1)[: self.size]
            self._values, self._keys = self._values[keep], self._keys[keep]

    @property
    def exact(self) -> bool:
        return self.count <= self.size

    @property
    def values(self) -> Floats:
        return self._values

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (linear interpolation, pandas' default); None when empty."""
        return float(np.quantile(self._values, q)) if len(self._values) else None


@dataclass
class RoleTraffic:
    """What one version did in one role: calls by outcome, rows, latencies."""

    calls: int = 0
    ok: int = 0  # answered: status 2xx or 3xx
    rejected: int = 0  # status 4xx
    errors: int = 0  # status 5xx, or 0 (a shadow call that failed before any answer)
    rows: int = 0  # rows of the calls that were answered
    bad_latency: int = 0  # calls without a usable latency (null, NaN, negative)
    latency: BoundedSample = field(default_factory=BoundedSample)
    statuses: Counter[int] = field(default_factory=Counter)
    error_texts: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "rejected": self.rejected,
            "errors": self.errors,
            "rows": self.rows,
            "latency_ms": latency_json(self.latency),
            "calls_without_latency": self.bad_latency,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_texts": dict(self.error_texts.most_common()),
        }


def latency_json(sample: BoundedSample) -> dict[str, Any] | None:
    if not sample.count:
        return None
    return {
        "p50": _round(sample.quantile(0.5)),
        "p99": _round(sample.quantile(0.99)),
        "mean": _round(sample.mean),
        "calls": sample.count,
        "exact": sample.exact,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class TrafficTally:
    """The traffic log's rows, counted a table at a time."""

    def __init__(self, sample_size: int = SAMPLE_SIZE) -> None:
        self.roles = {
            (version, role): RoleTraffic(latency=BoundedSample(sample_size, seed=k))
            for k, (version, role) in enumerate((v, r) for v in VERSIONS for r in ROLES)
        }
        self.rows = 0
        self.bad_rows = 0  # rows without a known version, role or HTTP status
        self.first: int | None = None  # µs since the epoch
        self.last: int | None = None

    def add(self, table: pa.Table) -> None:
        n = table.num_rows
        if not n:
            return
        self.rows += n
        version = _texts(table, "version")
        role = _texts(table, "role")
        status = _integers(table, "status")
        latency = _floats(table, "latency_ms")
        rows = _integers(table, "rows")
        errors = _texts(table, "error")
        self._times(table)
        known = (status == 0) | ((status >= 200) & (status <= 599))
        counted = np.zeros(n, dtype=bool)
        for (v, r), tally in self.roles.items():
            mask = (version == v) & (role == r) & known
            if not mask.any():
                continue
            counted |= mask
            codes = status[mask]
            ok = (codes >= 200) & (codes < 400)
            tally.calls += int(mask.sum())
            tally.ok += int(ok.sum())
            tally.rejected += int(((codes >= 400) & (codes < 500)).sum())
            tally.errors += int(((codes == 0) | (codes >= 500)).sum())
            tally.rows += int(np.clip(rows[mask][ok], 0, None).sum())
            seconds = latency[mask]
            usable = np.isfinite(seconds) & (seconds >= 0)
            tally.bad_latency += int((~usable).sum())
            tally.latency.add(seconds[usable])
            for code, count in zip(*np.unique(codes, return_counts=True), strict=True):
                tally.statuses[int(code)] += int(count)
            for text in errors[mask][~ok].tolist():
                if text is None:
                    continue
                text = str(text)[:300]
                if text in tally.error_texts or len(tally.error_texts) < MAX_ERROR_TEXTS:
                    tally.error_texts[text] += 1
                else:
                    tally.error_texts["(other errors)"] += 1
        self.bad_rows += int((~counted).sum())

    def _times(self, table: pa.Table) -> None:
        if TIME not in table.column_names:
            return
        try:
            micros = table[TIME].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return
        values = np.asarray(micros.to_numpy(zero_copy_only=False), dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            low, high = int(values.min()), int(values.max())
            self.first = low if self.first is None else min(self.first, low)
            self.last = high if self.last is None else max(self.last, high)


def _texts(table: pa.Table, name: str) -> npt.NDArray[Any]:
    if name not in table.column_names:
        return np.full(table.num_rows, None, dtype=object)
    try:
        column = table[name].cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(table.num_rows, None, dtype=object)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _floats(table: pa.Table, name: str) -> Floats:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    try:
        column = table[name].cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(table.num_rows, np.nan)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=float)


def _integers(table: pa.Table, name: str) -> npt.NDArray[np.int64]:
    """A column as integers, -1 where a row has none (or the column is not numbers)."""
    values = _floats(table, name)
    whole = np.isfinite(values) & (values == np.round(values))
    return np.where(whole, values, -1).astype(np.int64)
