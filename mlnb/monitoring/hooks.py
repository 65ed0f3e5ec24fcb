"""The monitoring hook points: every service ``mlnb build`` generates calls these, and only these.

The generated ``service.py`` calls, in this order:

``configure(info)``
    Once per worker process, when the service module is imported, before any request.
    ``info`` is a :class:`mlnb.serving.info.ServiceInfo`: Bento name and version, run id,
    the absolute monitoring folder (``$MLNB_MONITOR_DIR`` already applied), the task
    (``"classification"`` or ``"regression"``), the class labels, the request schema (feature
    names, dtypes, kinds), the training data's reference profile (``run.json``
    ``training_data.profile``, or None when the run recorded none) and the data contract's
    soft rules (``contract``, None for a run without one or a Bento built before them).
    It also starts the worker's :class:`mlnb.monitoring.feedback.FeedbackBook` (labels fed
    back to ``POST /feedback``, one version: the Bento version), which :func:`feedback_book`
    hands to the service's ``/feedback`` route.

``on_answer(frame, answer, request_id)``
    After each answered ``/predict`` request, in the request's task, before the response is
    sent. ``frame`` is the validated request as a pandas DataFrame with the training columns
    and dtypes (before the serve code's ``preprocess``); ``answer`` is the JSON-ready dict the
    client receives: ``predictions`` (one per row) and, for classifiers served without their
    own ``predict``, ``probabilities`` and ``classes``; ``request_id`` the id its rows are
    logged under, which the answer's ``X-Request-Id`` header carries and ``POST /feedback``
    names (an older service calls without it: its rows get ids of the monitor's own, and
    its answers take no labels).

``on_reject(rejection)``
    After each rejected request (a 4xx answer). ``rejection`` is a
    :class:`mlnb.errors.RequestRejected`: ``status``, ``reason`` (a stable code such as
    ``"missing-field"``, ``"wrong-type"``, ``"too-many-rows"``), ``row`` and ``field``
    (None when not about one row or field) and ``message``.

``shutdown()``
    Once per worker, when it stops (BentoML's ``on_shutdown``, after the last request was
    answered and before the process exits). Whatever was answered must be written by the time
    it returns: the worker may be gone right after.

Rules for whoever fills these in:

- Never raise: the service wraps each call and logs a failure, but a hook that raises on
  every request fills the log. An alert must never block or fail a request.
- Stay cheap on the request path and on the worker's core: the serving benchmark holds
  throughput at saturation, on one core, within 5% of the service with
  ``MLNB_MONITORING=off`` (which skips these calls entirely).
- Import only the standard library, numpy, pyarrow, prometheus_client and mlnb's light core
  (pandas is there when a request is): a Bento carries the ``mlnb`` package's Python files,
  not its dependencies.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from mlnb.errors import RequestRejected
    from mlnb.monitoring.feedback import FeedbackBook
    from mlnb.monitoring.live import LiveMonitor
    from mlnb.serving.info import ServiceInfo

logger = logging.getLogger("mlnb.monitoring")
_monitor: LiveMonitor | None = None
_book: FeedbackBook | None = None
_version = ""  # the name the book knows this worker's answers by: the Bento version


def configure(info: ServiceInfo) -> None:
    """Start this worker's monitor (its queue, its thread and its log segments) and its
    feedback book."""
    global _monitor, _book, _version
    from mlnb.monitoring.feedback import FeedbackBook
    from mlnb.monitoring.live import LiveMonitor

    try:
        _monitor = LiveMonitor(info)
    except Exception:
        logger.exception("mlnb monitoring is off for this worker: it failed to start")
        _monitor = None
    if not getattr(info, "takes_feedback", True):  # a release's version: the release's book
        _book = None
        return
    try:
        _version = info.bento_version
        version = {"tag": info.tag, "metrics": getattr(info, "metrics", None) or {}}
        _book = FeedbackBook(
            info.monitor_dir,
            {_version: version},
            task=info.task,
            classes=info.classes,
            service=info.bento_name,
        )
    except Exception:
        logger.exception("mlnb feedback is off for this worker: it failed to start")
        _book = None


def feedback_book() -> FeedbackBook | None:
    """This worker's feedback book; None before :func:`configure` or when it failed."""
    return _book


def on_answer(frame: pd.DataFrame, answer: dict[str, Any], request_id: str | None = None) -> None:
    """Log one answered request's rows and predictions under its request id, count them
    (against the data contract too, never refusing them), feed the drift window; remember
    its predictions for the labels that may come back."""
    if _monitor is not None:
        if request_id is None:
            _monitor.answer(frame, answer)
        else:
            _monitor.answer(frame, answer, request_id)
    if _book is not None and request_id is not None:
        _book.remember(request_id, _version, answer.get("predictions") or ())


def on_reject(rejection: RequestRejected) -> None:
    """Count and log one rejected request by reason."""
    if _monitor is not None:
        _monitor.reject(rejection)


def shutdown() -> None:
    """Log what is still queued and complete the open log segments."""
    global _monitor, _book
    monitor, _monitor = _monitor, None
    book, _book = _book, None
    try:
        if monitor is not None:
            monitor.stop()
    finally:
        if book is not None:
            book.stop()
