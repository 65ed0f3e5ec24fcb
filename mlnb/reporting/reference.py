"""The shape of a monitoring folder's ``reference.json``, as ``mlnb monitor`` reads it."""

from __future__ import annotations

import math
from typing import Any

_NUMBER_LISTS = {"histogram": ("edges", "counts"), "bins": ("edges", "counts", "equal")}


def reference_problem(reference: Any) -> str | None:
    """What is wrong with the shape of a decoded ``reference.json``, or None.

    Checks what ``mlnb monitor`` reads (the shape :func:`mlnb.monitoring.live.write_reference`
    writes): an object; ``features`` an object of profiles, ``prediction`` a profile or null;
    a profile's ``frequencies`` an object of numbers, ``quantiles`` a list of numbers,
    ``histogram`` and ``bins`` objects of lists of numbers; ``window`` a whole number,
    ``default_threshold`` a number, ``thresholds`` an object of numbers; ``contract`` null or
    an object whose ``features`` is an object of objects, ``contract_window`` a whole number
    of rows, ``schema`` a list of objects. Other keys are kept
    as they are: a file that reads is never rejected for what the reader ignores.
    """
    if not isinstance(reference, dict):
        return f"it is {_kind(reference)}, not a JSON object"
    features = reference.get("features", {})
    if not isinstance(features, dict):
        return f"'features' is {_kind(features)}, not an object of feature profiles"
    for name, spec in features.items():
        problem = _profile_problem(spec)
        if problem:
            return f"the profile of feature {name!r} {problem}"
    prediction = reference.get("prediction")
    if prediction is not None:
        problem = _profile_problem(prediction)
        if problem:
            return f"'prediction' {problem}"
    window = reference.get("window", 0)
    if not _is_number(window) or not math.isfinite(window) or window != int(window) or window < 0:
        return f"'window' is {_kind(window)}, not a whole number of rows"
    if not _is_number(reference.get("default_threshold", 0.0)):
        return f"'default_threshold' is {_kind(reference['default_threshold'])}, not a number"
    thresholds = reference.get("thresholds") or {}
    if not isinstance(thresholds, dict) or not all(map(_is_number, thresholds.values())):
        return "'thresholds' is not an object of feature names to numbers"
    return _contract_problem(reference)


def _contract_problem(reference: dict[str, Any]) -> str | None:
    contract = reference.get("contract")
    if contract is not None:
        features = contract.get("features", {}) if isinstance(contract, dict) else None
        if not isinstance(features, dict) or not all(
            isinstance(v, dict) for v in features.values()
        ):
            return "'contract' is not an object whose 'features' are objects of rules"
    window = reference.get("contract_window", 1)
    if not _is_number(window) or not math.isfinite(window) or window != int(window) or window < 1:
        return f"'contract_window' is {_kind(window)}, not a whole number of rows"
    schema = reference.get("schema") or []
    if not isinstance(schema, list) or not all(isinstance(f, dict) for f in schema):
        return "'schema' is not a list of objects"
    return None


def _profile_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return f"is {_kind(spec)}, not an object"
    for key in ("kind", "dtype"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            return f"has a {key!r} that is {_kind(spec[key])}, not a string"
    frequencies = spec.get("frequencies", {})  # read as .get("frequencies", {}): no null
    if not isinstance(frequencies, dict) or not all(map(_is_number, frequencies.values())):
        return "has 'frequencies' that are not an object of numbers"
    quantiles = spec.get("quantiles") or []
    if not isinstance(quantiles, list) or not all(map(_is_number, quantiles)):
        return "has 'quantiles' that are not a list of numbers"
    for key, lists in _NUMBER_LISTS.items():
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            return f"has a {key!r} that is {_kind(value)}, not an object"
        for part in lists:
            numbers = value.get(part)
            if numbers is not None and (
                not isinstance(numbers, list) or not all(map(_is_number, numbers))
            ):
                return f"has '{key}.{part}' that is not a list of numbers"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:30]!r}"
    return "a list" if isinstance(value, list) else "an object"
