"""A prediction as monitoring labels it: the class, or the number, a service logs and counts.

``mlnb build`` profiles the served predictions on training rows with these labels
(:mod:`mlnb.bento.reference`); the worker logs and counts live predictions with the same.
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
