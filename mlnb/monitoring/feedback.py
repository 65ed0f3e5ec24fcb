"""Labels fed back: ground truth joined to the answers it is for, live accuracy (or MAE).

A :class:`FeedbackBook` lives in the worker that answers ``POST /feedback``. The request path
calls :meth:`~FeedbackBook.remember` with each answer's ``predictions`` (a reference is kept,
nothing derived: about a microsecond); :meth:`~FeedbackBook.receive` joins labels to every
version that answered or shadowed the request, counts them per version and keeps the live
accuracy (classifiers: the logged class text equals the label's text) or mean absolute error
(regressors) over the last ``window`` labels, beside the version's training metric. When the
live figure falls below the training accuracy minus ``margin`` (or the MAE rises above the
training MAE times ``1 + margin``) over at least ``min_labels`` labels, an alert is logged and
posted to the webhook, once; it clears when the figure is back. Every label is also logged to
``<folder>/feedback/`` (Arrow IPC segments, :data:`FEEDBACK_SCHEMA`) by a thread of its own.

The log is :mod:`mlnb.monitoring.feedback_log`'s; the same figures computed offline from it
(``mlnb monitor``) are :mod:`mlnb.reporting.feedback_log`'s.

Settings: ``$MLNB_FEEDBACK_WINDOW`` (default 500), ``$MLNB_ACCURACY_MARGIN`` (0.05),
``$MLNB_FEEDBACK_MIN_LABELS`` (50), ``$MLNB_ALERT_WEBHOOK``, ``$MLNB_LOG_ROTATE_SECONDS``.
Imports no numpy or pandas; the metrics are ``prometheus_client``'s, multiprocess-safe.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.monitoring.alerts import post_alert
from mlnb.monitoring.feedback_log import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_LABELS,
    DEFAULT_WINDOW,
    FEEDBACK_LOG,
    FEEDBACK_SCHEMA,
    FeedbackLog,
    breaches,
    class_texts,
    env_number,
    label_text,
    label_value,
    prediction_values,
    same_class,
    training_metric,
)
from mlnb.monitoring.metrics import SERVICE as SERVICE_LABEL
from mlnb.monitoring.metrics import bentoml_service_name

if TYPE_CHECKING:
    from mlnb.serving.feedback import Label

__all__ = [
    "FEEDBACK_SCHEMA",
    "MAX_REMEMBERED_ROWS",
    "FeedbackBook",
    "FeedbackMetrics",
]

logger = logging.getLogger("mlnb.monitoring")

MAX_REMEMBERED_ROWS = 200_000  # answers beyond these rows are forgotten, oldest first
WINDOW_ENV = "MLNB_FEEDBACK_WINDOW"
MARGIN_ENV = "MLNB_ACCURACY_MARGIN"
MIN_LABELS_ENV = "MLNB_FEEDBACK_MIN_LABELS"
WEBHOOK_ENV = "MLNB_ALERT_WEBHOOK"


# --- the metrics -------------------------------------------------------------------------

_CREATED: dict[str, Any] = {}  # a metric is registered once per process


def _metric(kind: str, name: str, registry: Any, **options: Any) -> Any:
    import prometheus_client

    if registry is not None:  # a registry of the caller's (tests): not the process's
        return getattr(prometheus_client, kind)(name=name, registry=registry, **options)
    if name not in _CREATED:
        _CREATED[name] = getattr(prometheus_client, kind)(name=name, **options)
    return _CREATED[name]


def _gauge(name: str, documentation: str, registry: Any) -> Any:
    try:  # the value the book set last, of the workers alive
        return _metric(
            "Gauge",
            name,
            registry,
            documentation=documentation,
            labelnames=[SERVICE_LABEL, "version"],
            multiprocess_mode="livemostrecent",
        )
    except ValueError:  # a prometheus_client older than 0.17
        return _metric(
            "Gauge",
            name,
            registry,
            documentation=documentation,
            labelnames=[SERVICE_LABEL, "version"],
            multiprocess_mode="livemax",
        )


class FeedbackMetrics:
    """The ``mlnb_feedback_*`` and ``mlnb_live_*`` series, labelled by service and version
    (``service_name`` as on BentoML's own series and mlnb's others)."""

    def __init__(self, classification: bool, registry: Any = None, service: str = "") -> None:
        self.classification = classification
        self.service = bentoml_service_name(service)
        self.labels = _metric(
            "Counter",
            "mlnb_feedback_labels",
            registry,
            documentation="Labels joined to an answer, by version",
            labelnames=[SERVICE_LABEL, "version"],
        )
        self.unmatched = _metric(
            "Counter",
            "mlnb_feedback_unmatched",
            registry,
            documentation="Labels not joined to an answer of the version (no such request or "
            "row remembered)",
            labelnames=[SERVICE_LABEL, "version"],
        )
        if classification:
            self.correct = _metric(
                "Counter",
                "mlnb_feedback_correct",
                registry,
                documentation="Labels equal to the predicted class",
                labelnames=[SERVICE_LABEL, "version"],
            )
            self.live = _gauge("mlnb_live_accuracy", "Accuracy over the last labels", registry)
            self.training = _gauge("mlnb_training_accuracy", "The run's accuracy", registry)
        else:
            self.errors = _metric(
                "Summary",
                "mlnb_feedback_abs_error",
                registry,
                documentation="Absolute errors of the labelled predictions",
                labelnames=[SERVICE_LABEL, "version"],
            )
            self.live = _gauge(
                "mlnb_live_mae", "Mean absolute error over the last labels", registry
            )
            self.training = _gauge("mlnb_training_mae", "The run's mean absolute error", registry)
        self.alerting = _gauge(
            "mlnb_feedback_alerting", "1 while the live figure is past its bound", registry
        )

    def of(self, version: str) -> tuple[str, str]:
        """The label values of one version's series."""
        return self.service, version

    def declare(self, version: str, training: float | None) -> None:
        """Show a version's series (0 labels) before its first label."""
        self.labels.labels(*self.of(version))
        self.unmatched.labels(*self.of(version))
        if self.classification:
            self.correct.labels(*self.of(version))
        else:
            self.errors.labels(*self.of(version))
        if training is not None:
            self.training.labels(*self.of(version)).set(training)
        self.alerting.labels(*self.of(version)).set(0)

    def count(self, version: str, scores: Sequence[float]) -> None:
        self.labels.labels(*self.of(version)).inc(len(scores))
        total = math.fsum(scores)
        if self.classification:
            self.correct.labels(*self.of(version)).inc(total)
            return
        child = self.errors.labels(*self.of(version))
        counted, summed = getattr(child, "_count", None), getattr(child, "_sum", None)
        if counted is not None and summed is not None:  # no bulk observe: one inc each
            counted.inc(len(scores))
            summed.inc(total)
        else:
            for score in scores:
                child.observe(score)


# --- the book ----------------------------------------------------------------------------


class _Answer:
    """One version's answer to one request; what is derived from it, once labels come."""

    __slots__ = ("derived", "labelled", "predictions")

    def __init__(self, predictions: Sequence[Any]) -> None:
        self.predictions = predictions
        self.derived: list[Any] | None = None  # class texts or values, one per row
        self.labelled: set[int] | None = None  # rows already labelled (counted once)


class FeedbackBook:
    """Answers remembered by request id, labels joined to them, live figures per version.

    ``versions`` maps a version's name (``"primary"``, ``"candidate"``, or an ordinary
    service's Bento version) to ``{"tag": "name:version", "metrics": {training metrics}}``;
    ``task`` is ``"classification"`` or ``"regression"``; ``classes`` the model's classes
    (kept for reports). ``window``, ``margin``, ``min_labels`` and ``webhook`` default to
    their environment variables (``webhook=""``: none). ``registry``: a prometheus_client
    registry instead of the process's (tests). :meth:`stop` writes what is queued.
    """

    def __init__(
        self,
        folder: str | Path,
        versions: Mapping[str, Mapping[str, Any]],
        *,
        task: str,
        classes: Sequence[Any] | None = None,
        window: int | None = None,
        margin: float | None = None,
        min_labels: int | None = None,
        webhook: str | None = None,
        max_rows: int = MAX_REMEMBERED_ROWS,
        registry: Any = None,
        service: str = "",
    ) -> None:
        self.folder = Path(folder)
        self.task = task
        self.classification = task == "classification"
        self.classes = list(classes) if classes is not None else None
        self.window = max(
            1, window if window is not None else env_number(WINDOW_ENV, DEFAULT_WINDOW, int)
        )
        self.margin = margin if margin is not None else env_number(MARGIN_ENV, DEFAULT_MARGIN)
        self.min_labels = (
            min_labels
            if min_labels is not None
            else env_number(MIN_LABELS_ENV, DEFAULT_MIN_LABELS, int)
        )
        self.webhook = (os.environ.get(WEBHOOK_ENV) if webhook is None else webhook) or None
        self.max_rows = max_rows
        self.metrics = FeedbackMetrics(self.classification, registry, service)
        self.versions: dict[str, dict[str, Any]] = {}
        for name in versions:
            self._version(name, versions[name])
        self._answers: dict[str, dict[str, _Answer]] = {}
        self._rows = 0
        self._lock = threading.Lock()  # the answers dict: remember vs receive's look-ups
        self._scoring = threading.Lock()  # one receive at a time
        self._log = FeedbackLog(self.folder / FEEDBACK_LOG)

    def _version(self, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
        metric, training = training_metric(self.task, given.get("metrics"))
        state: dict[str, Any] = {
            "tag": given.get("tag"),
            "metric": metric,
            "training": training,
            "labels": 0,
            "scores": deque(maxlen=self.window),  # 1/0 per label, or the absolute error
            "alerting": False,
        }
        self.versions[name] = state
        self.metrics.declare(name, training)
        return state

    # -- the request path -----------------------------------------------------------------

    def remember(self, request_id: str, version: str, predictions: Sequence[Any]) -> None:
        """Keep a version's answer to a request (a reference to its ``predictions``)."""
        with self._lock:
            request = self._answers.get(request_id)
            if request is None:
                self._answers[request_id] = request = {}
            request[version] = _Answer(predictions)
            self._rows += len(predictions) or 1
            if self._rows > self.max_rows:
                self._forget()

    def _forget(self) -> None:
        """Drop the oldest answers down to 90% of ``max_rows`` (with the lock held)."""
        answers = self._answers
        while self._rows > self.max_rows * 0.9 and answers:
            oldest = answers.pop(next(iter(answers)))
            self._rows -= sum(len(a.predictions) or 1 for a in oldest.values())

    # -- labels ---------------------------------------------------------------------------

    def receive(self, items: Sequence[Label]) -> dict[str, Any]:
        """Log labels and join each to the versions that answered its request.

        Returns ``{"accepted": n, "matched": {version: n}, "unmatched": n, "repeated": n}``:
        ``matched`` counts the labels joined to each version's answer, ``unmatched`` those no
        version here answered (forgotten, answered by another worker, or a wrong id; the log
        keeps them for :func:`mlnb.reporting.feedback_log.live_metrics`), ``repeated`` labels
        of rows labelled before (logged, not counted again).
        """
        self._log.put(time.time(), items)
        with self._lock:
            found = [self._answers.get(item.request_id) for item in items]
        unmatched = repeated = 0
        with self._scoring:
            scores: dict[str, list[float]] = {name: [] for name in self.versions}
            again: dict[str, int] = dict.fromkeys(self.versions, 0)
            for item, request in zip(items, found, strict=True):
                hit = seen = False
                for version, answer in (request or {}).items():
                    score = self._score(answer, item)
                    if score is _REPEATED:
                        again[version] = again.get(version, 0) + 1
                        seen = True
                    elif score is not None:
                        scores.setdefault(version, []).append(score)
                        hit = True
                if not hit:
                    repeated += seen
                    unmatched += not seen
            for version, values in scores.items():
                if version not in self.versions:
                    self._version(version, {})
                if values:
                    self._count(version, values)
                missed = len(items) - len(values) - again.get(version, 0)
                if missed:
                    self.metrics.unmatched.labels(*self.metrics.of(version)).inc(missed)
        return {
            "accepted": len(items),
            "matched": {version: len(values) for version, values in scores.items()},
            "unmatched": unmatched,
            "repeated": repeated,
        }

    def _score(self, answer: _Answer, item: Label) -> Any:
        """1.0 or 0.0 (classifier), the absolute error (regressor); None when the answer has
        no such row (or no number in it), ``_REPEATED`` for a row labelled before."""
        derived: list[Any] | None = answer.derived
        if derived is None:
            predictions = answer.predictions
            made: list[Any] = (
                class_texts(predictions) if self.classification else prediction_values(predictions)
            )
            derived = answer.derived = made
        if item.row >= len(derived):
            return None
        labelled = answer.labelled
        if labelled is None:
            labelled = answer.labelled = set()
        elif item.row in labelled:
            return _REPEATED
        predicted = derived[item.row]
        if self.classification:
            score = 1.0 if same_class(predicted, label_text(item.label)) else 0.0
        else:
            value = label_value(item.label)
            if predicted is None or value is None:
                return None
            score = abs(predicted - value)
            if not math.isfinite(score):
                return None
        labelled.add(item.row)
        return score

    def _count(self, version: str, values: list[float]) -> None:
        state = self.versions.get(version) or self._version(version, {})
        state["labels"] += len(values)
        state["scores"].extend(values)
        self.metrics.count(version, values)
        live = self.live(version)
        if live is not None:
            self.metrics.live.labels(*self.metrics.of(version)).set(live)
        self._alert(version, state, live)

    def live(self, version: str) -> float | None:
        """The version's accuracy (or MAE) over its last ``window`` labels; None before any."""
        scores = self.versions[version]["scores"] if version in self.versions else ()
        return math.fsum(scores) / len(scores) if scores else None

    def figures(self) -> dict[str, dict[str, Any]]:
        """Per version: ``tag``, ``metric``, ``training``, ``live``, ``labels`` (all joined),
        ``window`` (labels the live figure is over) and ``alerting``."""
        return {
            name: {
                "tag": state["tag"],
                "metric": state["metric"],
                "training": state["training"],
                "live": self.live(name),
                "labels": state["labels"],
                "window": len(state["scores"]),
                "alerting": state["alerting"],
            }
            for name, state in self.versions.items()
        }

    def _alert(self, version: str, state: dict[str, Any], live: float | None) -> None:
        if len(state["scores"]) < min(self.min_labels, self.window):
            return
        past = breaches(state["metric"], live, state["training"], self.margin)
        if past is None or past == state["alerting"]:
            return
        state["alerting"] = past
        self.metrics.alerting.labels(*self.metrics.of(version)).set(int(past))
        assert live is not None
        training = state["training"]
        bound = (
            training - self.margin
            if state["metric"] == "accuracy"
            else training * (1 + self.margin)
        )
        bento = state["tag"] or version
        if not past:
            logger.warning(
                "mlnb accuracy alert cleared: %s (%s) live %s %.4f is back within %.4f",
                bento,
                version,
                state["metric"],
                live,
                bound,
            )
            return
        logger.warning(
            "mlnb accuracy alert: %s (%s) live %s %.4f over the last %d labels, past %.4f "
            "(training %.4f, margin %s)",
            bento,
            version,
            state["metric"],
            live,
            len(state["scores"]),
            bound,
            training,
            self.margin,
        )
        if self.webhook:
            payload = {
                "bento": bento,
                "alert": "accuracy",
                "version": version,
                "metric": state["metric"],
                "live": round(live, 6),
                "training": training,
                "margin": self.margin,
                "bound": round(bound, 6),
                "labels": len(state["scores"]),
                "window": self.window,
            }
            threading.Thread(target=post_alert, args=(self.webhook, payload), daemon=True).start()

    def flush(self) -> None:
        """Write the labels queued so far to the log (the thread does it every half second)."""
        self._log.flush()

    def stop(self) -> None:
        """Write what is queued and complete the open log segment; safe to call twice."""
        self._log.stop()


_REPEATED: Any = object()
