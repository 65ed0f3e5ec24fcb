"""A self-contained HTML report of a monitoring folder: tables and inline SVG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from mlnb.monitoring.charts import lines_over_time, paired_bars
from mlnb.monitoring.drift import DEFAULT_PSI_THRESHOLD, numeric_bin_counts
from mlnb.monitoring.logs import MonitorLogs
from mlnb.monitoring.summary import MonitorSummary, log_column
from mlnb.templating import render

TEMPLATE = "monitor_report.html.j2"


def render_report(
    logs: MonitorLogs, summary: MonitorSummary, templates: str | Path | None = None
) -> str:
    reference = logs.reference
    threshold = float(reference.get("default_threshold", DEFAULT_PSI_THRESHOLD))
    over_time = {
        name: [point["psi"].get(name) for point in summary.drift_over_time]
        for name in logs.features
    }
    return render(
        TEMPLATE,
        templates,
        summary=summary,
        reference=reference,
        folder=str(logs.folder),
        drift_chart=Markup(
            lines_over_time(over_time, threshold=threshold, title="PSI per feature over time")
        )
        if summary.drift_over_time
        else None,
        prediction_chart=_prediction_chart(summary.predictions),
        feature_charts=[
            (drift, Markup(_feature_chart(name, spec, logs.rows[-summary.window_rows :])))
            for name, spec in reference.get("features", {}).items()
            for drift in summary.drift
            if drift.feature == name
        ],
    )


def _feature_chart(name: str, spec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    values = [row.get(log_column(name)) for row in rows]
    if spec.get("kind") == "categorical":
        training = {str(k): float(v) for k, v in spec.get("frequencies", {}).items()}
        live = [str(v) for v in values if v is not None]
        labels = list(dict.fromkeys([*training, *live]))
        live_fraction = [live.count(label) / max(len(live), 1) for label in labels]
        return paired_bars(
            labels, [training.get(x, 0.0) for x in labels], live_fraction, title=name
        )
    histogram = spec["histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    live_counts = numeric_bin_counts(edges, np.asarray(numbers, dtype=float))
    total_train = sum(counts) or 1
    labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]  # each bin by its left edge
    return paired_bars(
        labels,
        [c / total_train for c in counts],
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
    return Markup(
        paired_bars(
            labels,
            predictions["training"],
            predictions["live"],
            width=520,
            title="predictions: training against live",
        )
    )
