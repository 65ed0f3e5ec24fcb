"""The ``mlnb_*`` Prometheus metrics of a serving worker, counted a batch at a time.

BentoML runs ``prometheus_client`` in multiprocess mode (``$PROMETHEUS_MULTIPROC_DIR``, set
before the worker starts), so these series show on BentoML's ``/metrics`` beside its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_CREATED: dict[str, Any] = {}  # a metric is registered once per process


def _metric(kind: str, name: str, **options: Any) -> Any:
    """The process's metric of that name, created the first time it is asked for."""
    if name not in _CREATED:
        import prometheus_client

        _CREATED[name] = getattr(prometheus_client, kind)(name=name, **options)
    return _CREATED[name]


class ServiceMetrics:
    """Rows, predictions, rejections, drift and data contract violations of one worker.

    Every series carries the ``version`` label (the Bento version the worker serves), as
    BentoML's own ``bentoml_*`` series do: the two versions of a release, each in its own
    worker, stay apart on one ``/metrics``.
    """

    def __init__(
        self, classification: bool, buckets: Sequence[float] | None, version: str = ""
    ) -> None:
        self.version = version
        self.rejected = _metric(
            "Counter",
            "mlnb_rejected_requests",
            documentation="Requests answered with a 4xx, by reason",
            labelnames=["reason", "version"],
        )
        self.rows = _metric(
            "Counter", "mlnb_rows", documentation="Rows answered and logged", labelnames=["version"]
        ).labels(version=version)
        self.classes = (
            _metric(
                "Counter",
                "mlnb_predictions",
                documentation="Predictions by class",
                labelnames=["label", "version"],
            )
            if classification
            else None
        )
        self.values = (
            None
            if classification
            else _metric(
                "Histogram",
                "mlnb_prediction_value",
                documentation="Predicted values",
                labelnames=["version"],
                **({"buckets": list(buckets)} if buckets else {}),
            ).labels(version=version)
        )
        gauge: dict[str, Any] = {
            "labelnames": ["feature", "version"],
            "multiprocess_mode": "livemax",
        }
        self.psi = _metric(
            "Gauge",
            "mlnb_feature_drift_psi",
            documentation="PSI of the recent window against the training data",
            **gauge,
        )
        self.ks = _metric(
            "Gauge",
            "mlnb_feature_drift_ks",
            documentation="Kolmogorov-Smirnov statistic of the recent window (numerical features)",
            **gauge,
        )
        self.drifted = _metric(
            "Gauge",
            "mlnb_feature_drifted",
            documentation="1 when the feature's PSI is above its threshold",
            **gauge,
        )
        self.violations = _metric(
            "Counter",
            "mlnb_contract_violations",
            documentation="Answered rows (range, category) or windows of rows (null_share) "
            "outside the data contract, by feature and rule",
            labelnames=["feature", "rule", "version"],
        )

    def declare_rules(self, rules: Iterable[tuple[str, str]]) -> None:
        """Show a 0 for each ``(feature, rule)`` counted, before any violation."""
        for feature, rule in rules:
            self.violations.labels(feature=feature, rule=rule, version=self.version)

    def count_violations(self, violations: Mapping[tuple[str, str], int]) -> None:
        for (feature, rule), count in violations.items():
            if count:
                self.violations.labels(feature=feature, rule=rule, version=self.version).inc(count)

    def set_drift(self, feature: str, psi: float, ks: float | None, drifted: bool) -> None:
        self.psi.labels(feature=feature, version=self.version).set(psi)
        if ks is not None:
            self.ks.labels(feature=feature, version=self.version).set(ks)
        self.drifted.labels(feature=feature, version=self.version).set(int(drifted))

    def count_rows(self, rows: int) -> None:
        self.rows.inc(rows)

    def count_labels(self, labels: dict[str, int]) -> None:
        if self.classes is not None:
            for label, count in labels.items():
                self.classes.labels(label=label, version=self.version).inc(count)

    def observe_values(self, values: npt.NDArray[np.float64]) -> None:
        if self.values is not None:
            observe_many(self.values, values[np.isfinite(values)])

    def count_rejections(self, reasons: dict[str, int]) -> None:
        for reason, count in reasons.items():
            self.rejected.labels(reason=reason, version=self.version).inc(count)


def observe_many(histogram: Any, values: npt.NDArray[np.float64]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per bucket.

    prometheus_client has no bulk observe and one call costs about a microsecond; its
    Histogram keeps a count per bucket (``_buckets``, each value counted in the first bucket
    whose upper bound holds it) and a ``_sum``, which are incremented here the same way.
    A Histogram without those internals gets one ``observe`` per value.
    """
    if not len(values):
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values.tolist():
            histogram.observe(value)
        return
    places = np.searchsorted(np.asarray(bounds, dtype=float), values, side="left")
    for index, count in enumerate(np.bincount(places, minlength=len(bounds)).tolist()):
        if count and index < len(buckets):
            buckets[index].inc(count)
    total.inc(float(values.sum()))
