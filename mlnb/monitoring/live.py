"""The monitor inside a serving worker: queue what was answered, log and count it in batches.

The request path only queues (a few microseconds). A thread wakes every ``FLUSH_SECONDS``
and turns what was queued into one Arrow record batch per log (a copy of each request's
matrix, no per-value encoding), appends it to this worker's segment
(:mod:`mlnb.monitoring.segments`), counts the ``mlnb_*`` metrics, adds the newest rows to
the drift window as counts over the training bins, counts the rows against the data
contract's soft rules (:mod:`mlnb.monitoring.contract_rules`: ranges, categories, null share
over a window; never refusing a row) with their alerts, and every ``MLNB_DRIFT_INTERVAL``
seconds scores drift and raises drift alerts. It runs in the worker: a process beside it would
cost its own memory, and on a worker's one core the same CPU, plus the copy between them.

Nothing here may fail a request: callers wrap every call, and a monitor that fails says so
in the worker's log and the service serves on.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.monitoring.alerts import ContractAlerts, DriftAlerts, MonitorSettings
from mlnb.monitoring.contract_rules import ContractCounter, compile_rules
from mlnb.monitoring.metrics import ServiceMetrics
from mlnb.monitoring.records import (
    PREDICTIONS_LOG,
    REFERENCE_FILE,
    REJECTIONS_LOG,
    REJECTIONS_SCHEMA,
    Answered,
    PredictionRecords,
    Rejected,
    drift_profile,
    rejections_batch,
)
from mlnb.monitoring.segments import SegmentWriter
from mlnb.monitoring.window import BinnedWindow

if TYPE_CHECKING:
    from mlnb.errors import RequestRejected
    from mlnb.serving.info import ServiceInfo

logger = logging.getLogger("mlnb.monitoring")
# The longest an answered row waits before it is logged. Fewer, larger batches cost less
# per row (one record batch, one write, one binning call each).
FLUSH_SECONDS = 0.5
# Rows answered but not yet logged beyond which answering waits for the monitor (about
# 50 MB of 30 float features): a disk that cannot keep up slows the service down to its
# pace rather than the worker's memory growing without bound or rows being dropped.
MAX_BACKLOG_ROWS = 200_000
# How long a stopping worker waits for the last rows to be written.
STOP_TIMEOUT_S = 30.0


class LiveMonitor:
    """One worker's monitor: a queue, the thread that empties it, the logs it writes."""

    def __init__(self, info: ServiceInfo, settings: MonitorSettings | None = None) -> None:
        self.info = info
        self.settings = settings or MonitorSettings.from_env()
        self.classification = info.task == "classification"
        folder = Path(info.monitor_dir)
        write_reference(info, self.settings)
        self.records = PredictionRecords(info.features, self.classification)
        self.records.start(os.getpid())
        rotate = self.settings.rotate_seconds
        self._predictions = SegmentWriter(
            folder / PREDICTIONS_LOG, self.records.schema, rotate_seconds=rotate
        )
        self._rejections = SegmentWriter(
            folder / REJECTIONS_LOG, REJECTIONS_SCHEMA, rotate_seconds=rotate
        )
        self.metrics = ServiceMetrics(
            self.classification,
            _buckets(info.prediction_profile),
            info.bento_version,
            service=info.bento_name,
            build=info.build,
        )
        self.window = BinnedWindow(self.settings.window, drift_profile(info.profile or {}))
        self.alerts = DriftAlerts(info.tag, self.settings.webhook)
        self.contract = ContractCounter(
            compile_rules(info.contract, info.features), self.settings.contract_window
        )
        self.metrics.declare_rules(self.contract.totals)
        self.contract_alerts = ContractAlerts(
            info.tag, self.settings.webhook, self.settings.contract_alert_share
        )
        self.last_drift: list[Any] = []
        self._new_rows = 0
        self._queue: queue.SimpleQueue[Answered | Rejected] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._queued_rows = 0  # written by the request path only
        self._logged_rows = 0  # written by the thread only
        self._thread = threading.Thread(target=self._loop, name="mlnb-monitor", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        logger.info("mlnb monitoring: logs in %s", folder)

    # -- request path: queue and return ----------------------------------------------------

    def answer(self, frame: Any, answer: dict[str, Any], request_id: Any = None) -> None:
        """Queue a validated request (a pandas DataFrame) and the answer it got."""
        rows = len(frame)
        predictions = answer.get("predictions") or ()
        self._queue.put(Answered(time.time(), frame, predictions, rows, request_id))
        self._queued_rows += rows
        if self._queued_rows - self._logged_rows > MAX_BACKLOG_ROWS:
            self._wait_for_logs()

    def reject(self, rejection: RequestRejected) -> None:
        self._queue.put(
            Rejected(
                time.time(),
                rejection.reason,
                rejection.status,
                rejection.field,
                rejection.row,
                str(rejection),
            )
        )

    def _wait_for_logs(self) -> None:
        """Hold the request path until the monitor has caught up (or is gone)."""
        logger.warning("mlnb monitoring: the logs are behind; answering waits for them")
        while (
            self._queued_rows - self._logged_rows > MAX_BACKLOG_ROWS // 2
            and self._thread.is_alive()
        ):
            time.sleep(FLUSH_SECONDS / 4)

    # -- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        stopping = False
        next_refresh = time.monotonic() + self.settings.interval
        while not stopping:
            stopping = self._stopping.wait(FLUSH_SECONDS)
            self._safely(self.flush)
            for writer in (self._predictions, self._rejections):
                self._safely(writer.rotate_if_due)
            if stopping or time.monotonic() >= next_refresh:
                self._safely(self.refresh)
                next_refresh = time.monotonic() + self.settings.interval

    def _safely(self, step: Any) -> None:
        try:
            step()
        except Exception:  # the thread must outlive any one bad batch
            logger.exception("mlnb monitoring: a batch of answers could not be recorded")

    def flush(self) -> None:
        """Log and count everything queued so far."""
        answered: list[Answered] = []
        rejected: list[Rejected] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Answered):
                answered.append(item)
            else:
                rejected.append(item)
        try:
            if answered:
                self._log_answers(answered)
            if rejected:
                self._log_rejections(rejected)
        finally:
            self._logged_rows += sum(a.rows for a in answered)

    def _log_answers(self, answered: Sequence[Answered]) -> None:
        logged = self.records.build(answered)
        self._predictions.write(logged.batch)
        self.metrics.count_rows(logged.rows)
        self.metrics.count_labels(logged.labels)
        self.metrics.observe_values(logged.values)
        self.window.add(logged.recent(self.settings.window), min(logged.rows, self.window.size))
        self._new_rows += logged.rows
        if self.contract.rules:
            checked = self.contract.add(logged.features, logged.rows)
            self.metrics.count_violations(checked.violations)
            self.contract_alerts.update(checked.windows)

    def _log_rejections(self, rejected: Sequence[Rejected]) -> None:
        self.metrics.count_rejections(dict(Counter(r.reason for r in rejected)))
        self._rejections.write(rejections_batch(rejected))

    def refresh(self) -> list[Any]:
        """Score drift over the window when new rows came in; update gauges and alerts."""
        if not self._new_rows:
            return self.last_drift
        self._new_rows = 0
        scores = self.window.scores(self.settings.thresholds, self.settings.default_threshold)
        for score in scores:
            if score.psi is None:
                continue
            self.metrics.set_drift(score.feature, score.psi, score.ks, score.drifted)
        self.alerts.update(scores)
        self.last_drift = scores
        return scores

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Log what is queued, complete the open segments; safe to call more than once."""
        if self._stopping.is_set() and not self._thread.is_alive():
            return
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("mlnb monitoring: the last rows were not written in %.0f s", timeout)
            return
        for writer in (self._predictions, self._rejections):
            try:
                writer.close()
            except Exception:
                logger.exception("mlnb monitoring: a log segment could not be completed")


def write_reference(info: ServiceInfo, settings: MonitorSettings) -> None:
    """``reference.json``: what this folder's rows are compared with (atomically replaced)."""
    folder = Path(info.monitor_dir)
    folder.mkdir(parents=True, exist_ok=True)
    reference = {
        "bento": info.tag,
        "run_id": info.run_id,
        "task": info.task,
        "classes": info.classes,
        "features": dict(info.profile or {}),
        "prediction": info.prediction_profile,
        "default_threshold": settings.default_threshold,
        "thresholds": settings.thresholds,
        "window": settings.window,
        "log_format": "arrow-ipc-segments/1",
        "schema": [
            {key: f.get(key) for key in ("name", "dtype", "kind", "nullable")}
            for f in info.features
        ],
        "contract": info.contract,
        "contract_window": settings.contract_window,
        "contract_alert_share": settings.contract_alert_share,
    }
    tmp = folder / f".{REFERENCE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(reference, indent=1, default=str))
    tmp.replace(folder / REFERENCE_FILE)


def _buckets(prediction_reference: dict[str, Any] | None) -> list[float] | None:
    if not prediction_reference or prediction_reference.get("kind") != "numeric":
        return None
    edges = prediction_reference.get("histogram", {}).get("edges") or []
    return sorted({float(e) for e in edges}) or None
