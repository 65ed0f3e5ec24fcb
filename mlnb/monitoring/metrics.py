"""The ``mlnb_*`` Prometheus metrics of a serving worker, counted a batch at a time.

BentoML runs ``prometheus_client`` in multiprocess mode (``$PROMETHEUS_MULTIPROC_DIR``, set
before the worker starts), so these series show on BentoML's ``/metrics`` beside its own.
Every series carries ``service_name`` (the label BentoML's ``bentoml_*`` series carry: the
Bento's name) and ``version`` (the Bento version this worker answers for); ``mlnb_build_info``
is the Prometheus "info" gauge (always 1) whose labels name the Bento's lineage.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

_CREATED: dict[str, Any] = {}  # a metric is registered once per process
SERVICE = "service_name"  # BentoML's label for the Bento's name on its bentoml_* series
# mlnb_build_info's labels besides service_name and version, from ServiceInfo.build
BUILD_LABELS = ("run", "git_commit", "git_dirty", "mlnb_version", "model_format")
UNKNOWN = "unknown"


def _metric(kind: str, name: str, **options: Any) -> Any:
    """The process's metric of that name, created the first time it is asked for."""
    if name not in _CREATED:
        import prometheus_client

        _CREATED[name] = getattr(prometheus_client, kind)(name=name, **options)
    return _CREATED[name]


def bentoml_service_name(default: str) -> str:
    """The ``service_name`` BentoML's own series carry in this process (the Bento's name, or
    the service's when served from a folder); ``default`` outside a BentoML worker.

    Read from BentoML's server context only when BentoML is already loaded: in a release,
    the versions' workers carry the release Bento's name there, as BentoML's series do.
    """
    context = sys.modules.get("bentoml._internal.context")
    name = getattr(getattr(context, "server_context", None), "bento_name", "") if context else ""
    return str(name or default)


def build_labels(build: Mapping[str, Any] | None, *, service: str, version: str) -> dict[str, str]:
    """``mlnb_build_info``'s labels: ``"unknown"`` for what the build did not record, and
    the mlnb serving now for a Bento that recorded no ``mlnb_version``."""
    from mlnb import __version__

    known = {key: str(value) for key, value in (build or {}).items() if value not in (None, "")}
    labels = {SERVICE: service, "version": version}
    labels.update({key: known.get(key, UNKNOWN) for key in BUILD_LABELS})
    if labels["mlnb_version"] == UNKNOWN:
        labels["mlnb_version"] = __version__
    return labels


class ServiceMetrics:
    """Rows, predictions, rejections, drift and data contract violations of one worker.

    Every series carries ``service_name`` (see :func:`bentoml_service_name`; ``service`` is
    the name outside BentoML) and ``version`` (the Bento version the worker serves), the
    labels BentoML's own ``bentoml_*`` series carry: the two versions of a release, each in
    its own worker, stay apart on one ``/metrics``. ``build`` is the Bento's lineage
    (``ServiceInfo.build``), shown as ``mlnb_build_info``.
    """

    def __init__(
        self,
        classification: bool,
        buckets: Sequence[float] | None,
        version: str = "",
        *,
        service: str = "",
        build: Mapping[str, Any] | None = None,
    ) -> None:
        self.version = version
        self.service = bentoml_service_name(service)
        self._ours = ours = {SERVICE: self.service, "version": version}
        self.build_info = _metric(
            "Gauge",
            "mlnb_build_info",
            documentation="1, labelled with the Bento's lineage: run, git commit, mlnb version, "
            "model format",
            labelnames=[SERVICE, "version", *BUILD_LABELS],
            multiprocess_mode="livemax",
        )
        self.build_info.labels(**build_labels(build, service=self.service, version=version)).set(1)
        self.rejected = _metric(
            "Counter",
            "mlnb_rejected_requests",
            documentation="Requests answered with a 4xx, by reason",
            labelnames=["reason", SERVICE, "version"],
        )
        self.rows = _metric(
            "Counter",
            "mlnb_rows",
            documentation="Rows answered and logged",
            labelnames=[SERVICE, "version"],
        ).labels(**ours)
        self.classes = (
            _metric(
                "Counter",
                "mlnb_predictions",
                documentation="Predictions by class",
                labelnames=["label", SERVICE, "version"],
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
                labelnames=[SERVICE, "version"],
                **({"buckets": list(buckets)} if buckets else {}),
            ).labels(**ours)
        )
        gauge: dict[str, Any] = {
            "labelnames": ["feature", SERVICE, "version"],
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
            labelnames=["feature", "rule", SERVICE, "version"],
        )

    def declare_rules(self, rules: Iterable[tuple[str, str]]) -> None:
        """Show a 0 for each ``(feature, rule)`` counted, before any violation."""
        for feature, rule in rules:
            self.violations.labels(feature=feature, rule=rule, **self._ours)

    def count_violations(self, violations: Mapping[tuple[str, str], int]) -> None:
        for (feature, rule), count in violations.items():
            if count:
                self.violations.labels(feature=feature, rule=rule, **self._ours).inc(count)

    def set_drift(self, feature: str, psi: float, ks: float | None, drifted: bool) -> None:
        self.psi.labels(feature=feature, **self._ours).set(psi)
        if ks is not None:
            self.ks.labels(feature=feature, **self._ours).set(ks)
        self.drifted.labels(feature=feature, **self._ours).set(int(drifted))

    def count_rows(self, rows: int) -> None:
        self.rows.inc(rows)

    def count_labels(self, labels: dict[str, int]) -> None:
        if self.classes is not None:
            for label, count in labels.items():
                self.classes.labels(label=label, **self._ours).inc(count)

    def observe_values(self, values: npt.NDArray[np.float64]) -> None:
        if self.values is not None:
            observe_many(self.values, values[np.isfinite(values)])

    def count_rejections(self, reasons: dict[str, int]) -> None:
        for reason, count in reasons.items():
            self.rejected.labels(reason=reason, **self._ours).inc(count)


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
