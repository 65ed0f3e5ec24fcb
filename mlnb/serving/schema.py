"""The request schema of a served model, and the validation that turns a JSON body into a frame.

The schema is the training data's: its columns in training order and their dtypes (from the
run's ``training_data``). A body is ``{"rows": [...]}``, each row an object keyed by the
feature names or a list of values in training order. Anything else is a
:class:`~mlnb.errors.RequestRejected` naming the row and field, never a frame the model would
choke on: BentoML's own ``Shape`` reshapes and coerces instead of validating.

Valid bodies take a fast path (bulk type checks per column, one numpy conversion); only a body
that fails them is walked value by value to name the first problems.

Values on the wire, by the training column's dtype (:mod:`mlnb.serving.wire_values`):
numbers, integers (``Int64`` also takes null when the training data had missing values),
true/false (``boolean`` likewise), strings; a datetime is an ISO 8601 string
(``"2024-03-01T12:30:00"``, a date alone is midnight; a time-zone-aware column also takes an
offset or ``Z``, and reads a time without one in its own zone, while a column without a zone
refuses an offset rather than guess); a duration is an ISO 8601 duration (``"P1DT2H"``, what
``pandas.Timedelta.isoformat`` writes) or a number of seconds; a categorical value is one of
the training categories, and the frame keeps the training categories and their order.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlnb.errors import RequestRejected
from mlnb.serving import wire_values

DEFAULT_MAX_ROWS = 10_000
MAX_REPORTED_ERRORS = 10

# kind -> the Python types JSON decoding gives for a valid value of that kind
_ACCEPTED: dict[str, frozenset[type]] = {
    "float": frozenset({float, int}),
    "int": frozenset({int, float}),
    "bool": frozenset({bool}),
    "string": frozenset({str}),
}
_DESCRIBED = {
    "float": "a number",
    "int": "an integer",
    "bool": "true or false",
    "string": "a string",
}


def dtype_kind(dtype: str) -> str:
    """The JSON kind of a numpy/pandas dtype string: float, int, bool, datetime, timedelta,
    category or string."""
    text = dtype.lower()
    if text.startswith("float"):
        return "float"
    if text.startswith(("int", "uint")):
        return "int"
    if text in ("bool", "boolean"):
        return "bool"
    if text.startswith("datetime64"):
        return "datetime"
    if text.startswith("timedelta64"):
        return "timedelta"
    if text == "category":
        return "category"
    return "string"


def pandas_nullable(dtype: str) -> bool:
    """pandas' own nullable dtypes: ``Int64``, ``UInt8``, ``Float64``, ``boolean``, ``string``."""
    return dtype[:1].isupper() or dtype in ("boolean", "string")


# kinds whose numpy dtypes hold missing values (NaN, NaT, a missing category)
_HOLDS_MISSING = frozenset({"float", "string", "datetime", "timedelta", "category"})


@dataclass(frozen=True)
class Field:
    name: str
    dtype: str
    kind: str
    nullable: bool = False
    categories: tuple[Any, ...] | None = None  # a categorical column's, in training order
    ordered: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "nullable": self.nullable,
        }
        if self.categories is not None:
            data["categories"] = list(self.categories)
            data["ordered"] = self.ordered
        return data


@dataclass(frozen=True)
class RequestSchema:
    """Training columns and dtypes, and the largest request the service accepts."""

    fields: tuple[Field, ...]
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_training_data(
        cls,
        training_data: Mapping[str, Any],
        max_rows: int = DEFAULT_MAX_ROWS,
        *,
        categories: Mapping[str, Sequence[Any]] | None = None,
    ) -> RequestSchema:
        """The schema of a run's ``training_data`` record (columns, dtypes, profile).

        ``categories`` are the categorical columns' categories (the record has only their
        dtype); a categorical column without them, or with categories that are not plain
        JSON values, takes strings.
        """
        profile = training_data.get("profile") or {}
        known = categories or {}
        fields = []
        for name in training_data["columns"]:
            dtype = str(training_data["dtypes"][name])
            kind = dtype_kind(dtype)
            nan_fraction = float((profile.get(name) or {}).get("nan_fraction") or 0.0)
            nullable = nan_fraction > 0 and (kind in _HOLDS_MISSING or pandas_nullable(dtype))
            cats = known.get(str(name))
            if kind == "category" and (cats is None or not _plain_values(cats)):
                kind = "string"
            fields.append(
                Field(
                    str(name),
                    dtype,
                    kind,
                    nullable=nullable,
                    categories=tuple(cats) if kind == "category" and cats is not None else None,
                )
            )
        return cls(tuple(fields), max_rows)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestSchema:
        fields = []
        for f in data["fields"]:
            cats = f.get("categories")
            fields.append(Field(**{**f, "categories": None if cats is None else tuple(cats)}))
        return cls(tuple(fields), int(data.get("max_rows", DEFAULT_MAX_ROWS)))

    def wire_rows(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """The frame's rows as a client sends them: JSON values (ISO 8601 times, null)."""
        columns = [wire_values.to_wire(f.kind, frame[f.name]) for f in self.fields]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*columns, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {"fields": [f.to_json() for f in self.fields], "max_rows": self.max_rows}

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def frame(self, body: Any) -> pd.DataFrame:
        """The validated rows of a decoded JSON body as a frame with the training dtypes."""
        return self._validator.frame(body)

    @functools.cached_property
    def _validator(self) -> _Validator:
        return _Validator(self)


_NUMBER_TYPES = frozenset({float, int})


class _Validator:
    def __init__(self, schema: RequestSchema) -> None:
        self.schema = schema
        self.fields = schema.fields
        self.names = schema.names
        self.index = pd.Index(self.names)  # shared by every frame: adapters can spot it
        self.name_set = frozenset(self.names)
        self.width = len(self.names)
        dtypes = {f.dtype for f in self.fields}
        uniform = all(f.kind == "float" and not f.nullable for f in self.fields)
        self.float_dtype = next(iter(dtypes)) if uniform and len(dtypes) == 1 else None

    def frame(self, body: Any) -> pd.DataFrame:
        rows = self._rows(body)
        if all(type(row) is dict and row.keys() == self.name_set for row in rows):
            if self.float_dtype:
                names = self.names
                values = [row[name] for row in rows for name in names]
                fast = self._float_frame(values, len(rows))
                if fast is not None:
                    return fast
            columns: list[Sequence[Any]] = [[row[name] for row in rows] for name in self.names]
        elif all(type(row) is list and len(row) == self.width for row in rows):
            if self.float_dtype:
                fast = self._float_frame(list(itertools.chain.from_iterable(rows)), len(rows))
                if fast is not None:
                    return fast
            columns = list(zip(*rows, strict=True))
        else:
            self._raise_row_errors(rows)
            raise AssertionError("unreachable: a row was malformed")  # pragma: no cover
        arrays = [self._column(f, column) for f, column in zip(self.fields, columns, strict=True)]
        if any(a is None for a in arrays):
            self._raise_value_errors(columns)
        frame = pd.DataFrame(dict(zip(self.names, arrays, strict=True)), copy=False)
        for field in self.fields:
            if field.kind == "string" and str(frame[field.name].dtype) != field.dtype:
                frame[field.name] = frame[field.name].astype(field.dtype)
        return frame

    def _float_frame(self, values: list[Any], rows: int) -> pd.DataFrame | None:
        """All features of one float dtype: one array, one block; None to look closer."""
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            return None
        try:
            matrix = np.array(values, dtype=self.float_dtype).reshape(rows, self.width)
        except OverflowError:
            return None
        if not np.isfinite(matrix).all():
            return None
        return pd.DataFrame(matrix, columns=self.index, copy=False)

    def _rows(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or "rows" not in body:
            raise RequestRejected(
                'the request body must be a JSON object {"rows": [...]}',
                reason="bad-body",
                status=400,
                fix='send {"rows": [{"<feature>": <value>, ...}]}',
            )
        extra = sorted(set(body) - {"rows"})
        if extra:
            raise RequestRejected(
                f"unknown key {extra[0]!r} in the request body; it takes only 'rows'",
                reason="bad-body",
                status=400,
                field=extra[0],
            )
        rows = body["rows"]
        if not isinstance(rows, list):
            raise RequestRejected(
                f"'rows' must be a list of rows, not {_json_type(rows)}",
                reason="bad-body",
                status=400,
            )
        if not rows:
            raise RequestRejected(
                "'rows' is empty: send at least one row", reason="no-rows", status=400
            )
        if len(rows) > self.schema.max_rows:
            raise RequestRejected(
                f"{len(rows)} rows is more than the {self.schema.max_rows} this service takes "
                "in one request",
                reason="too-many-rows",
                status=413,
                fix=f"split the rows into requests of at most {self.schema.max_rows}",
            )
        return rows

    def _column(self, field: Field, values: Sequence[Any]) -> Any:
        """The column as an array, or None when some value is invalid (found later)."""
        if field.kind in wire_values.PARSED or (
            field.nullable and field.kind in ("int", "bool") and pandas_nullable(field.dtype)
        ):
            return wire_values.column(field, values)
        types = set(map(type, values))
        accepted = _ACCEPTED[field.kind]
        has_null = type(None) in types
        if has_null:
            if not field.nullable:
                return None
            types.discard(type(None))
        if not types <= accepted:
            return None
        if field.kind == "string":
            return np.array(values, dtype=object)
        if field.kind == "bool":
            return np.array(values, dtype=bool)
        if has_null:
            values = [math.nan if v is None else v for v in values]
        try:
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            return None
        if not np.isfinite(array).all() and not (field.nullable and _only_nan(array)):
            return None
        if field.kind == "int":
            if not (np.all(array == np.round(array)) and np.all(np.abs(array) < 2**63)):
                return None
            return np.array(values, dtype=np.int64).astype(field.dtype, copy=False)
        return array.astype(field.dtype, copy=False)

    def _raise_row_errors(self, rows: list[Any]) -> None:
        problems = self._mixed_shapes(rows)
        for index, row in enumerate(rows):
            problems.extend(self._row_problems(index, row))
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
        _raise_first(problems)

    def _mixed_shapes(self, rows: list[Any]) -> list[RequestRejected]:
        """Objects and lists in one request: the first row of the other shape than row 0."""
        shapes = [dict if isinstance(row, dict) else list for row in rows]
        kinds = {dict: "an object keyed by the feature names", list: "a list of values"}
        first = shapes[0]
        for index, shape in enumerate(shapes):
            row = rows[index]
            if shape is not first and isinstance(row, (dict, list)):
                return [
                    RequestRejected(
                        f"row {index} is {kinds[shape]}, but row 0 is {kinds[first]}; "
                        "a request's rows all take one shape",
                        reason="mixed-rows",
                        row=index,
                        fix=f"send row {index} as {kinds[first]}, like row 0",
                    )
                ]
        return []

    def _row_problems(self, index: int, row: Any) -> list[RequestRejected]:
        width = len(self.fields)
        if isinstance(row, list):
            if len(row) == width:
                return []
            return [
                RequestRejected(
                    f"row {index} has {len(row)} values; the model takes {width}, "
                    f"in this order: {_listing(self.names)}",
                    reason="wrong-length",
                    row=index,
                )
            ]
        if not isinstance(row, dict):
            return [
                RequestRejected(
                    f"row {index} is {_json_type(row)}; a row is an object keyed by the "
                    "feature names, or a list of values in training order",
                    reason="bad-row",
                    row=index,
                )
            ]
        problems = []
        for name in self.names:
            if name not in row:
                problems.append(
                    RequestRejected(
                        f"row {index} is missing the field {name!r}",
                        reason="missing-field",
                        row=index,
                        field=name,
                        fix=f"send every training column: {_listing(self.names)}",
                    )
                )
        for name in row:
            if name not in self.name_set:
                close = difflib.get_close_matches(str(name), self.names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    RequestRejected(
                        f"row {index} has the unknown field {name!r}{hint}",
                        reason="unknown-field",
                        row=index,
                        field=str(name),
                        fix=f"send only the training columns: {_listing(self.names)}",
                    )
                )
        return problems

    def _raise_value_errors(self, columns: list[Sequence[Any]]) -> None:
        problems = []
        rows = len(columns[0])
        for index in range(rows):
            for field, column in zip(self.fields, columns, strict=True):
                problem = _value_problem(field, column[index])
                if problem:
                    problems.append(
                        RequestRejected(
                            f"row {index}, field {field.name!r}: {problem}",
                            reason="wrong-type" if "expected" in problem else "bad-value",
                            row=index,
                            field=field.name,
                        )
                    )
            if len(problems) >= MAX_REPORTED_ERRORS:
                break
        _raise_first(problems)


def _value_problem(field: Field, value: Any) -> str | None:
    """Why one value does not fit the field, or None."""
    if value is None:
        if field.nullable:
            return None
        return "null is not accepted: the training data had no missing values here"
    if field.kind in wire_values.PARSED:
        return wire_values.parse(field, value)[1]
    if type(value) not in _ACCEPTED[field.kind]:
        got = f"the string {_short(value)!r}" if isinstance(value, str) else _json_type(value)
        return f"expected {_DESCRIBED[field.kind]}, got {got}"
    if field.kind in ("float", "int") and isinstance(value, int):
        if abs(value) >= (2**63 if field.kind == "int" else 2**1023):
            return f"{_short(str(value))} is out of range"
        return None
    if field.kind in ("float", "int"):
        if math.isnan(value):
            if field.nullable:
                return None
            return "NaN is not accepted: the training data had no missing values here"
        if math.isinf(value):
            return "infinity is not accepted"
        if field.kind == "int" and (value != round(value) or abs(value) >= 2**63):
            return f"expected an integer, got {value!r}"
    return None


def _raise_first(problems: list[RequestRejected]) -> None:
    if not problems:  # pragma: no cover - the bulk checks and the walk disagree
        raise RequestRejected("the rows do not fit the training schema", reason="bad-value")
    first = problems[0]
    first.errors = [
        {"message": p.message, "row": p.row, "field": p.field, "error": p.reason}
        for p in problems[:MAX_REPORTED_ERRORS]
    ]
    raise first


def _plain_values(values: Sequence[Any]) -> bool:
    return all(type(v) in (str, int, float, bool) for v in values)


def _only_nan(array: np.ndarray) -> bool:
    return not np.isinf(array).any()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
