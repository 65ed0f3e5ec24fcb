"""The monitor inside a served Bento: request logs, Prometheus metrics, drift and alerts.

The request path only logs rows (``bentoml.monitor``), bumps counters and appends to a bounded
window; drift scores are computed by a background thread every few seconds, which also raises
alerts. Nothing here may fail a request: callers wrap every call.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import json
import logging
import os
import queue
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlnb.monitoring.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift, drift_report
from mlnb.monitoring.jsonlines import JsonLinesMonitor
from mlnb.monitoring.logs import PREDICTIONS_MONITOR, REFERENCE_FILE, REJECTIONS_MONITOR
from mlnb.monitoring.reference import json_safe, prediction_label
from mlnb.monitoring.summary import (
    DEFAULT_WINDOW,
    PREDICTION_COLUMN,
    REQUEST_COLUMN,
    log_column,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlnb.errors import RequestRejected
    from mlnb.serving.info import ServiceInfo

logger = logging.getLogger("mlnb.monitoring")
FLUSH_SECONDS = 0.2  # the longest an answered row waits before it is logged
MAX_BATCH = 32  # requests recorded at once, then the GIL is given back to the event loop


@dataclass(frozen=True)
class MonitorSettings:
    """Serve-time settings, from the environment of ``bentoml serve``."""

    window: int = DEFAULT_WINDOW
    interval: float = 2.0
    default_threshold: float = DEFAULT_PSI_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    webhook: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MonitorSettings:
        env = dict(os.environ if env is None else env)
        thresholds = {}
        for item in env.get("MLNB_DRIFT_THRESHOLDS", "").split(","):
            name, _, value = item.partition("=")
            if name.strip() and value.strip():
                thresholds[name.strip()] = float(value)
        return cls(
            window=int(env.get("MLNB_DRIFT_WINDOW", DEFAULT_WINDOW)),
            interval=float(env.get("MLNB_DRIFT_INTERVAL", 2.0)),
            default_threshold=float(env.get("MLNB_DRIFT_THRESHOLD", DEFAULT_PSI_THRESHOLD)),
            thresholds=thresholds,
            webhook=env.get("MLNB_ALERT_WEBHOOK") or None,
        )


class _Metrics:
    """The ``mlnb_*`` Prometheus metrics, created once per worker through bentoml.metrics."""

    def __init__(self, classification: bool, buckets: Sequence[float] | None) -> None:
        import bentoml

        metrics = bentoml.metrics
        self.rejected = metrics.Counter(
            name="mlnb_rejected_requests",
            documentation="Requests answered with a 4xx, by reason",
            labelnames=["reason"],
        )
        self.rows = metrics.Counter(
            name="mlnb_rows", documentation="Rows answered and logged", labelnames=[]
        )
        self.classes = (
            metrics.Counter(
                name="mlnb_predictions",
                documentation="Predictions by class",
                labelnames=["label"],
            )
            if classification
            else None
        )
        self.values = (
            None
            if classification
            else metrics.Histogram(
                name="mlnb_prediction_value",
                documentation="Predicted values",
                labelnames=[],
                **({"buckets": list(buckets)} if buckets else {}),
            )
        )
        gauge = {"labelnames": ["feature"], "multiprocess_mode": "livemax"}
        self.psi = metrics.Gauge(
            name="mlnb_feature_drift_psi",
            documentation="PSI of the recent window against the training data",
            **gauge,
        )
        self.ks = metrics.Gauge(
            name="mlnb_feature_drift_ks",
            documentation="Kolmogorov-Smirnov statistic of the recent window (numerical features)",
            **gauge,
        )
        self.drifted = metrics.Gauge(
            name="mlnb_feature_drifted",
            documentation="1 when the feature's PSI is above its threshold",
            **gauge,
        )


class LiveMonitor:
    """One worker's monitor. The request path only queues what it answered; a background
    thread writes the logs, counts the metrics, fills the drift window and scores it."""

    def __init__(self, info: ServiceInfo, settings: MonitorSettings | None = None) -> None:
        self.info = info
        self.settings = settings or MonitorSettings.from_env()
        self.classification = info.task == "classification"
        self.profile: dict[str, Any] = dict(info.profile or {})
        self.feature_kinds = {f["name"]: f.get("kind", "numeric") for f in info.features}
        self._window = {name: deque(maxlen=self.settings.window) for name in self.profile}
        self._queue: queue.SimpleQueue[_Answered | RequestRejected] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._new_rows = 0
        self._request_ids = itertools.count()
        self._columns_seen: object = None
        self._names: list[str] = []
        self._alerting: set[str] = set()
        self.last_drift: list[FeatureDrift] = []
        prediction_reference = info.prediction_profile
        self.metrics = _Metrics(self.classification, _buckets(prediction_reference))
        self._write_reference(prediction_reference)
        self._thread = threading.Thread(target=self._loop, name="mlnb-monitor", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        logger.info("mlnb monitoring: logs in %s", info.monitor_dir)

    # -- request path: queue and return ----------------------------------------------------

    def answer(self, frame: pd.DataFrame, answer: dict[str, Any]) -> None:
        if frame.columns is not self._columns_seen:  # the schema reuses one Index object
            self._columns_seen, self._names = frame.columns, [str(c) for c in frame.columns]
        self._queue.put(
            _Answered(
                f"{os.getpid()}-{next(self._request_ids)}",
                time.time(),
                self._names,
                frame.to_numpy(),  # one conversion; per-column access costs ~30 us a column
                answer.get("predictions", []),
            )
        )

    # -- the background thread ------------------------------------------------------------

    def _loop(self) -> None:
        """Every FLUSH_SECONDS, record all that was answered; score drift every interval.

        Waking on a timer rather than on every answer keeps batches large and the thread
        mostly asleep, so it takes little from the event loop (they share the GIL).
        """
        next_refresh = time.monotonic() + self.settings.interval
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(FLUSH_SECONDS)
            try:
                self._drain()
                if stopping or time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.settings.interval
                    self.refresh()
            except Exception:  # the thread must outlive any one bad batch
                logger.exception("mlnb monitoring: a batch of answers could not be recorded")

    def _drain(self) -> None:
        while True:
            batch: list[_Answered | RequestRejected] = []
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._record([b for b in batch if isinstance(b, _Answered)])
            self._record_rejections([b for b in batch if not isinstance(b, _Answered)])
            if len(batch) < MAX_BATCH:
                return
            time.sleep(0)  # let waiting requests run between chunks (they share the GIL)

    def _record(self, batch: list[_Answered]) -> None:
        """Log, count and window a batch of answered requests (one monitor record)."""
        if not batch:
            return
        requests: list[str] = []
        times: list[str] = []
        labels: list[Any] = []
        for answered in batch:
            predicted = [prediction_label(p, self.classification) for p in answered.predictions]
            requests += [answered.request] * len(predicted)
            times += [_iso(answered.at)] * len(predicted)
            labels += predicted
        columns = _batch_columns(batch)
        with self._monitor(PREDICTIONS_MONITOR) as mon:
            mon.log_batch(times, "timestamp", "feature", "categorical")
            mon.log_batch(requests, REQUEST_COLUMN, "feature", "categorical")
            for name, values in columns.items():
                kind = self.feature_kinds.get(name)
                data_type = "categorical" if kind == "categorical" else "numerical"
                mon.log_batch(values, log_column(name), "feature", data_type)
            data_type = "categorical" if self.classification else "numerical"
            mon.log_batch(labels, PREDICTION_COLUMN, "prediction", data_type)
        for name, window in self._window.items():
            if name in columns:
                window.extend(columns[name])
        self._new_rows += len(labels)
        self.metrics.rows.inc(len(labels))
        if self.metrics.classes is not None:
            for label, count in Counter(str(label) for label in labels).items():
                self.metrics.classes.labels(label=label).inc(count)
        elif self.metrics.values is not None:
            for value in labels:
                if isinstance(value, (int, float)):
                    self.metrics.values.observe(value)

    def _record_rejections(self, rejections: list[RequestRejected]) -> None:
        if not rejections:
            return
        for reason, count in Counter(r.reason for r in rejections).items():
            self.metrics.rejected.labels(reason=reason).inc(count)
        with self._monitor(REJECTIONS_MONITOR) as mon:
            mon.log_batch([r.reason for r in rejections], "reason", "feature", "categorical")
            mon.log_batch([r.status for r in rejections], "status", "feature", "categorical")
            mon.log_batch([r.field for r in rejections], "field", "feature", "categorical")
            mon.log_batch([r.row for r in rejections], "row", "feature", "numerical")

    def reject(self, rejection: RequestRejected) -> None:
        self._queue.put(rejection)

    def _monitor(self, name: str) -> Any:
        """A bentoml.monitor writing JSON lines under this Bento's absolute folder."""
        import bentoml

        options = {"log_path": str(self.info.monitor_dir)}
        return bentoml.monitor(name, monitor_class=JsonLinesMonitor, monitor_options=options)

    # -- background ---------------------------------------------------------------------

    def refresh(self) -> list[FeatureDrift]:
        """Recompute drift over the window when new rows came in; update gauges and alerts."""
        if not self._new_rows:
            return self.last_drift
        self._new_rows = 0
        columns = {name: list(window) for name, window in self._window.items()}
        scores = drift_report(
            self.profile,
            columns,
            self.settings.thresholds,
            default_threshold=self.settings.default_threshold,
        )
        for score in scores:
            if score.psi is None:
                continue
            self.metrics.psi.labels(feature=score.feature).set(score.psi)
            if score.ks is not None:
                self.metrics.ks.labels(feature=score.feature).set(score.ks)
            self.metrics.drifted.labels(feature=score.feature).set(int(score.drifted))
        self._alert([s for s in scores if s.drifted])
        self._alerting &= {s.feature for s in scores if s.drifted}
        self.last_drift = scores
        return scores

    def _alert(self, drifted: Iterable[FeatureDrift]) -> None:
        for score in drifted:
            if score.feature in self._alerting:
                continue  # alert when a feature starts drifting, not on every refresh
            self._alerting.add(score.feature)
            logger.warning(
                "mlnb drift alert: %s %s PSI %.3f > %s over the last %d rows",
                self.info.tag,
                score.feature,
                score.psi,
                score.threshold,
                score.rows,
            )
            if self.settings.webhook:
                post_alert(self.settings.webhook, {"bento": self.info.tag, **score.to_json()})

    def _write_reference(self, prediction_reference: dict[str, Any] | None) -> None:
        folder = Path(self.info.monitor_dir)
        folder.mkdir(parents=True, exist_ok=True)
        reference = {
            "bento": self.info.tag,
            "run_id": self.info.run_id,
            "task": self.info.task,
            "classes": self.info.classes,
            "features": self.profile,
            "prediction": prediction_reference,
            "default_threshold": self.settings.default_threshold,
            "thresholds": self.settings.thresholds,
            "window": self.settings.window,
        }
        tmp = folder / f".{REFERENCE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(reference, indent=1, default=str))
        tmp.replace(folder / REFERENCE_FILE)

    def stop(self, timeout: float = 10.0) -> None:
        """Record what is queued, then end the thread (at worker exit: no row is lost)."""
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join(timeout)


def post_alert(url: str, payload: dict[str, Any], timeout: float = 3.0) -> None:
    """POST an alert as JSON; a failure is logged, never raised."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except Exception as exc:  # an alert never fails anything
        logger.warning("mlnb drift alert: webhook %s failed: %s", url, exc)


@dataclass(frozen=True)
class _Answered:
    """What the request path hands to the background thread."""

    request: str
    at: float  # time.time() when answered
    names: list[str]
    values: Any  # the frame's values, rows by columns (numpy)
    predictions: list[Any]


def _batch_columns(batch: list[_Answered]) -> dict[str, list[Any]]:
    """Per-column lists of plain JSON values over a batch; NaN and infinity become None."""
    columns: dict[str, list[Any]] = {}
    by_names: dict[int, list[_Answered]] = {}
    for answered in batch:  # requests share one list of names unless the schema changed
        by_names.setdefault(id(answered.names), []).append(answered)
    for group in by_names.values():
        names = group[0].names
        matrix = np.concatenate([a.values for a in group]) if len(group) > 1 else group[0].values
        if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
            matrix = np.where(np.isfinite(matrix), matrix, None)
        elif matrix.dtype.kind not in "fiub":
            matrix = np.vectorize(json_safe, otypes=[object])(matrix)
        for name, values in zip(names, matrix.T.tolist(), strict=True):
            columns.setdefault(name, []).extend(values)
    return columns


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def _buckets(prediction_reference: dict[str, Any] | None) -> list[float] | None:
    if not prediction_reference or prediction_reference.get("kind") != "numeric":
        return None
    edges = prediction_reference.get("histogram", {}).get("edges") or []
    return sorted({float(e) for e in edges}) or None
