"""A self-contained HTML report of a monitoring folder: tables and inline SVG charts.

Every name and value in it comes from the logs and the reference profile, so from the
requests and the training data: the template (``.html.j2``) is rendered with autoescape, and
the charts escape their labels themselves (they are the only :class:`Markup` passed in).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from mlnb.monitoring.drift import (
    DEFAULT_PSI_THRESHOLD,
    by_psi,
    numeric_bin_counts,
)
from mlnb.reporting.charts import lines_over_time, paired_bars, top_series
from mlnb.reporting.logs import MonitorFolder
from mlnb.reporting.summary import MonitorSummary
from mlnb.templating import render

TEMPLATE = "monitor_report.html.j2"


def render_report(
    logs: MonitorFolder, summary: MonitorSummary, templates: str | Path | None = None
) -> str:
    reference = logs.reference
    threshold = float(reference.get("default_threshold", DEFAULT_PSI_THRESHOLD))
    over_time = {
        name: [point["psi"].get(name) for point in summary.drift_over_time]
        for name in logs.features
    }
    shown = top_series(over_time)
    scored = sum(1 for values in over_time.values() if any(v is not None for v in values))
    checked = [
        (feature, rule, count)
        for feature, rules in (summary.contract.violations if summary.contract else {}).items()
        for rule, count in rules.items()
    ]
    drift = by_psi(summary.drift)
    charts = {
        name: _feature_chart(name, spec, summary.window_values.get(name))
        for name, spec in reference.get("features", {}).items()
    }
    return render(
        TEMPLATE,
        templates,
        summary=summary,
        drift_rows=drift,
        contract_rows=[row for row in checked if row[2]],
        contract_clean=sum(1 for row in checked if not row[2]),
        reference=reference,
        folder=str(logs.path),
        drift_chart=lines_over_time(
            shown,
            period_times(summary.drift_over_time),
            threshold=threshold,
            span=(
                _parse_time(summary.drift_over_time[0]["start"]),
                _parse_time(summary.drift_over_time[-1]["end"]),
            ),
            title="PSI per feature over time",
        )
        if summary.drift_over_time and shown
        else None,
        drift_chart_shown=len(shown),
        drift_chart_scored=scored,
        prediction_chart=_prediction_chart(summary.predictions),
        feature_charts=[(d, charts[d.feature]) for d in drift if d.feature in charts],
    )


def period_times(points: Sequence[dict[str, Any]]) -> list[datetime.datetime]:
    """The middle of each period of ``drift_over_time`` (its ``start`` and ``end``, UTC)."""
    times = []
    for point in points:
        start, end = (_parse_time(point[key]) for key in ("start", "end"))
        times.append(start + (end - start) / 2)
    return times


def _parse_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _feature_chart(name: str, spec: dict[str, Any], values: np.ndarray | None) -> Markup:
    """Training against the drift window's values: categories, or the training histogram."""
    live = np.zeros(0) if values is None else values
    if spec.get("kind") == "categorical":
        training = {str(k): float(v) for k, v in spec.get("frequencies", {}).items()}
        texts = [str(v) for v in live.tolist() if v is not None]
        counts = {label: texts.count(label) for label in dict.fromkeys(texts)}
        labels = list(dict.fromkeys([*training, *counts]))
        total = max(len(texts), 1)
        return paired_bars(
            labels,
            [training.get(x, 0.0) for x in labels],
            [counts.get(x, 0) / total for x in labels],
            title=name,
        )
    histogram = spec.get("histogram") or {}
    edges, counts_ = histogram.get("edges") or [], histogram.get("counts") or []
    numbers = live.astype(float) if live.dtype.kind in "fiu" else np.zeros(0)
    numbers = numbers[np.isfinite(numbers)]
    if len(edges) < 2:
        return paired_bars([], [], [], title=name)
    live_counts = numeric_bin_counts(edges, numbers)
    total_train = sum(counts_) or 1
    labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]  # each bin by its left edge
    return paired_bars(
        labels,
        [c / total_train for c in counts_],
        [c / max(len(numbers), 1) for c in live_counts.tolist()],
        title=name,
    )


def _prediction_chart(predictions: dict[str, Any]) -> Markup | None:
    if predictions.get("kind") == "categorical":
        labels = predictions["labels"]
    elif predictions.get("kind") == "numeric" and predictions.get("edges"):
        edges = predictions["edges"]
        labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]  # each bin by its left edge
    else:
        return None
    return paired_bars(
        labels,
        predictions["training"],
        predictions["live"],
        width=520,
        title="predictions: training against live",
    )
