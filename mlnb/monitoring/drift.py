"""Drift scores of live rows against the reference profile a run recorded from training data.

Pure functions over numpy arrays and the profile dictionaries of ``run.json``
(``training_data.profile``): PSI for every feature, and the Kolmogorov-Smirnov statistic for
numerical ones. The reference distribution is only known through its histogram, so the KS
statistic compares the live empirical CDF with the histogram's piecewise-linear CDF.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_PSI_THRESHOLD = 0.2
MIN_ROWS = 200  # fewer live rows give no score: PSI over 10 bins is biased by ~9/rows
_EPSILON = 1e-4  # floor for bin fractions, so an empty bin does not make PSI infinite
OTHER = "__other__"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift over a window of live rows."""

    feature: str
    kind: str  # "numeric" or "categorical"
    rows: int
    psi: float | None
    ks: float | None
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.psi is not None and self.psi > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "rows": self.rows,
            "psi": None if self.psi is None else round(self.psi, 6),
            "ks": None if self.ks is None else round(self.ks, 6),
            "threshold": self.threshold,
            "drifted": self.drifted,
        }


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """Population stability index of two distributions given as bin fractions or counts."""
    e = _fractions(expected)
    a = _fractions(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def _fractions(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    total = array.sum()
    array = array / total if total > 0 else np.full_like(array, 1 / max(len(array), 1))
    clipped: npt.NDArray[np.float64] = np.clip(array, _EPSILON, None)
    return clipped


def numeric_bin_counts(edges: Sequence[float], values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Counts of values in the reference bins, the outer bins open to infinity."""
    inner = np.asarray(edges, dtype=float)[1:-1]
    bins = np.searchsorted(inner, np.asarray(values, dtype=float), side="right")
    counts: npt.NDArray[np.intp] = np.bincount(bins, minlength=len(edges) - 1)
    return counts


def reference_cdf(
    edges: Sequence[float], counts: Sequence[float], x: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """The reference CDF at ``x``, linear within each histogram bin."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(counts, dtype=float))])
    total = cumulative[-1] or 1.0
    fractions = cumulative / total
    points = np.asarray(x, dtype=float)
    cdf: npt.NDArray[np.float64] = np.interp(points, np.asarray(edges, dtype=float), fractions)
    return cdf


def ks_statistic(edges: Sequence[float], counts: Sequence[float], values: np.ndarray) -> float:
    """Largest gap between the live empirical CDF and the reference CDF."""
    live = np.sort(values)
    n = len(live)
    ref = reference_cdf(edges, counts, live)
    above = np.arange(1, n + 1) / n - ref
    below = ref - np.arange(0, n) / n
    return float(max(above.max(initial=0.0), below.max(initial=0.0)))


def feature_drift(
    name: str,
    profile: Mapping[str, Any],
    values: Iterable[Any],
    threshold: float = DEFAULT_PSI_THRESHOLD,
) -> FeatureDrift:
    """Drift of one feature's live values against its reference profile."""
    kind = str(profile.get("kind", "numeric"))
    if kind == "categorical":
        live = [OTHER if v is None else str(v) for v in values]
        if len(live) < MIN_ROWS:
            return FeatureDrift(name, kind, len(live), None, None, threshold)
        reference = {str(k): float(v) for k, v in profile.get("frequencies", {}).items()}
        categories = [*reference, OTHER]
        seen = {c: 0 for c in categories}
        for value in live:
            seen[value if value in reference else OTHER] += 1
        score = psi([reference.get(c, 0.0) for c in categories], [seen[c] for c in categories])
        return FeatureDrift(name, kind, len(live), score, None, threshold)

    numbers = _floats(values)
    numbers = numbers[np.isfinite(numbers)]
    histogram = profile.get("histogram") or {}
    edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
    if len(numbers) < MIN_ROWS or len(edges) < 2:  # too few rows, or no reference values
        return FeatureDrift(name, kind, len(numbers), None, None, threshold)
    score = psi(counts, numeric_bin_counts(edges, numbers))
    return FeatureDrift(
        name, kind, len(numbers), score, ks_statistic(edges, counts, numbers), threshold
    )


def drift_report(
    profile: Mapping[str, Mapping[str, Any]],
    columns: Mapping[str, Sequence[Any]],
    thresholds: Mapping[str, float] | None = None,
    default_threshold: float = DEFAULT_PSI_THRESHOLD,
) -> list[FeatureDrift]:
    """Drift of every profiled feature present in ``columns`` (feature name -> live values)."""
    thresholds = thresholds or {}
    return [
        feature_drift(name, spec, columns[name], thresholds.get(name, default_threshold))
        for name, spec in profile.items()
        if name in columns
    ]


def _floats(values: Iterable[Any]) -> npt.NDArray[np.float64]:
    """The values as floats (None as NaN) in one conversion; one at a time if that fails."""
    values = values if isinstance(values, (list, np.ndarray)) else list(values)
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):  # text, or other values a float cannot be made of
        return np.asarray([_as_float(v) for v in values], dtype=float)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
