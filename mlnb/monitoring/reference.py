"""What monitoring compares live predictions against: the served predictions on training rows.

``mlnb build`` answers the run's training sample through the same predictor the service uses
(serve code included) and profiles the labels the way the service logs them: class
frequencies for a classifier, deciles and a histogram for a regressor. The profile goes into
``mlnb_service.json`` and from there into each monitoring folder's ``reference.json``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

_PLAIN_LABELS = frozenset({str, int, bool})


def prediction_labels(predictions: Sequence[Any], classification: bool) -> list[Any]:
    """:func:`prediction_label` of each prediction; plain classes and ints pass as they are."""
    if _PLAIN_LABELS.issuperset(map(type, predictions)):
        return list(predictions)
    key = _label_key(predictions, classification)
    if key is not None:  # serve code's dicts, each with the label under one key
        try:
            return list(map(operator.itemgetter(key), predictions))
        except (KeyError, TypeError, IndexError):  # a row without it, or not a dict
            pass
    return [prediction_label(p, classification) for p in predictions]


def _label_key(predictions: Sequence[Any], classification: bool) -> str | None:
    """The key :func:`prediction_label` picks in the first of ``predictions`` when that is a
    dict: every row's label is then the value under that key (one lookup a row, not a
    search; a row without it makes the caller search each row)."""
    first = predictions[0] if predictions else None
    if type(first) is not dict:
        return None
    label = prediction_label(first, classification)
    key = next((k for k, v in first.items() if v is label), None)
    return key


def prediction_label(prediction: Any, classification: bool) -> Any:
    """The class (or value) of one prediction, also when serve code answers with a dict."""
    if isinstance(prediction, dict):
        wanted = (str, bool, int) if classification else (float, int)
        for value in prediction.values():
            if isinstance(value, wanted) and not (classification and isinstance(value, float)):
                return value
        return None
    if isinstance(prediction, (list, tuple)):
        return prediction[0] if prediction else None
    return json_safe(prediction)


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and infinity as null (never bare NaN)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def prediction_profile(predictions: Sequence[Any], classification: bool) -> dict[str, Any] | None:
    """The profile of answered predictions, as ``mlnb monitor`` reads a feature's profile."""
    import pandas as pd  # type: ignore[import-untyped]

    from mlnb.run.profile import column_profile

    labels = prediction_labels(predictions, classification)
    if classification:
        series = pd.Series([None if v is None else str(v) for v in labels], dtype=object)
    else:
        numbers = [float(v) if isinstance(v, (int, float)) else math.nan for v in labels]
        series = pd.Series(numbers, dtype=float)
    if series.notna().sum() == 0:
        return None
    return column_profile(series)


# --- the shape of reference.json, as `mlnb monitor` reads it ---

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
