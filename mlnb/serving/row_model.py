"""The request's row as a pydantic model, so the OpenAPI page shows every feature and its type.

The generated service declares ``rows: list[Row | list[Any]]``; the page then lists each
training column with its JSON type: numbers, integers, booleans, strings, ``date-time`` and
``duration`` strings (ISO 8601) and, for a categorical column, its categories. Requests are
validated by :class:`~mlnb.serving.schema.RequestSchema`, not by this model: it only
describes them.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal, Optional

from mlnb.serving.schema import Field, RequestSchema

_TYPES: dict[str, Any] = {
    "float": float,
    "int": int,
    "bool": bool,
    "string": str,
    "datetime": datetime.datetime,
    "timedelta": datetime.timedelta,
}


def row_model(schema: RequestSchema) -> Any:
    """A pydantic model of one row keyed by the feature names (Python names as aliases)."""
    import pydantic

    fields: dict[str, Any] = {}
    for index, field in enumerate(schema.fields):
        described = _type_of(field)
        if field.nullable:
            described = Optional[described]  # noqa: UP045 - a runtime type, not an annotation
        fields[f"feature_{index}"] = (
            described,
            pydantic.Field(alias=field.name, title=field.name, description=_describe(field)),
        )
    return pydantic.create_model("Row", **fields)


def _type_of(field: Field) -> Any:
    if field.kind == "category" and field.categories:
        return Literal[tuple(field.categories)]
    return _TYPES.get(field.kind, str)


def _describe(field: Field) -> str:
    if field.kind == "datetime":
        return f"ISO 8601 date-time (training dtype {field.dtype})"
    if field.kind == "timedelta":
        return "ISO 8601 duration (such as P1DT2H) or a number of seconds"
    if field.kind == "category":
        return "one of the training categories"
    return f"training dtype {field.dtype}"
