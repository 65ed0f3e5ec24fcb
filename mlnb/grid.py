"""Parameter grids: a YAML file of parameter values, expanded into run points.

Either a mapping of parameter names to lists of values (their product is the grid)::

    C: [0.1, 1.0, 10.0]
    max_iter: [200, 500]

or, for points that are not a product, ``points:`` with one mapping per run, optionally beside
``parameters:`` (a product every point is combined with).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlnb.errors import GridError as GridError  # re-exported: it lived here

MAX_POINTS = 1000


def load_grid(path: str | Path, known: Iterable[str]) -> list[dict[str, Any]]:
    import yaml  # type: ignore[import-untyped]

    name = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise GridError(f"no such grid file: {name}", fix="check the path to GRID.yaml") from None
    except (OSError, yaml.YAMLError) as exc:
        raise GridError(f"cannot read the grid {name}: {exc}", fix="fix the YAML") from None
    return expand_grid(document, set(known), name)


def expand_grid(document: object, known: set[str], name: str = "grid") -> list[dict[str, Any]]:
    """The list of parameter sets a grid document describes, checked against ``known``."""
    example = "C: [0.1, 1.0]\\nmax_iter: [200, 500]"
    if not isinstance(document, Mapping) or not document:
        raise GridError(
            f"{name}: a grid is a mapping of parameter names to lists of values",
            fix=f"write e.g. {example}",
        )
    if "points" in document or "parameters" in document:
        extra = sorted(set(document) - {"points", "parameters"})
        if extra:
            raise GridError(
                f"{name}: unknown key(s) {', '.join(extra)} beside points/parameters",
                fix="keep only 'parameters' (a product) and 'points' (a list of mappings)",
            )
        product = _product(document.get("parameters") or {}, name)
        points = document.get("points") or [{}]
        if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
            raise GridError(f"{name}: 'points' must be a list of mappings", fix=example)
        combined = [{**base, **dict(point)} for point in points for base in product]
    else:
        combined = _product(document, name)
    for point in combined:
        unknown = sorted(set(point) - known)
        if unknown:
            raise GridError(
                f"{name}: {', '.join(unknown)} is not a parameter of the notebook",
                fix=f"use the names of its parameters cell: {', '.join(sorted(known)) or '(none)'}",
            )
    if len(combined) > MAX_POINTS:
        raise GridError(
            f"{name}: {len(combined)} points is more than {MAX_POINTS}",
            fix="split the grid into several files",
        )
    return combined


def _product(mapping: object, name: str) -> list[dict[str, Any]]:
    if not isinstance(mapping, Mapping):
        raise GridError(f"{name}: 'parameters' must be a mapping", fix="e.g. C: [0.1, 1.0]")
    keys = list(mapping)
    values = []
    for key in keys:
        value = mapping[key]
        values.append(value if isinstance(value, list) else [value])
        if isinstance(value, list) and not value:
            raise GridError(f"{name}: parameter {key!r} has an empty list", fix="give it values")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
