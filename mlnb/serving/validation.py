"""Validation of a decoded JSON body against a request schema: a frame, or who is to blame.

:meth:`mlnb.serving.schema.RequestSchema.frame` hands its bodies to the :class:`Validator`
made for it on the first request; this is the numpy and pandas side of the schema (the
schema itself imports neither). A valid body takes the fast path: bulk type checks per column
and one numpy conversion (a single float matrix when every feature has one float dtype). A body
that fails them is walked row by row and value by value, and the first problems (up to
``MAX_REPORTED_ERRORS``) are raised as one :class:`~mlnb.errors.RequestRejected` naming the
row and field.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlnb.errors import RequestRejected
from mlnb.serving import wire_values
from mlnb.serving.schema import MAX_REPORTED_ERRORS, Field, RequestSchema, pandas_nullable

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

_NUMBER_TYPES = frozenset({float, int})


class Validator:
    """One schema's validation: decoded JSON bodies in, frames with the training dtypes out."""

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
    first.errors = [p.summary() for p in problems[:MAX_REPORTED_ERRORS]]
    raise first


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
