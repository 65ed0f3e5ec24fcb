"""The request schema of a served model, and the validation that turns a JSON body into a frame.

The schema is the training data's: its columns in training order and their dtypes (from the
run's ``training_data``). A body is ``{"rows": [...]}``, each row an object keyed by the
feature names or a list of values in training order. Anything else is a
:class:`~mlnb.errors.RequestRejected` naming the row and field, never a frame the model would
choke on: BentoML's own ``Shape`` reshapes and coerces instead of validating.

Valid bodies take a fast path (bulk type checks per column, one numpy conversion); only a body
that fails them is walked value by value to name the first problems. That validation lives in
:mod:`mlnb.serving.validation`, imported on the first :meth:`RequestSchema.frame`: this module
imports neither numpy nor pandas, so the process that only describes a service (BentoML's
arbiter, the OpenAPI row model) stays light.

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

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from mlnb.serving.validation import Validator

DEFAULT_MAX_ROWS = 10_000
MAX_REPORTED_ERRORS = 10


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
        from mlnb.serving import wire_values

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
    def _validator(self) -> Validator:
        from mlnb.serving.validation import Validator  # numpy and pandas: on the first request

        return Validator(self)


def _plain_values(values: Sequence[Any]) -> bool:
    return all(type(v) in (str, int, float, bool) for v in values)
