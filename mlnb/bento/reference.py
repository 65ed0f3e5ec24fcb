"""The reference live predictions are compared against: the served predictions on training rows.

``mlnb build`` answers the run's training sample through the same predictor the service uses
(serve code included) and profiles the labels the way the service logs them
(:func:`mlnb.monitoring.reference.prediction_labels`): class frequencies for a classifier,
deciles and a histogram for a regressor. The profile goes into ``mlnb_service.json`` and from
there into each monitoring folder's ``reference.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlnb.monitoring.reference import prediction_labels


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
