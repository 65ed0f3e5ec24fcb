"""Parameters of ``mlnb run``, given and typed exactly as papermill's command line does.

``-f FILE`` and ``-y YAML`` (papermill's ``--parameters_file`` and ``--parameters_yaml``)
give a YAML mapping whose values are typed values; ``-p NAME VALUE`` is typed by
:func:`resolve_type`; ``-r NAME VALUE`` is a string. Later ones win, in papermill's order:
files, then YAML, then ``-p``, then ``-r``. A value that starts with ``-`` (``-x``,
``--flag``) cannot follow ``-p NAME`` or ``-r NAME`` (argparse reads it as an option), so the
front ends (the REST API, the panel) pass every value through ``-y``
(:func:`mlnb.run_arguments.yaml_arguments`, re-exported here). YAML is read with
``yaml.safe_load`` rules, dates kept as strings (papermill's ``NoDatesSafeLoader``), within a
size, depth and item limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb import bounded_json
from mlnb.cell_numbers import cell_label
from mlnb.errors import InputLimitError, UnknownParameterError
from mlnb.pipeline import Pipeline
from mlnb.run_arguments import yaml_arguments as yaml_arguments  # re-exported: its one home

MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32
MAX_YAML_ITEMS = 100_000  # values in all, each visit of a YAML alias counted
_PLAIN = (str, int, float, bool, type(None), list, dict)


def resolve_type(value: str) -> Any:
    """papermill's ``-p`` rule: ``True``/``False``/``None``, then int, then float, else str.

    A value that is not a string is already typed (from ``-y`` or ``-f``) and kept as it is.
    """
    if not isinstance(value, str):
        return value
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
    sources: Mapping[str, str] | None = None,
) -> RunParameters:
    """Check the given names against the parameters cell and merge them over the defaults.

    ``typed`` pairs come from ``-p`` (typed by :func:`resolve_type`; a value that is not a
    string is kept as it is), ``raw`` pairs from ``-r`` (kept as strings), later pairs
    winning, as in papermill. ``sources`` says where each name was given (``-f FILE``,
    ``-y``: :func:`parameter_sources`), for the error about a name the notebook lacks.
    """
    given: dict[str, Any] = {}
    for name, value in typed:
        given[name] = resolve_type(value)
    for name, value in raw:
        given[name] = value
    known = pipeline.parameter_defaults
    unknown = [name for name in given if name not in known]
    if unknown:
        name = unknown[0]
        source = (sources or {}).get(name) or f"-p {name}"
        if pipeline.parameters_cell is None:
            fix = (
                "tag the cell that sets the notebook's parameters 'parameters' "
                "(papermill's tag), then pass -p NAME VALUE for those names"
            )
        else:
            fix = f"pass one of: {', '.join(known) or '(none)'}; or add {name!r} to the "
            fix += f"parameters cell ({cell_label(pipeline.parameters_cell)})"
            if not source.startswith("-p "):
                fix = f"remove {name!r} from {source.rpartition(', key')[0] or source}, or {fix}"
        raise UnknownParameterError(
            f"{source}: the notebook has no parameter {name!r}",
            fix=fix,
            notebook=pipeline.notebook,
        )
    return RunParameters({**known, **given}, given)


def given_parameters(
    files: Iterable[str] = (),
    yamls: Iterable[str] = (),
    typed: Iterable[Sequence[str]] = (),
    raw: Iterable[Sequence[str]] = (),
) -> dict[str, Any]:
    """What ``-f``, ``-y``, ``-p`` and ``-r`` give, merged in papermill's order."""
    return given_with_sources(files, yamls, typed, raw)[0]


def given_with_sources(
    files: Iterable[str] = (),
    yamls: Iterable[str] = (),
    typed: Iterable[Sequence[str]] = (),
    raw: Iterable[Sequence[str]] = (),
) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`given_parameters`, and where each name came from in words (the last one
    winning): ``the parameters file 'params.yaml', key 'C'``, ``-y, key 'C'``, ``-p C``."""
    given: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for file in files:
        for name, value in file_parameters(file).items():
            given[name] = value
            sources[name] = f"the parameters file {str(file)!r}, key {name!r}"
    for text in yamls:
        for name, value in yaml_parameters(text, "-y").items():
            given[name] = value
            sources[name] = f"-y, key {name!r}"
    for name, value in typed:
        given[name] = resolve_type(value)
        sources[name] = f"-p {name}"
    for name, value in raw:
        given[name] = value
        sources[name] = f"-r {name}"
    return given, sources


def runner_pairs(
    given: Mapping[str, Any],
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """``given`` as the typed and raw pairs :func:`run_parameters` takes: strings raw (kept
    strings), anything else typed (kept as it is by :func:`resolve_type`)."""
    typed = [(name, value) for name, value in given.items() if not isinstance(value, str)]
    raw = [(name, value) for name, value in given.items() if isinstance(value, str)]
    return typed, raw


def file_parameters(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a ``-f`` file."""
    what = f"the parameters file {str(path)!r}"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InputLimitError(
            f"cannot read {what}: {exc.strerror or exc}",
            what=what,
            reason="invalid",
            fix="pass the path of a YAML file of NAME: VALUE lines",
        ) from None
    if len(data) > MAX_YAML_BYTES:
        raise bounded_json.too_large(what, len(data), MAX_YAML_BYTES, "keep it under 1 MB")
    return yaml_parameters(data.decode("utf-8", "replace"), what)


def yaml_parameters(text: str, what: str = "-y") -> dict[str, Any]:
    """A YAML mapping of parameter names to values (JSON is YAML too), within limits."""
    yaml = _yaml()
    if what == "-y":
        what = f"the -y parameters {_short(text)!r}"
    fix = "give a mapping of NAME: VALUE, e.g. -y '{C: 0.5, name: \"-x\"}'"
    if len(text) > MAX_YAML_BYTES:
        raise bounded_json.too_large(what, len(text), MAX_YAML_BYTES, fix)
    try:
        loaded = yaml.load(text, Loader=_no_dates_loader())  # a SafeLoader
    except RecursionError:
        raise bounded_json.too_deep(what, MAX_YAML_DEPTH, fix) from None
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        raise InputLimitError(
            f"{what} is not valid YAML: {message}", what=what, reason="invalid", fix=fix
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputLimitError(
            f"{what} is not a mapping of names to values", what=what, reason="invalid", fix=fix
        )
    if bounded_json.deeper_than(loaded, MAX_YAML_DEPTH, MAX_YAML_ITEMS):
        raise InputLimitError(
            f"{what} nests more than {MAX_YAML_DEPTH} levels or holds more than "
            f"{MAX_YAML_ITEMS:,} values",
            what=what,
            reason="too-deep",
            limit=MAX_YAML_DEPTH,
            fix="pass plain values: numbers, strings, booleans, null, short lists",
        )
    for name, value in loaded.items():
        problem = _not_plain(value)
        if not isinstance(name, str) or problem:
            raise InputLimitError(
                f"{what}: {name!r} is not a parameter name with a plain value"
                + (f" ({problem})" if problem else ""),
                what=what,
                reason="invalid",
                fix="use names of the parameters cell, and numbers, strings, booleans, null, "
                "lists or mappings as values",
            )
    return loaded


def _not_plain(value: Any) -> str | None:
    stack = [value]
    while stack:
        item = stack.pop()
        if not isinstance(item, _PLAIN):
            return f"a {type(item).__name__}"
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                return "a mapping with keys that are not strings"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _short(text: str, size: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 3] + "..."


_LOADER: Any = None
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _no_dates_loader() -> Any:
    """papermill's ``NoDatesSafeLoader``: ``yaml.SafeLoader`` that leaves dates strings."""
    global _LOADER
    if _LOADER is None:
        yaml = _yaml()
        resolvers = {
            key: [(tag, regexp) for tag, regexp in found if tag != _TIMESTAMP]
            for key, found in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _LOADER = type(
            "NoDatesSafeLoader", (yaml.SafeLoader,), {"yaml_implicit_resolvers": resolvers}
        )
    return _LOADER


def _yaml() -> Any:
    """PyYAML (papermill depends on it), imported when first used."""
    import yaml  # type: ignore[import-untyped]

    return yaml
