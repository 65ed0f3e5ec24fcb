"""Does the ONNX model answer like the original? Checked on held-out rows, through the serve code.

The same :class:`~mlnb.serving.answer.Predictor` the service runs is built around the original
model and around the ONNX adapter, the serve code executed for each (its functions see the
model under the notebook's variable name). The build's factory executes it once per model:
the original's predictor is the one its serve-code check made, so this check executes the
notebook's code once, around the conversion. Both answer the
held-out rows; labels, strings and integers must be equal and numbers within 1e-5 (relative to
the value's size when it is above 1, as for regression targets). The first difference found
is the reason the build gives for serving the native model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlnb.serving.answer import Predictor

TOLERANCE = 1e-5

# model -> the predictor the service would run around it
PredictorFactory = Callable[[Any], Predictor]


@dataclass(frozen=True)
class Agreement:
    agrees: bool
    rows: int
    max_difference: float
    reason: str | None = None

    def describe(self) -> str:
        if self.agrees:
            return (
                f"the ONNX model agrees with the original on {self.rows} held-out rows "
                f"(largest difference {self.max_difference:.1e})"
            )
        return f"the ONNX model disagrees with the original: {self.reason}"


def check_agreement(
    make_predictor: PredictorFactory, native: Any, converted: Any, rows: pd.DataFrame
) -> Agreement:
    """Compare the two models' answers on ``rows``, directly and through the serve code."""
    worst = 0.0
    checks: list[tuple[str, Callable[[Any], Any]]] = [("predict", lambda m: m.predict(rows))]
    if hasattr(native, "predict_proba"):
        checks.append(("predict_proba", lambda m: m.predict_proba(rows)))
    checks.append(("the serve code", lambda m: make_predictor(m).answer(rows.copy())))
    for name, call in checks:
        try:
            expected = call(native)
        except Exception as exc:  # the original fails on its own held-out rows
            return Agreement(False, len(rows), math.inf, f"{name} fails on the original: {exc}")
        try:
            actual = call(converted)
        except Exception as exc:
            reason = f"{name} fails under ONNX: {type(exc).__name__}: {exc}"
            return Agreement(False, len(rows), math.inf, reason)
        difference, where = compare(expected, actual)
        if where is not None:
            return Agreement(False, len(rows), difference, f"{name} differs at {where}")
        worst = max(worst, difference)
    return Agreement(True, len(rows), worst)


def compare(expected: Any, actual: Any, path: str = "") -> tuple[float, str | None]:
    """The largest numeric difference, and where the first disagreement is (or None)."""
    if isinstance(expected, (pd.Series, pd.DataFrame)):
        expected = expected.to_numpy()
    if isinstance(actual, (pd.Series, pd.DataFrame)):
        actual = actual.to_numpy()
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        expected, actual = np.asarray(expected), np.asarray(actual)
        if expected.shape != actual.shape:
            return math.inf, f"{path or 'the output'}: shape {expected.shape} != {actual.shape}"
        expected, actual = expected.tolist(), actual.tolist()
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return math.inf, f"{path or 'the output'}: keys {sorted(expected)} != {sorted(actual)}"
        return _worst(compare(expected[k], actual[k], f"{path}[{k!r}]") for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            return math.inf, f"{path or 'the output'}: {len(expected)} items != {len(actual)}"
        pairs = enumerate(zip(expected, actual, strict=True))
        return _worst(compare(e, a, f"{path}[{i}]") for i, (e, a) in pairs)
    if _is_float(expected) or _is_float(actual):
        if not (_is_number(expected) and _is_number(actual)):
            return math.inf, f"{path}: {expected!r} != {actual!r}"
        e, a = float(expected), float(actual)
        if math.isnan(e) or math.isnan(a):
            return (0.0, None) if math.isnan(e) and math.isnan(a) else (math.inf, f"{path}: NaN")
        difference = abs(e - a) / max(1.0, abs(e))
        if difference > TOLERANCE:
            return difference, f"{path}: {e!r} != {a!r}"
        return difference, None
    if expected != actual or (
        type(expected) is not type(actual) and not _both_int(expected, actual)
    ):
        return math.inf, f"{path or 'the output'}: {expected!r} != {actual!r}"
    return 0.0, None


def _worst(results: Any) -> tuple[float, str | None]:
    worst = 0.0
    for difference, where in results:
        if where is not None:
            return difference, where
        worst = max(worst, difference)
    return worst, None


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _both_int(a: Any, b: Any) -> bool:
    return isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))
