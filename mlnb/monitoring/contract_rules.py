"""The data contract's soft rules at serve time: answered rows counted against them, never refused.

``mlnb build`` puts the contract's rules for the model's input columns into
``mlnb_service.json`` (``"contract"``, see :func:`mlnb.contract.serve_rules`); the service's
monitor and ``mlnb monitor`` count the logged rows against them with :class:`ContractCounter`:

- ``range``: one violation per value below the contract's ``min`` or above its ``max``
  (numbers, and datetimes compared as instants); a missing value is never a range violation;
- ``category``: one violation per present value outside the contract's ``categories``;
- ``null_share``: judged over tumbling windows of ``window`` rows (default 1,000) per feature:
  a window breaks the rule when its share of missing values is more than ``SIGMAS`` (3)
  binomial standard errors above the contract's limit ``p``, i.e. when its missing values
  number more than ``n p + 3 sqrt(n p (1 - p))``: a service that misses values at exactly the
  allowed rate breaks it about once in 700 windows, not every other one. A limit of 0 is
  broken by any missing value, a limit of 1 never. One violation per broken window; the rows
  of a window not yet complete are judged when it is.

Everything here is vectorised over a batch (numpy for float columns, pyarrow compute for the
rest) and imports only numpy and pyarrow: it runs in the Bento.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RANGE, CATEGORY, NULL_SHARE = "range", "category", "null_share"
RULES = (RANGE, CATEGORY, NULL_SHARE)
DEFAULT_WINDOW = 1000
SIGMAS = 3.0
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


@dataclass(frozen=True)
class FeatureRules:
    """One feature's soft rules, in the terms of its logged values.

    ``low`` and ``high`` are numbers (datetimes: microseconds since the epoch, UTC, or wall
    clock for a column without a time zone, as Arrow keeps them); ``categories`` the allowed
    values; ``null_share`` the largest share of missing values allowed, None for no rule.
    """

    name: str
    kind: str  # the request schema's kind: float, int, bool, datetime, timedelta, ...
    low: float | int | None = None
    high: float | int | None = None
    categories: tuple[Any, ...] | None = None
    null_share: float | None = None

    @property
    def rules(self) -> tuple[str, ...]:
        """The rules this feature is counted against, in :data:`RULES` order."""
        found = []
        if self.low is not None or self.high is not None:
            found.append(RANGE)
        if self.categories is not None:
            found.append(CATEGORY)
        if self.null_share is not None and self.null_share < 1.0:
            found.append(NULL_SHARE)
        return tuple(found)

    def null_limit(self, rows: int) -> float:
        """The most missing values a window of ``rows`` rows may hold without breaking."""
        p = float(self.null_share or 0.0)
        return rows * p + SIGMAS * math.sqrt(rows * p * (1.0 - p))


def compile_rules(
    contract: Mapping[str, Any] | None, features: Sequence[Mapping[str, Any]]
) -> list[FeatureRules]:
    """The rules of ``contract`` (``mlnb_service.json``'s ``"contract"``) for the request
    schema's ``features`` (``{"name", "kind", "dtype"}``), in schema order.

    A rule that does not fit the column's kind (a range of text, a duration's range, a bound
    that is not a number or an ISO 8601 time) is left out rather than guessed at, and so is
    a null share of 0 for a field the request schema marks not ``nullable``: the service
    refuses a missing value there before any row is answered.
    """
    if not contract or not isinstance(contract.get("features"), Mapping):
        return []
    found = []
    for feature in features:
        name, kind = str(feature["name"]), str(feature.get("kind", ""))
        spec = contract["features"].get(name)
        if not isinstance(spec, Mapping):
            continue
        low, high = (_bound(spec.get(key), kind) for key in ("min", "max"))
        categories = spec.get("categories")
        rules = FeatureRules(
            name,
            kind,
            low,
            high,
            tuple(categories) if isinstance(categories, list) and kind != "bool" else None,
            _null_share(spec.get("null_share"), feature.get("nullable")),
        )
        if rules.rules:
            found.append(rules)
    return found


def _null_share(value: Any, nullable: Any) -> float | None:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        return None
    return None if value == 0 and nullable is False else float(value)


def _bound(value: Any, kind: str) -> float | int | None:
    if value is None or kind in ("bool", "timedelta", "category", "string"):
        return None
    if kind == "datetime":
        return _micros(value) if isinstance(value, str) else None
    return value if _is_number(value) and not math.isnan(value) else None


def _micros(text: str) -> int | None:
    """An ISO 8601 time as microseconds since the epoch (one without a zone read as UTC,
    which is how Arrow keeps a column without a zone)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- masks of one batch ----------------------------------------------------------------


def violation_masks(rules: FeatureRules, values: Any) -> dict[str, np.ndarray]:
    """For one feature's values (numpy, or an Arrow array of its log type): a boolean mask of
    the rows that break each of its per-row rules (``range``, ``category``), and of its
    missing values (under ``null_share``)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return _numpy_masks(rules, values)
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return _arrow_masks(rules, array)


def _numpy_masks(rules: FeatureRules, values: np.ndarray) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    if rules.low is not None or rules.high is not None:
        # NaN compares False both ways: a missing value is never out of range
        outside = np.zeros(len(values), dtype=bool)
        if rules.low is not None:
            outside |= values < rules.low
        if rules.high is not None:
            outside |= values > rules.high
        masks[RANGE] = outside
    if rules.categories is not None:
        allowed = np.asarray([c for c in rules.categories if _is_number(c)], dtype=float)
        masks[CATEGORY] = ~np.isin(values, allowed) & ~np.isnan(values)
    if NULL_SHARE in rules.rules:
        masks[NULL_SHARE] = np.isnan(values)
    return masks


def _arrow_masks(rules: FeatureRules, array: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    kind = array.type
    missing = pc.is_null(array, nan_is_null=pa.types.is_floating(kind))
    if (rules.low is not None or rules.high is not None) and _ordered(kind):
        outside = pa.array(np.zeros(len(array), dtype=bool))
        for bound, compare in ((rules.low, pc.less), (rules.high, pc.greater)):
            if bound is not None:
                outside = pc.or_(outside, pc.fill_null(compare(array, _scalar(bound, kind)), False))
        masks[RANGE] = _bools(outside)
    if rules.categories is not None:
        allowed = _value_set(rules.categories, kind)
        inside = pc.is_in(array, value_set=allowed) if allowed is not None else None
        outside_set = (
            pc.invert(pc.fill_null(inside, False))
            if inside is not None
            else pa.array(np.ones(len(array), dtype=bool))
        )
        masks[CATEGORY] = _bools(outside_set) & ~_bools(missing)
    if NULL_SHARE in rules.rules:
        masks[NULL_SHARE] = _bools(missing)
    return masks


def _ordered(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_timestamp(kind)
    )


def _scalar(bound: float | int, kind: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(kind):  # microseconds, in the column's own unit
        scale = {"s": 1e-6, "ms": 1e-3, "us": 1, "ns": 1000}[kind.unit]
        return pa.scalar(int(int(bound) * scale), type=kind)
    return pa.scalar(float(bound) if isinstance(bound, float) else bound)


def _value_set(categories: Sequence[Any], kind: pa.DataType) -> pa.Array | None:
    """The allowed values as an Arrow array of the column's type; text compared as text."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.array([str(c) for c in categories if c is not None], type=kind)
    try:
        return pa.array([c for c in categories if c is not None]).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None  # no category can be a value of this column


def _bools(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


# --- counting over batches and windows -------------------------------------------------


@dataclass
class WindowVerdict:
    """One complete window: its rows and its violations by ``(feature, rule)``; for
    ``null_share`` 1 when the window broke it (its missing values are in ``missing``)."""

    rows: int
    violations: dict[tuple[str, str], int]
    missing: dict[str, int] = field(default_factory=dict)


@dataclass
class ContractBatch:
    """What one batch added: violations to count by ``(feature, rule)`` (only those with
    any), and the windows it completed, oldest first."""

    violations: dict[tuple[str, str], int]
    windows: list[WindowVerdict]


class ContractCounter:
    """Counts batches of logged rows against the rules, carrying the open window across them.

    Give it the batches in the order the rows were answered: the windows are cut from that
    order, a batch's rows split exactly where a window ends.
    """

    def __init__(self, rules: Iterable[FeatureRules], window: int = DEFAULT_WINDOW) -> None:
        self.rules = list(rules)
        self.window = max(1, int(window))
        self.filled = 0  # rows in the open window
        self._open: dict[tuple[str, str], int] = {}  # violations (nulls) in the open window
        self.totals: dict[tuple[str, str], int] = {
            (r.name, rule): 0 for r in self.rules for rule in r.rules
        }

    def add(self, columns: Mapping[str, Any], rows: int) -> ContractBatch:
        """Count one batch: ``columns`` maps each feature's name to its ``rows`` values (a
        feature missing from it counts as all missing)."""
        added: dict[tuple[str, str], int] = {}
        if rows <= 0 or not self.rules:
            return ContractBatch(added, [])
        first = self.window - self.filled
        starts = np.arange(first, rows, self.window)
        starts = np.concatenate([[0], starts[starts > 0]]).astype(np.intp)
        complete = 0 if rows < first else 1 + (rows - first) // self.window
        windowed: dict[tuple[str, str], np.ndarray] = {}
        for rules in self.rules:
            values = columns.get(rules.name)
            if values is None:
                values = pa.nulls(rows, _arrow_kind(rules.kind))
            for rule, mask in violation_masks(rules, values).items():
                key = (rules.name, rule)
                count = int(np.count_nonzero(mask)) if rule != NULL_SHARE else 0
                if count:
                    added[key] = count
                windowed[key] = np.add.reduceat(mask.astype(np.int64), starts)
        windows = [self._verdict(windowed, i, self.window) for i in range(complete)]
        if len(starts) > complete:  # the batch ends inside a window: it stays open
            carried = self._open if not complete else {}
            self._open = {
                key: carried.get(key, 0) + int(sums[-1]) for key, sums in windowed.items()
            }
            self.filled = self.filled + rows if not complete else (rows - first) % self.window
        else:
            self._open, self.filled = {}, 0
        for window in windows:
            for key, count in window.violations.items():
                if key[1] == NULL_SHARE and count:
                    added[key] = added.get(key, 0) + count
        for key, count in added.items():
            self.totals[key] = self.totals.get(key, 0) + count
        return ContractBatch(added, windows)

    def _verdict(
        self, windowed: Mapping[tuple[str, str], np.ndarray], index: int, rows: int
    ) -> WindowVerdict:
        by_name = {r.name: r for r in self.rules}
        violations: dict[tuple[str, str], int] = {}
        missing: dict[str, int] = {}
        for key, sums in windowed.items():
            count = int(sums[index]) + (self._open.get(key, 0) if index == 0 else 0)
            if key[1] == NULL_SHARE:
                missing[key[0]] = count
                count = int(count > by_name[key[0]].null_limit(rows))
            violations[key] = count
        return WindowVerdict(rows, violations, missing)


def _arrow_kind(kind: str) -> pa.DataType:
    return {"float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}.get(kind, pa.string())


def features_of(rules: Iterable[FeatureRules]) -> dict[str, list[str]]:
    """Each feature's rules, for reports: ``{feature: [rule, ...]}``."""
    return {r.name: list(r.rules) for r in rules}
