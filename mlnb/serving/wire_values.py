"""JSON values of the columns that are not plain numbers or strings, both ways.

Datetimes travel as ISO 8601 strings, durations as ISO 8601 durations or numbers of seconds,
categorical values as one of the training categories; pandas' nullable integers and booleans
take null. :func:`column` turns a request's values into the training dtype (None when some
value does not fit; :func:`parse` then says which and why), :func:`to_wire` turns a frame's
column into the JSON values a client would send (the build's check rows go through it).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from mlnb.serving.schema import Field

PARSED = frozenset({"datetime", "timedelta", "category"})
_EXAMPLES = {
    "datetime": "an ISO 8601 date-time string such as '2024-03-01T12:30:00'",
    "timedelta": "an ISO 8601 duration such as 'P1DT2H' or a number of seconds",
}


def parse(field: Field, value: Any) -> tuple[Any, str | None]:
    """One non-null value as the column's Python value, or the problem with it."""
    if field.kind == "datetime":
        return _datetime(field, value)
    if field.kind == "timedelta":
        return _timedelta(value)
    if field.kind == "category":
        assert field.categories is not None
        if type(value) in (str, int, float, bool) and value in field.categories:
            return value, None
        shown = ", ".join(repr(c) for c in field.categories[:10])
        more = f", ... ({len(field.categories)} in all)" if len(field.categories) > 10 else ""
        return None, f"{value!r} is not one of the training categories ({shown}{more})"
    return value, None


def _datetime(field: Field, value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, f"expected {_EXAMPLES['datetime']}, got {_json_type(value)}"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None, f"{value[:40]!r} is not {_EXAMPLES['datetime']}"
    zone = _zone(field.dtype)
    if zone is None and moment.tzinfo is not None:
        return None, (
            f"{value[:40]!r} has a time-zone offset, and this column's training times have "
            "none: send the local time without an offset"
        )
    stamp = pd.Timestamp(moment)
    if zone is not None:
        stamp = stamp.tz_localize(zone) if stamp.tzinfo is None else stamp.tz_convert(zone)
    return stamp, None


def _timedelta(value: Any) -> tuple[Any, str | None]:
    if type(value) in (int, float):
        if not math.isfinite(value):
            return None, "infinity and NaN are not durations"
        return pd.Timedelta(seconds=value), None
    if not isinstance(value, str):
        return None, f"expected {_EXAMPLES['timedelta']}, got {_json_type(value)}"
    try:
        return pd.Timedelta(value), None
    except ValueError:
        return None, f"{value[:40]!r} is not {_EXAMPLES['timedelta']}"


def _zone(dtype: str) -> str | None:
    """``datetime64[ns, UTC]`` -> ``UTC``; None for a column without a time zone."""
    inside = dtype.partition("[")[2].rstrip("]")
    _, _, zone = inside.partition(",")
    return zone.strip() or None


def column(field: Field, values: Sequence[Any]) -> Any:
    """The values as a column of the training dtype, or None when one does not fit."""
    parsed: list[Any] = []
    for value in values:
        if value is None:
            if not field.nullable:
                return None
            parsed.append(None)
            continue
        if field.kind in PARSED:
            item, problem = parse(field, value)
            if problem is not None:
                return None
        elif field.kind == "int":
            if type(value) not in (int, float) or value != value or value != round(value):
                return None
            item = int(value)
        elif field.kind == "bool":
            if type(value) is not bool:
                return None
            item = value
        else:  # pragma: no cover - other kinds are the schema's own
            item = value
        parsed.append(item)
    if field.kind == "category":
        categories = pd.Index(list(field.categories or ()))
        return pd.Categorical(parsed, categories=categories, ordered=field.ordered)
    try:
        if field.kind == "datetime":
            return pd.DatetimeIndex(parsed).astype(field.dtype).array
        if field.kind == "timedelta":
            return pd.TimedeltaIndex(parsed).astype(field.dtype).array
        return pd.array(parsed, dtype=field.dtype)
    except (TypeError, ValueError, OverflowError):
        return None


def to_wire(kind: str, series: pd.Series) -> list[Any]:
    """A frame's column as JSON values: ISO 8601 strings, null for what is missing."""
    if kind == "datetime":
        return [None if pd.isna(v) else v.isoformat() for v in series]
    if kind == "timedelta":
        return [None if pd.isna(v) else v.isoformat() for v in series]
    values = series.astype(object).tolist()
    return [None if _missing(v) else _plain(v) for v in values]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return "a string" if isinstance(value, str) else type(value).__name__
