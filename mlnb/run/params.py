"""``-p NAME VALUE`` parameters, typed exactly as papermill's command line types them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlnb.errors import UnknownParameterError
from mlnb.pipeline import Pipeline


def resolve_type(value: str) -> Any:
    """papermill's ``-p`` rule: ``True``/``False``/``None``, then int, then float, else str."""
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class RunParameters:
    """The values a run uses: the notebook's defaults overridden by what was given."""

    values: dict[str, Any]
    given: dict[str, Any]


def run_parameters(
    pipeline: Pipeline,
    typed: Sequence[tuple[str, str]] = (),
    raw: Sequence[tuple[str, str]] = (),
) -> RunParameters:
    """Check the given names against the parameters cell and merge them over the defaults.

    ``typed`` pairs come from ``-p`` (typed by :func:`resolve_type`), ``raw`` pairs from
    ``-r`` (kept as strings), later pairs winning, as in papermill.
    """
    given: dict[str, Any] = {}
    for name, value in typed:
        given[name] = resolve_type(value)
    for name, value in raw:
        given[name] = value
    known = pipeline.parameter_defaults
    unknown = [name for name in given if name not in known]
    if unknown:
        if pipeline.parameters_cell is None:
            fix = (
                "tag the cell that sets the notebook's parameters 'parameters' "
                "(papermill's tag), then pass -p NAME VALUE for those names"
            )
        else:
            fix = f"pass one of: {', '.join(known) or '(none)'}; or add {unknown[0]!r} to the "
            fix += f"parameters cell (cell {pipeline.parameters_cell})"
        raise UnknownParameterError(
            f"-p {unknown[0]}: the notebook has no parameter {unknown[0]!r}",
            fix=fix,
            notebook=pipeline.notebook,
        )
    return RunParameters({**known, **given}, given)
