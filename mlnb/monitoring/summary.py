"""What a monitoring folder says: traffic, rejections, predictions and drift, now and over time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlnb.monitoring.drift import (
    DEFAULT_PSI_THRESHOLD,
    MIN_ROWS,
    FeatureDrift,
    drift_report,
    numeric_bin_counts,
)
from mlnb.monitoring.logs import MonitorLogs

DEFAULT_WINDOW = 1000
PREDICTION_COLUMN = "prediction"
REQUEST_COLUMN = "mlnb_request"  # mlnb's own request id: BentoML's is not set in middleware
RESERVED_COLUMNS = frozenset(
    {"timestamp", "request_id", "trace_id", PREDICTION_COLUMN, REQUEST_COLUMN}
)


def log_column(feature: str) -> str:
    """The column a feature is logged under (prefixed only where it would clash)."""
    return f"feature:{feature}" if feature in RESERVED_COLUMNS else feature


@dataclass
class MonitorSummary:
    bento: str
    rows_logged: int
    requests: int
    rejected_requests: int
    rejection_reasons: dict[str, int]
    drift: list[FeatureDrift]
    window_rows: int
    predictions: dict[str, Any]
    drift_over_time: list[dict[str, Any]] = field(default_factory=list)
    unreadable_lines: int = 0

    @property
    def rejection_rate(self) -> float:
        total = self.requests + self.rejected_requests
        return self.rejected_requests / total if total else 0.0

    @property
    def drifted_features(self) -> list[str]:
        return [d.feature for d in self.drift if d.drifted]

    def to_json(self) -> dict[str, Any]:
        return {
            "bento": self.bento,
            "rows_logged": self.rows_logged,
            "requests": self.requests,
            "rejected_requests": self.rejected_requests,
            "rejection_rate": round(self.rejection_rate, 6),
            "rejection_reasons": self.rejection_reasons,
            "window_rows": self.window_rows,
            "drifted_features": self.drifted_features,
            "features": {d.feature: d.to_json() for d in self.drift},
            "predictions": self.predictions,
            "drift_over_time": self.drift_over_time,
            "unreadable_lines": self.unreadable_lines,
        }


def summarise(logs: MonitorLogs, periods: int = 12) -> MonitorSummary:
    reference = logs.reference
    profile: dict[str, Any] = reference.get("features", {})
    window = int(reference.get("window", DEFAULT_WINDOW))
    thresholds = reference.get("thresholds", {})
    default_threshold = float(reference.get("default_threshold", DEFAULT_PSI_THRESHOLD))
    recent = logs.rows[-window:]
    drift = drift_report(
        profile, _columns(recent, profile), thresholds, default_threshold=default_threshold
    )
    reasons = Counter(str(r.get("reason", "unknown")) for r in logs.rejections)
    return MonitorSummary(
        bento=str(reference.get("bento", "")),
        rows_logged=len(logs.rows),
        requests=logs.requests,
        rejected_requests=len(logs.rejections),
        rejection_reasons=dict(reasons.most_common()),
        drift=drift,
        window_rows=len(recent),
        predictions=prediction_distribution(reference.get("prediction"), logs.rows),
        drift_over_time=drift_over_time(logs, periods, thresholds, default_threshold),
        unreadable_lines=logs.unreadable_lines,
    )


def _columns(rows: list[dict[str, Any]], profile: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: [row.get(log_column(name)) for row in rows] for name in profile}


def drift_over_time(
    logs: MonitorLogs,
    periods: int,
    thresholds: dict[str, float],
    default_threshold: float,
) -> list[dict[str, Any]]:
    """PSI per feature over consecutive slices of the logged rows, oldest first."""
    rows = logs.rows
    if len(rows) < MIN_ROWS:
        return []
    size = max(MIN_ROWS, -(-len(rows) // periods))
    profile = logs.reference.get("features", {})
    points = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        if len(chunk) < MIN_ROWS:
            break
        scores = drift_report(
            profile, _columns(chunk, profile), thresholds, default_threshold=default_threshold
        )
        points.append(
            {
                "start": chunk[0].get("timestamp"),
                "end": chunk[-1].get("timestamp"),
                "rows": len(chunk),
                "psi": {d.feature: d.psi for d in scores},
            }
        )
    return points


def prediction_distribution(
    reference: dict[str, Any] | None, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Training against live predictions, as fractions over the same categories or bins."""
    live = [row.get(PREDICTION_COLUMN) for row in rows if row.get(PREDICTION_COLUMN) is not None]
    if not reference:
        return {"kind": "unknown", "live_rows": len(live)}
    if reference.get("kind") == "categorical":
        training = {str(k): float(v) for k, v in reference.get("frequencies", {}).items()}
        counts = Counter(str(v) for v in live)
        labels = list(dict.fromkeys([*training, *counts]))
        return {
            "kind": "categorical",
            "labels": labels,
            "training": [training.get(label, 0.0) for label in labels],
            "live": [counts.get(label, 0) / len(live) if live else 0.0 for label in labels],
            "live_rows": len(live),
        }
    histogram = reference.get("histogram", {})
    edges = histogram.get("edges", [])
    values = np.asarray([float(v) for v in live if isinstance(v, (int, float))], dtype=float)
    train_counts = np.asarray(histogram.get("counts", []), dtype=float)
    live_counts = numeric_bin_counts(edges, values) if len(edges) > 1 else np.zeros(0)
    return {
        "kind": "numeric",
        "edges": edges,
        "training": (train_counts / max(train_counts.sum(), 1)).round(6).tolist(),
        "live": (live_counts / max(len(values), 1)).round(6).tolist(),
        "live_rows": len(values),
    }
