"""Parameter values set from a form (the ``%mlnb`` panel, the sidebar through the REST API)
as the arguments of a child ``mlnb run``: one ``-y YAML`` mapping, checked first against the
notebook's parameters cell.

What a value may be is decided here once, for both front ends:

- a parameter whose default is an ``int``, ``float``, ``bool`` or ``str`` takes a value of that
  type (an ``int`` is a ``float`` too, and goes as one; ``bool`` is not an ``int``; a float is
  finite: NaN and infinities are refused). The text ``None`` is such a string, as
  ``mlnb run -r NAME None`` gives it.
- a parameter whose default is ``None`` takes ``None``, a number, a boolean or a string: its
  form field is text typed as ``mlnb run -p NAME VALUE`` types it (papermill's rule:
  ``None``, ``True``, ``3``, ``0.5``, else text), so the text ``None`` is the value None, and
  papermill injects ``NAME = None``; the text ``nan`` or ``inf`` is refused like those floats.
- ``None`` is refused for every other parameter. ``mlnb run -p NAME None`` would set it (the
  command line follows papermill, which checks no types), but a form that sends None for a
  ``C = 0.5`` means an empty field, not a None the notebook was written for.
- a parameter whose default is not one of those (a list, an expression) cannot be set here.

Every value given is passed, equal to its default or not: the form drops what the user left
unchanged (the panel and the sidebar do), so the run records what was asked for. The values
go as ``-y``, never as ``-p``/``-r NAME VALUE``: argparse would read a value such as ``-x`` as
an option (:func:`yaml_arguments`). Parsed back by ``mlnb run``, the
arguments give exactly the values, types included (a property test holds this).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlnb.errors import BadRequestError, UnknownParameterError
from mlnb.parameters import Parameter

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_CHECKS: dict[str, Callable[[object], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "none": lambda v: v is None or isinstance(v, (int, float, str)),
}
_NONE_TAKES = "None, a finite number, a boolean or a string"
SETTABLE_TYPES = tuple(_CHECKS)  # the parameter types a form can set


def parameter_arguments(
    parameters: Sequence[Parameter],
    values: Mapping[Any, object],
    notebook: str | None = None,
) -> list[str]:
    """``-y YAML`` for ``mlnb run`` setting ``values`` (none: no argument), each checked
    against its parameter (see the module's docstring); an
    :class:`~mlnb.errors.UnknownParameterError` for a name the parameters cell lacks, a
    :class:`~mlnb.errors.BadRequestError` for a value of the wrong type."""
    known = {p.name: p for p in parameters}
    typed: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _NAME.match(name) or name not in known:
            raise UnknownParameterError(
                f"the notebook has no parameter {name!r}",
                fix=f"use one of: {', '.join(known) or '(the notebook has no parameters cell)'}",
                notebook=notebook,
            )
        typed[name] = typed_value(known[name], value, notebook)
    return yaml_arguments(typed)


def yaml_arguments(values: Mapping[str, Any]) -> list[str]:
    """``-y YAML`` for ``mlnb run`` giving ``values`` exactly, unchecked (none: no argument).

    YAML, not JSON: PyYAML reads JSON's ``1e+20`` as a string, while it writes ``1.0e+20``;
    strings that read as other things are quoted. Written in ASCII, other characters escaped:
    PyYAML writes some as they are and reads them back as others (``\\x85``, a YAML line
    break, comes back a space).
    """
    if not values:
        return []
    import yaml  # type: ignore[import-untyped]  # papermill depends on PyYAML

    text = yaml.safe_dump(
        dict(values), default_flow_style=True, sort_keys=False, allow_unicode=False, width=2**31
    )
    return ["-y", text.strip()]


def typed_value(parameter: Parameter, value: object, notebook: str | None = None) -> Any:
    """The value ``mlnb run`` is to set, checked against the parameter's type."""
    name, expected = parameter.name, parameter.type_name
    check = _CHECKS.get(expected)
    if check is None:
        raise BadRequestError(
            f"parameter {name!r} is a {expected}, which `mlnb run -p` cannot set",
            fix="change its default in the parameters cell; -p sets numbers, booleans, "
            "None and strings",
            notebook=notebook,
        )
    if not check(value) or not _finite(value, as_float=expected == "float"):
        wanted = _NONE_TAKES if expected == "none" else expected
        raise BadRequestError(
            f"parameter {name!r} expects {wanted}, got {_shown(value)}",
            fix=f"send a {wanted} value (the notebook's default is {parameter.default!r})",
            notebook=notebook,
        )
    if expected == "float":
        return float(value)  # type: ignore[arg-type]  # an int or a float: checked above
    return value


def _finite(value: object, as_float: bool) -> bool:
    """Not NaN or infinite, nor an int too large for a float that is to be one: YAML and
    papermill would write those back as other values, or not at all."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if isinstance(value, int) and not as_float:
        return True
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int of over 308 digits
        return False


def _shown(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
