"""From a validated frame to the answer a client gets, through the notebook's serve code.

The serve code's contract: it may define ``predict(frame)`` (one prediction per row),
``preprocess(frame)`` (a frame in, a frame out) and ``postprocess(result)`` (what ``predict``
gave, turned into one item per row). Without a ``predict`` the model's own ``predict`` is used,
and a classifier's answer also carries ``probabilities`` (one list per row, in the order of
``classes``) when it has ``predict_proba``. A ``predict`` or ``postprocess`` that returns a
dict with ``predictions`` decides the whole answer itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

Fn = Callable[[Any], Any]


class ServeOutputError(Exception):
    """The serve code answered something that is not one JSON-able prediction per row."""


@dataclass
class Predictor:
    """The model and the serve code's functions, as one ``answer(frame)`` call."""

    model: Any
    task: str  # "classification" or "regression"
    predict: Fn | None = None
    preprocess: Fn | None = None
    postprocess: Fn | None = None

    def __post_init__(self) -> None:
        classes = getattr(self.model, "classes_", None)
        self.classes = None if classes is None else to_jsonable(np.asarray(classes))
        self._with_proba = getattr(self.model, "predict_with_proba", None)
        # a classifier without probabilities (an SVC) answers with its labels only
        self._proba = getattr(self.model, "predict_proba", None)

    def answer(self, frame: pd.DataFrame) -> dict[str, Any]:
        rows = len(frame)
        features = self.preprocess(frame) if self.preprocess else frame
        if self.predict is not None:
            result = self.predict(features)
            probabilities = None
        elif self.task == "classification":
            if self._with_proba is not None:
                result, probabilities = self._with_proba(features)
            elif self._proba is not None:
                result = self.model.predict(features)
                probabilities = self._proba(features)
            else:
                result, probabilities = self.model.predict(features), None
        else:
            result, probabilities = self.model.predict(features), None
        if self.postprocess is not None:
            result = self.postprocess(result)
        if isinstance(result, dict) and "predictions" in result:
            answer = {key: to_jsonable(value) for key, value in result.items()}
        else:
            answer = {"predictions": to_jsonable(result)}
            if probabilities is not None:
                answer["probabilities"] = np.asarray(probabilities, dtype=float).tolist()
                answer["classes"] = self.classes
        predictions = answer["predictions"]
        if not isinstance(predictions, list) or len(predictions) != rows:
            count = len(predictions) if isinstance(predictions, list) else "no list of"
            raise ServeOutputError(
                f"the serve code gave {count} predictions for {rows} rows; "
                "predict must return one prediction per row"
            )
        return answer


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_jsonable(value: Any) -> Any:
    """numpy and pandas values as plain JSON types (NaN stays a float; JSON encoding nulls it)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:
        types = set(map(type, value))
        if types <= _PLAIN:
            return value if kind is list else list(value)
        if types == {dict} and all(_plain_dict(item) for item in value):
            return value if kind is list else list(value)
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        return [to_jsonable(row) for row in value.to_dict(orient="records")]
    if isinstance(value, (pd.Series, pd.Index)):
        return value.to_numpy().tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return value if _plain_dict(value) else {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def _plain_dict(item: dict[Any, Any]) -> bool:
    return _PLAIN.issuperset(map(type, item.values())) and all(type(k) is str for k in item)
