"""The recorder: one process per serving worker that logs, counts and scores what it answered.

The worker (:mod:`mlnb.monitoring.live`) starts ``python -m mlnb.monitoring.recorder`` and
sends it batches on its stdin (:mod:`mlnb.monitoring.wire`). The recorder writes the JSON
lines with ``bentoml.monitor``, counts the ``mlnb_*`` Prometheus metrics (BentoML's multiprocess
folder, so ``/metrics`` shows them beside the worker's), keeps the drift window, scores it every
``MLNB_DRIFT_INTERVAL`` seconds and raises alerts. When the worker's end of the pipe closes
(the worker stopped, or died) it records what it was sent and exits.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import select
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.monitoring.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift, drift_report
from mlnb.monitoring.jsonlines import JsonLinesMonitor
from mlnb.monitoring.logs import PREDICTIONS_MONITOR, REFERENCE_FILE, REJECTIONS_MONITOR
from mlnb.monitoring.reference import prediction_labels
from mlnb.monitoring.summary import DEFAULT_WINDOW, PREDICTION_COLUMN, REQUEST_COLUMN, log_column
from mlnb.monitoring.window import RecentRows
from mlnb.monitoring.wire import STOP_SIGNALS, Answered, Batch, Rejected, read_message

if TYPE_CHECKING:
    from mlnb.serving.info import ServiceInfo

logger = logging.getLogger("mlnb.monitoring")
RECORDER_NICENESS = 10


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
    """The ``mlnb_*`` Prometheus metrics, created once per recorder.

    The worker's ``$PROMETHEUS_MULTIPROC_DIR`` (set by BentoML) is this process's too, so
    ``prometheus_client`` writes them where BentoML's ``/metrics`` collects every process's.
    """

    def __init__(self, classification: bool, buckets: Sequence[float] | None) -> None:
        import prometheus_client as metrics

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


class Recorder:
    """Logs, metrics, drift window and alerts of one worker's answers."""

    def __init__(self, info: ServiceInfo, worker: str, settings: MonitorSettings) -> None:
        self.info = info
        self.worker = worker  # request ids are "<worker pid>-<n>"
        self.settings = settings
        self.classification = info.task == "classification"
        self.profile: dict[str, Any] = dict(info.profile or {})
        self.feature_kinds = {f["name"]: f.get("kind", "numeric") for f in info.features}
        self._window = RecentRows(settings.window)
        self._new_rows = 0
        self._requests = 0
        self._alerting: set[str] = set()
        self.last_drift: list[FeatureDrift] = []
        self.metrics = _Metrics(self.classification, _buckets(info.prediction_profile))
        self._write_reference()

    def record(self, batch: Batch) -> None:
        for answered in batch.answered:
            self._record(answered)
        self._record_rejections(batch.rejected)

    def _record(self, answered: Answered) -> None:
        """Log, count and window the requests of one schema (one monitor record)."""
        labels = prediction_labels(answered.predictions, self.classification)
        times: list[str] = []
        requests: list[str] = []
        for at, rows in zip(iso_times(answered.times), answered.rows, strict=True):
            times += [at] * rows
            requests += [f"{self.worker}-{self._requests}"] * rows
            self._requests += 1
        matrix = answered.values
        with self._monitor(PREDICTIONS_MONITOR) as mon:
            mon.log_batch(times, "timestamp", "feature", "categorical")
            mon.log_batch(requests, REQUEST_COLUMN, "feature", "categorical")
            for index, name in enumerate(answered.names):  # columns as arrays, encoded whole
                kind = self.feature_kinds.get(name)
                data_type = "categorical" if kind == "categorical" else "numerical"
                mon.log_batch(matrix[:, index], log_column(name), "feature", data_type)
            data_type = "categorical" if self.classification else "numerical"
            mon.log_batch(labels, PREDICTION_COLUMN, "prediction", data_type)
        self._window.add(answered.names, matrix)
        self._count(labels)

    def _count(self, labels: list[Any]) -> None:
        self._new_rows += len(labels)
        self.metrics.rows.inc(len(labels))
        if self.metrics.classes is not None:
            for label, count in Counter(str(label) for label in labels).items():
                self.metrics.classes.labels(label=label).inc(count)
        elif self.metrics.values is not None:
            for value in labels:
                if isinstance(value, (int, float)):
                    self.metrics.values.observe(value)

    def _record_rejections(self, rejections: list[Rejected]) -> None:
        if not rejections:
            return
        for reason, count in Counter(r.reason for r in rejections).items():
            self.metrics.rejected.labels(reason=reason).inc(count)
        with self._monitor(REJECTIONS_MONITOR) as mon:
            mon.log_batch([r.reason for r in rejections], "reason", "feature", "categorical")
            mon.log_batch([r.status for r in rejections], "status", "feature", "categorical")
            mon.log_batch([r.field for r in rejections], "field", "feature", "categorical")
            mon.log_batch([r.row for r in rejections], "row", "feature", "numerical")

    def _monitor(self, name: str) -> Any:
        """A bentoml.monitor writing JSON lines under this Bento's absolute folder."""
        import bentoml

        options = {"log_path": str(self.info.monitor_dir)}
        return bentoml.monitor(name, monitor_class=JsonLinesMonitor, monitor_options=options)

    def refresh(self) -> list[FeatureDrift]:
        """Recompute drift over the window when new rows came in; update gauges and alerts."""
        if not self._new_rows:
            return self.last_drift
        self._new_rows = 0
        columns = self._window.columns(set(self.profile))
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

    def _write_reference(self) -> None:
        folder = Path(self.info.monitor_dir)
        folder.mkdir(parents=True, exist_ok=True)
        reference = {
            "bento": self.info.tag,
            "run_id": self.info.run_id,
            "task": self.info.task,
            "classes": self.info.classes,
            "features": self.profile,
            "prediction": self.info.prediction_profile,
            "default_threshold": self.settings.default_threshold,
            "thresholds": self.settings.thresholds,
            "window": self.settings.window,
        }
        tmp = folder / f".{REFERENCE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(reference, indent=1, default=str))
        tmp.replace(folder / REFERENCE_FILE)


def serve_pipe(recorder: Recorder, fd: int) -> None:
    """Record every batch read from ``fd`` and score drift every interval, until end of stream."""
    interval = recorder.settings.interval
    next_refresh = time.monotonic() + interval
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, next_refresh - time.monotonic()))
        if ready:
            batch = read_message(fd)
            if batch is None:
                break
            _safely(recorder.record, batch)
        if time.monotonic() >= next_refresh:
            _safely(recorder.refresh)
            next_refresh = time.monotonic() + interval
    _safely(recorder.refresh)


def _safely(step: Any, *args: Any) -> None:
    try:
        step(*args)
    except Exception:  # the recorder must outlive any one bad batch
        logger.exception("mlnb monitoring: a batch of answers could not be recorded")


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


def iso_times(times: Sequence[float]) -> list[str]:
    """``time.time()`` values as UTC ISO 8601 with microseconds (rounded as ``datetime``
    rounds them), each second formatted once."""
    texts: list[str] = []
    second, prefix = None, ""
    for at in times:
        whole = int(at)
        micro = round((at - whole) * 1e6)
        if micro >= 1_000_000:
            whole, micro = whole + 1, micro - 1_000_000
        if whole != second:
            second = whole
            moment = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc)
            prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
        texts.append(f"{prefix}.{micro:06d}+00:00")
    return texts


def _buckets(prediction_reference: dict[str, Any] | None) -> list[float] | None:
    if not prediction_reference or prediction_reference.get("kind") != "numeric":
        return None
    edges = prediction_reference.get("histogram", {}).get("edges") or []
    return sorted({float(e) for e in edges}) or None


def yield_to_the_worker() -> None:
    """Run behind the worker on a shared core: a lower priority (nice 10) and, on Linux, the
    batch policy, under which a recorder woken by a batch does not preempt the worker in the
    middle of a request but waits for its time slice to end."""
    os.nice(RECORDER_NICENESS)
    if hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main() -> None:
    """``python -m mlnb.monitoring.recorder``: the first message on stdin is the ServiceInfo."""
    # Stop at the end of the stream, after the worker: the worker started this process with
    # these signals blocked, so one sent before this point is dropped here, not fatal.
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    yield_to_the_worker()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [mlnb.monitoring] %(message)s"
    )
    fd = sys.stdin.fileno()
    info = read_message(fd)
    if info is None:
        return
    recorder = Recorder(info, worker=str(os.getppid()), settings=MonitorSettings.from_env())
    serve_pipe(recorder, fd)


if __name__ == "__main__":
    main()
