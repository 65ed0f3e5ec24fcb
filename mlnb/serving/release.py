"""A release's worker: the live version answers, the candidate is shadowed or takes a canary share.

A release Bento (``mlnb release``) holds two versions of a notebook's service. The primary
answers in the release's own worker, exactly as ``mlnb serve PRIMARY`` would answer (same
handler, same monitoring, into ``R/primary``); the candidate is a BentoML dependency
(``bentoml.depends``) in its own worker, reached over the socket BentoML gives it.

- **Shadow**: every request is answered by the primary. Its rows are queued for the candidate
  and sent in batches off the answer's path (``X-Mlnb-Request-Ids`` says which rows belong to
  which request, so the candidate logs them under the caller's ids); one request in
  ``MLNB_SHADOW_TIMED_EVERY`` goes alone, so the candidate's handler time per request is
  measured like the primary's. The queue is bounded: when the candidate cannot keep up, rows
  are dropped from the shadow (counted), never held against the caller.
- **Canary**: ``percent`` % of requests (by a hash of the ``key`` field's value when given:
  sticky) are forwarded to the candidate; one that fails there (no connection, a 5xx) is
  answered by the primary and counted as the candidate's error.

Every request has one id (:func:`mlnb.serving.http.request_id_of`), in both versions' logs
and the answer's ``X-Request-Id``; ``X-Mlnb-Version`` says which version answered. Routing
comes from ``R/routing.json`` (:mod:`mlnb.serving.release_state`); a worker's rules promote
or roll back by themselves (:mod:`mlnb.serving.release_rules`). ``R/traffic/`` logs one row
per version that handled a request.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pydantic_core import from_json

from mlnb.errors import RequestRejected, error_response
from mlnb.serving import release_rules, release_state
from mlnb.serving.http import (
    BATCH_IDS_HEADER,
    REQUEST_ID_HEADER,
    Header,
    PredictApp,
    PredictHandler,
    Receive,
    Scope,
    Send,
    answer_headers,
    encode,
    method_not_allowed,
    request_id_of,
    send_error,
)

log = logging.getLogger("mlnb.serving")

RELEASE_SPEC_FILE = "mlnb_release.json"
VERSION_HEADER = b"x-mlnb-version"
TIMED_EVERY_ENV = "MLNB_SHADOW_TIMED_EVERY"
TOLERANCE_ENV = "MLNB_AGREEMENT_TOLERANCE"
SHADOW_BATCH_ROWS = 2048  # rows per shadow call at most
SHADOW_WAIT_S = 0.25  # how long the first queued row waits for more (fewer, larger calls)
SHADOW_WAIT_ENV = "MLNB_SHADOW_WAIT"  # ... in seconds, instead
MAX_SHADOW_QUEUE_ROWS = 20_000  # beyond: rows are dropped from the shadow, counted
# A worker that used more of its core than this over the last half second is saturated: the
# shadow then takes a sample of the requests (halved every half second, down to
# MIN_SHADOW_SHARE), and all of them again once the worker has room (doubled back).
SATURATION_ENV = "MLNB_SHADOW_SATURATION"  # a share of one core; "off": always shadow all
DEFAULT_SATURATION = 0.85
MIN_SHADOW_SHARE = 0.05
LATENCIES_KEPT = 10_000  # the newest handler times per version, for p50/p99
FLUSH_SECONDS = 0.5
RULES_EVERY_S = 1.0
DEFAULT_ROLLBACK = "error_rate>0.05,p99>3x"

Forward = Callable[[bytes, list[tuple[str, str]]], Awaitable[tuple[int, bytes, dict[str, str]]]]


@dataclass
class ReleaseSpec:
    """``mlnb_release.json``: the release's mode, its two versions and its rules."""

    data: dict[str, Any]
    folder: Path

    @classmethod
    def beside(cls, module_file: str) -> ReleaseSpec:
        path = Path(module_file).resolve().with_name(RELEASE_SPEC_FILE)
        return cls(json.loads(path.read_text()), path.parent)

    @property
    def monitor_folder(self) -> Path:
        env = os.environ.get("MLNB_MONITOR_DIR")
        if env:
            return Path(env).resolve()
        from mlnb.serving.runtime import serving_folder

        # relative to where `bentoml serve` started (an older release's is absolute)
        return (serving_folder() / str(self.data["monitor_dir"])).resolve()

    @property
    def mode(self) -> str:
        return str(self.data["mode"])

    def version(self, role: str) -> dict[str, Any]:
        return dict(self.data["versions"][role])

    def start(self, primary: PredictHandler, forward: Forward, book: Any = None) -> Release:
        """Once per worker, from the release service's ``__init__``."""
        return Release(self, primary, forward, book)

    def feedback_book(self) -> Any:
        """The book ``/feedback`` joins labels in, for both versions (None when monitoring is
        off or it cannot start: the release serves on without)."""
        if os.environ.get("MLNB_MONITORING", "on").lower() in ("off", "0", "false"):
            return None
        try:
            from mlnb.monitoring.feedback import FeedbackBook

            versions = {
                str(v["bento_version"]): {"tag": v["tag"], "metrics": v.get("metrics") or {}}
                for v in self.data["versions"].values()
            }
            return FeedbackBook(
                self.monitor_folder,
                versions,
                task=str(self.data.get("task")),
                classes=self.data.get("classes"),
            )
        except Exception:
            log.exception("mlnb release: /feedback is off: its book failed to start")
            return None

    def release_json(self) -> dict[str, Any]:
        """``R/release.json``: what ``mlnb monitor`` reads of the release."""
        keys = ("release", "mode", "percent", "key", "task", "versions")
        found = {key: self.data.get(key) for key in keys}
        found.update(
            promote_if=self.data.get("promote_if") or [],
            rollback_if=self.data.get("rollback_if") or [],
            after=self.data.get("after"),
        )
        return found


@dataclass
class VersionStats:
    """What one version did in this worker since it started."""

    answered: int = 0
    shadowed: int = 0
    errors: int = 0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCIES_KEPT)
    )
    compared: int = 0  # shadowed rows compared with the primary's answer
    agreed: int = 0

    def figures(self, book_figures: dict[str, Any] | None = None) -> dict[str, float | None]:
        handled = self.answered + self.shadowed
        ordered = sorted(self.latencies)
        return {
            "requests": float(handled),
            "error_rate": self.errors / handled if handled else None,
            "p50": _quantile(ordered, 0.5),
            "p99": _quantile(ordered, 0.99),
            "agreement": self.agreed / self.compared if self.compared else None,
            **(book_figures or {}),
        }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Handled(NamedTuple):
    """One row of ``R/traffic`` (a tuple: made twice a request)."""

    at: float
    request_id: str
    role: str  # "primary" or "candidate"
    part: str  # "answer" or "shadow"
    status: int
    latency_ms: float | None
    rows: int
    error: str | None = None


class Pending(NamedTuple):
    """A request's rows waiting to be shadowed, and the primary's predictions for them."""

    request_id: str
    rows: list[Any]
    predictions: list[Any]


class Release:
    """One release worker: routing, the shadow, the traffic log, the rules."""

    def __init__(
        self, spec: ReleaseSpec, primary: PredictHandler, forward: Forward, book: Any = None
    ) -> None:
        self.spec = spec
        self.primary = primary
        self.forward = forward
        self.book = book
        self.folder = spec.monitor_folder
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_json(self.folder / release_state.RELEASE_FILE, spec.release_json())
        routing = release_state.start_routing(self.folder, spec.data.get("percent"))
        self.routing = release_state.RoutingWatch(self.folder, routing)
        self.key_index = _key_index(spec.data.get("key"), primary.schema)
        self.classification = spec.data.get("task") == "classification"
        self.stats = {role: VersionStats() for role in release_state.ROLES}
        self.versions = {role: str(spec.version(role)["bento_version"]) for role in self.stats}
        self.promote_if = release_rules.parse_rules(",".join(spec.data.get("promote_if") or []))
        self.rollback_if = release_rules.parse_rules(
            ",".join(spec.data.get("rollback_if") or []) or DEFAULT_ROLLBACK, "--rollback-if"
        )
        self.after = int(spec.data.get("after") or 0)
        self.tolerance = float(os.environ.get(TOLERANCE_ENV) or 0.0)
        self.timed_every = max(1, int(os.environ.get(TIMED_EVERY_ENV) or 8))
        self.batch_rows = max(1, min(SHADOW_BATCH_ROWS, primary.schema.max_rows))
        self.shadow_wait = float(os.environ.get(SHADOW_WAIT_ENV) or SHADOW_WAIT_S)
        self._count = 0
        self._queue: collections.deque[Pending] = collections.deque()
        self._queued_rows = 0
        self.dropped_rows = 0
        self.skipped_rows = 0  # not shadowed while the worker was saturated
        self.share = 1.0  # of requests shadowed now
        self.saturation = _saturation(os.environ.get(SATURATION_ENV))
        self._cpu = (time.monotonic(), time.process_time())
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._handled: collections.deque[Handled] = collections.deque()
        self.log = TrafficLog(self.folder, self.versions)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlnb-release", daemon=True)
        self._thread.start()
        log.info("mlnb release %s: %s, logs in %s", spec.data["release"], spec.mode, self.folder)

    # -- the request path ---------------------------------------------------------------

    async def respond(self, scope: Scope, body: bytes) -> tuple[int, bytes, list[Header]]:
        request_id = request_id_of(scope)
        try:
            decoded = self.primary.decode(body)
        except RequestRejected as rejection:
            status, answer = error_response(rejection)
            return status, encode(answer), answer_headers(request_id, 0)
        routing = self.routing.current()
        if self._to_candidate(routing, decoded):
            answered = await self._candidate_answers(body, request_id)
            if answered is not None:
                return answered
        return self._primary_answers(decoded, request_id, routing)

    def _to_candidate(self, routing: release_state.Routing, decoded: Any) -> bool:
        if routing.percent is None or routing.percent >= 100 or routing.percent <= 0:
            return routing.answering == "candidate"
        if self.key_index is not None:
            value = _key_value(decoded, *self.key_index)
            if value is not None:
                return zlib.crc32(value.encode()) % 10_000 < routing.percent * 100
        return random.random() * 100 < routing.percent

    def _primary_answers(
        self, decoded: Any, request_id: str, routing: release_state.Routing
    ) -> tuple[int, bytes, list[Header]]:
        started = time.perf_counter()
        status, answer = self.primary.handle_decoded(decoded, request_id)
        took = time.perf_counter() - started
        rows = len(answer.get("predictions") or ()) if status == 200 else 0
        self._note("primary", "answer", request_id, status, took * 1000, rows)
        if status == 200:
            self._remember(request_id, "primary", answer["predictions"])
            if routing.percent is None and routing.answering == "primary":
                self._shadow(request_id, decoded, answer["predictions"])
        headers = answer_headers(request_id, took)
        headers.append((VERSION_HEADER, b"primary"))
        return status, encode(answer), headers

    async def _candidate_answers(
        self, body: bytes, request_id: str
    ) -> tuple[int, bytes, list[Header]] | None:
        """The candidate's answer as it gave it; None (the primary answers) when it failed."""
        try:
            status, answer, headers = await self.forward(body, [("x-request-id", request_id)])
        except Exception as exc:
            self._note("candidate", "answer", request_id, 0, None, 0, _short(exc))
            return None
        latency = _server_timing(headers)
        if status >= 500:
            self._note("candidate", "answer", request_id, status, latency, 0, "server error")
            return None
        rows = 0
        if status == 200:
            try:
                predictions = from_json(answer).get("predictions") or []
            except (ValueError, AttributeError):
                predictions = []
            rows = len(predictions)
            self._remember(request_id, "candidate", predictions)
        self._note("candidate", "answer", request_id, status, latency, rows)
        out = [
            (REQUEST_ID_HEADER, request_id.encode()),
            (b"server-timing", f"mlnb;dur={latency or 0:.3f}".encode()),
            (VERSION_HEADER, b"candidate"),
        ]
        return status, answer, out

    def _remember(self, request_id: str, role: str, predictions: list[Any]) -> None:
        if self.book is not None:
            try:
                self.book.remember(request_id, self.versions[role], predictions)
            except Exception:
                log.exception("mlnb release: the feedback book failed to remember a request")

    def _note(
        self,
        role: str,
        part: str,
        request_id: str,
        status: int,
        latency_ms: float | None,
        rows: int,
        error: str | None = None,
    ) -> None:
        stats = self.stats[role]
        if part == "answer":
            stats.answered += 1
        else:
            stats.shadowed += 1
        if status == 0 or status >= 500:
            stats.errors += 1
        if latency_ms is not None and status == 200:
            stats.latencies.append(latency_ms)
        self._handled.append(
            Handled(time.time(), request_id, role, part, status, latency_ms, rows, error)
        )

    # -- the shadow ----------------------------------------------------------------------

    def _shadow(self, request_id: str, decoded: Any, predictions: list[Any]) -> None:
        rows = decoded.get("rows") if isinstance(decoded, dict) else None
        if not isinstance(rows, list) or not rows:
            return
        if self.share < 1.0 and random.random() >= self.share:
            self.skipped_rows += len(rows)
            return
        if self._queued_rows + len(rows) > MAX_SHADOW_QUEUE_ROWS:
            self.dropped_rows += len(rows)
            return
        self._queue.append(Pending(request_id, rows, predictions))
        self._queued_rows += len(rows)
        if self._sender is None:
            self._wake = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._send_shadows())
        elif self._wake is not None:
            self._wake.set()

    async def _send_shadows(self) -> None:
        """Send the queued rows to the candidate, a batch at a time, forever."""
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.shadow_wait)
            batch = self._take_batch()
            try:
                await self._shadow_batch(batch)
            except Exception:  # the shadow must outlive any one bad batch
                log.exception("mlnb release: a shadow batch could not be compared")

    def _take_batch(self) -> list[Pending]:
        self._count += 1
        if self._count % self.timed_every == 0:  # alone: a per-request time, like the primary's
            first = self._queue.popleft()
            self._queued_rows -= len(first.rows)
            return [first]
        batch: list[Pending] = []
        rows = 0
        while self._queue and (not batch or rows + len(self._queue[0].rows) <= self.batch_rows):
            item = self._queue.popleft()
            self._queued_rows -= len(item.rows)
            rows += len(item.rows)
            batch.append(item)
        return batch

    async def _shadow_batch(self, batch: list[Pending]) -> None:
        if not batch:
            return
        if len(batch) == 1:
            headers = [("x-request-id", batch[0].request_id)]
        else:
            ids = ",".join(f"{p.request_id}*{len(p.rows)}" for p in batch)
            headers = [(BATCH_IDS_HEADER.decode(), ids)]
        body = encode({"rows": [row for p in batch for row in p.rows]})
        try:
            status, answer, answer_headers_ = await self.forward(body, headers)
        except Exception as exc:
            for pending in batch:
                self._note("candidate", "shadow", pending.request_id, 0, None, 0, _short(exc))
            return
        latency = _server_timing(answer_headers_) if len(batch) == 1 else None
        predictions: list[Any] = []
        if status == 200:
            try:
                predictions = list(from_json(answer).get("predictions") or [])
            except (ValueError, AttributeError):
                status = 0
        total = sum(len(p.rows) for p in batch)
        if status == 200 and len(predictions) != total:
            status = 0
        start = 0
        for pending in batch:
            count = len(pending.rows)
            if status == 200:
                mine = predictions[start : start + count]
                self._compare(pending.predictions, mine)
                self._remember(pending.request_id, "candidate", mine)
            error = None if status == 200 else f"the candidate answered {status}"
            self._note(
                "candidate",
                "shadow",
                pending.request_id,
                status,
                latency,
                count if status == 200 else 0,
                error,
            )
            start += count

    def _compare(self, primary: list[Any], candidate: list[Any]) -> None:
        from mlnb.monitoring.reference import prediction_labels

        mine = prediction_labels(candidate, self.classification)
        theirs = prediction_labels(primary, self.classification)
        stats = self.stats["candidate"]
        stats.compared += len(mine)
        if self.classification:
            stats.agreed += sum(str(a) == str(b) for a, b in zip(mine, theirs, strict=False))
            return
        for a, b in zip(mine, theirs, strict=False):
            try:
                if abs(float(a) - float(b)) <= self.tolerance * max(abs(float(b)), 1e-12):
                    stats.agreed += 1
            except (TypeError, ValueError):
                pass

    # -- the thread: the traffic log, metrics, rules -------------------------------------------

    def _loop(self) -> None:
        next_rules = time.monotonic() + RULES_EVERY_S
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(FLUSH_SECONDS)
            try:
                handled = []
                while self._handled:
                    handled.append(self._handled.popleft())
                self._adapt_share()
                self.log.write(handled, self)
                if time.monotonic() >= next_rules:
                    next_rules = time.monotonic() + RULES_EVERY_S
                    self.apply_rules()
            except Exception:
                log.exception("mlnb release: the traffic log or the rules failed once")
        self.log.close()

    def _adapt_share(self) -> None:
        """Sample the shadow while the worker is saturated: its work must not slow the
        answers down (the callers wait for those), and a saturated core has no room for it."""
        wall, cpu = time.monotonic(), time.process_time()
        busy = (cpu - self._cpu[1]) / max(wall - self._cpu[0], 1e-6)
        self._cpu = (wall, cpu)
        if self.saturation is None:
            return
        if busy >= self.saturation:
            self.share = max(MIN_SHADOW_SHARE, self.share / 2)
        elif busy < self.saturation * 0.8:
            self.share = min(1.0, self.share * 2)

    def figures(self) -> dict[str, dict[str, float | None]]:
        """Each version's figures, for the rules and the switch record."""
        found = {}
        for role, stats in self.stats.items():
            book = None
            if self.book is not None and hasattr(self.book, "figures"):
                try:
                    book = self.book.figures(self.versions[role])
                except Exception:
                    book = None
            found[role] = stats.figures(book)
        return found

    def apply_rules(self) -> None:
        """Promote when every ``promote_if`` rule holds after ``after`` candidate requests;
        roll back when a ``rollback_if`` rule holds while the candidate answers."""
        routing = self.routing.current()
        figures = self.figures()
        candidate, primary = figures["candidate"], figures["primary"]
        handled = candidate.get("requests") or 0
        answering = routing.answering == "candidate" or (routing.percent or 0) > 0
        if answering and handled >= max(self.after, 20):
            verdict = release_rules.any_holds(self.rollback_if, candidate, primary)
            if verdict.holds:
                self._switch("rollback", verdict.why, figures, routing)
                return
        if (
            self.promote_if
            and routing.answering == "primary"
            and routing.switch == 0
            and handled >= max(self.after, 1)
        ):
            verdict = release_rules.all_hold(self.promote_if, candidate, primary)
            if verdict.decided and verdict.holds:
                self._switch("promote", verdict.why, figures, routing)

    def _switch(
        self, action: str, why: str, figures: dict[str, Any], routing: release_state.Routing
    ) -> None:
        done = release_state.switch(
            self.folder, action, by="auto", why=why, figures=figures, expect=routing.switch
        )
        if done is not None:
            self.routing.routing = done
            log.warning("mlnb release: %s by its rules: %s", action, why)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(30)


def traffic_schema() -> Any:
    """The columns of ``R/traffic``: one row per version that handled a request."""
    import pyarrow as pa

    return pa.schema(
        [
            ("time", pa.timestamp("us", tz="UTC")),
            ("request_id", pa.string()),
            ("version", pa.string()),
            ("role", pa.string()),
            ("status", pa.int16()),
            ("latency_ms", pa.float64()),
            ("rows", pa.int32()),
            ("error", pa.string()),
        ]
    )


class TrafficLog:
    """``R/traffic`` segments and the ``mlnb_release_*`` series, a batch at a time."""

    def __init__(self, folder: Path, versions: dict[str, str]) -> None:
        import pyarrow as pa

        from mlnb.monitoring.metrics import _metric
        from mlnb.monitoring.segments import SegmentWriter

        self.pa = pa
        self.versions = versions
        self.schema = traffic_schema()
        rotate = float(os.environ.get("MLNB_LOG_ROTATE_SECONDS") or 60)
        self.writer = SegmentWriter(folder / "traffic", self.schema, rotate_seconds=rotate)
        self.requests = _metric(
            "Counter",
            "mlnb_release_requests",
            documentation="Requests each version of a release answered or was shadowed on",
            labelnames=["role", "version", "part", "status"],
        )
        self.latency = _metric(
            "Histogram",
            "mlnb_release_latency_seconds",
            documentation="The handler's time per request of each version of a release",
            labelnames=["role", "version"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        gauge = {"labelnames": ["role", "version"], "multiprocess_mode": "livemax"}
        self.agreement = _metric(
            "Gauge",
            "mlnb_release_agreement",
            documentation="Share of shadowed rows where the candidate agrees with the primary",
            **gauge,
        )
        self.answering = _metric(
            "Gauge",
            "mlnb_release_answering",
            documentation="1 for the version answering (a canary: its share of requests)",
            **gauge,
        )
        self.dropped = _metric(
            "Counter",
            "mlnb_release_shadow_dropped_rows",
            documentation="Rows not shadowed because the candidate could not keep up",
            labelnames=["role", "version"],
        )
        self.skipped = _metric(
            "Counter",
            "mlnb_release_shadow_skipped_rows",
            documentation="Rows not shadowed because the worker was saturated (a sample was)",
            labelnames=["role", "version"],
        )
        self.shadow_share = _metric(
            "Gauge",
            "mlnb_release_shadow_share",
            documentation="Share of requests the shadow takes now (1 unless saturated)",
            **gauge,
        )
        self._dropped = 0
        self._skipped = 0

    def write(self, handled: list[Handled], release: Release) -> None:
        import numpy as np

        from mlnb.monitoring.metrics import observe_many

        pa = self.pa
        if handled:
            batch = pa.RecordBatch.from_arrays(
                [
                    pa.array([round(h.at * 1e6) for h in handled], type=self.schema[0].type),
                    pa.array([h.request_id for h in handled], type=pa.string()),
                    pa.array([h.role for h in handled], type=pa.string()),
                    pa.array([h.part for h in handled], type=pa.string()),
                    pa.array([h.status for h in handled], type=pa.int16()),
                    pa.array([h.latency_ms for h in handled], type=pa.float64()),
                    pa.array([h.rows for h in handled], type=pa.int32()),
                    pa.array([h.error for h in handled], type=pa.string()),
                ],
                schema=self.schema,
            )
            self.writer.write(batch)
            counts = collections.Counter((h.role, h.part, h.status) for h in handled)
            for (role, part, status), count in counts.items():
                self.requests.labels(
                    role=role, version=self.versions[role], part=part, status=str(status)
                ).inc(count)
            for role, version in self.versions.items():
                seconds = [
                    h.latency_ms / 1000
                    for h in handled
                    if h.role == role and h.latency_ms is not None
                ]
                if seconds:
                    histogram = self.latency.labels(role=role, version=version)
                    observe_many(histogram, np.asarray(seconds, dtype=np.float64))
        self.writer.rotate_if_due()
        stats = release.stats["candidate"]
        if stats.compared:
            self.agreement.labels(role="candidate", version=self.versions["candidate"]).set(
                stats.agreed / stats.compared
            )
        routing = release.routing.routing
        share = _candidate_share(routing)
        self.answering.labels(role="candidate", version=self.versions["candidate"]).set(share)
        self.answering.labels(role="primary", version=self.versions["primary"]).set(1 - share)
        if release.dropped_rows > self._dropped:
            self.dropped.labels(role="candidate", version=self.versions["candidate"]).inc(
                release.dropped_rows - self._dropped
            )
            self._dropped = release.dropped_rows
        candidate = {"role": "candidate", "version": self.versions["candidate"]}
        if release.skipped_rows > self._skipped:
            self.skipped.labels(**candidate).inc(release.skipped_rows - self._skipped)
            self._skipped = release.skipped_rows
        self.shadow_share.labels(**candidate).set(release.share)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            log.exception("mlnb release: the traffic log segment could not be completed")


def _saturation(text: str | None) -> float | None:
    """``$MLNB_SHADOW_SATURATION``: a share of one core, or None ("off": never sample)."""
    if text is None or not text.strip():
        return DEFAULT_SATURATION
    if text.strip().lower() in ("off", "none", "no"):
        return None
    try:
        return float(text)
    except ValueError:
        log.warning(
            "mlnb release: %s=%r is not a number; using %s",
            SATURATION_ENV,
            text,
            DEFAULT_SATURATION,
        )
        return DEFAULT_SATURATION


def _candidate_share(routing: release_state.Routing) -> float:
    if routing.percent is None or routing.percent in (0.0, 100.0):
        return 1.0 if routing.answering == "candidate" else 0.0
    return routing.percent / 100


class ReleaseSlot:
    """The release of this worker, filled by the service's ``__init__``."""

    def __init__(self) -> None:
        self.release: Release | None = None

    def set(self, release: Release) -> Release:
        self.release = release
        return release


class ReleaseApp(PredictApp):
    """``POST /predict`` of a release: the body read as any service reads it, answered by
    :meth:`Release.respond`."""

    def __init__(self, release: Release) -> None:
        super().__init__(release.primary)
        self.release = release

    async def respond(self, scope: Scope, body: bytes) -> tuple[int, bytes, list[Header]]:
        return await self.release.respond(scope, body)


class ReleaseMiddleware:
    """ASGI middleware answering ``POST /predict`` with the worker's release."""

    def __init__(self, app: Any, release: ReleaseSlot, path: str = "/predict") -> None:
        self.app = app
        self.slot = release
        self.path = path
        self._app: ReleaseApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_error(send, method_not_allowed(scope["method"], self.path))
            return
        if self._app is None and self.slot.release is not None:
            self._app = ReleaseApp(self.slot.release)
        if self._app is None:
            starting = RequestRejected("the release is starting", reason="not-ready", status=503)
            await send_error(send, starting)
            return
        await self._app(scope, receive, send)


def bentoml_forward(dependency: Any) -> Forward:
    """POST a raw JSON body to the candidate's ``/predict`` at the address BentoML serves the
    dependency on (``$BENTOML_RUNNER_MAP``: its Unix socket); the status, body and headers.

    Raw bytes over kept-alive connections (:class:`Connections`), not BentoML's client or
    httpx: the candidate's ``/predict`` is answered by the handler a caller's request gets,
    the release passes the answer on as it is, and a request costs the release's worker a
    few tens of microseconds instead of several hundred.
    """
    name = dependency.on.name if getattr(dependency, "on", None) is not None else None
    pools: dict[int, Connections] = {}

    async def forward(
        body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, bytes, dict[str, str]]:
        loop = id(asyncio.get_running_loop())
        if loop not in pools:
            pools[loop] = Connections(_dependency_url(name))
        return await pools[loop].post("/predict", body, headers)

    return forward


def _dependency_url(name: str | None) -> str:
    mapping = json.loads(os.environ.get("BENTOML_RUNNER_MAP") or "{}")
    if name is None or name not in mapping:
        raise RuntimeError(
            f"BentoML serves no dependency {name!r} here (BENTOML_RUNNER_MAP has "
            f"{sorted(mapping)}): serve the release with `bentoml serve` or `mlnb serve`, "
            "not in development mode"
        )
    return str(mapping[name])


MAX_CONNECTIONS = 32
FORWARD_TIMEOUT_S = 60.0
MAX_ANSWER_BYTES = 256 * 1024 * 1024
MAX_HEADER_LINES = 100


class Connections:
    """Kept-alive HTTP/1.1 connections to one server (``file://`` Unix socket, ``tcp://`` or
    ``http://`` host and port), at most ``MAX_CONNECTIONS`` at once."""

    def __init__(self, url: str) -> None:
        from urllib.parse import unquote, urlparse

        parsed = urlparse(url)
        self.socket_path = unquote(parsed.path) if parsed.scheme == "file" else None
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def post(
        self, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, bytes, dict[str, str]]:
        async with self.slots:
            return await asyncio.wait_for(self._post(path, body, headers), FORWARD_TIMEOUT_S)

    async def _post(
        self, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, bytes, dict[str, str]]:
        extra = "".join(f"{key}: {value}\r\n" for key, value in headers)
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n"
        ).encode("latin-1")
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more, anew
            reused = bool(self.idle)
            reader, writer = self.idle.pop() if reused else await self._connect()
            try:
                writer.write(head + body)
                await writer.drain()
                status, answer, answered = await _read_answer(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                writer.close()
                if attempt == 2 or not reused:
                    raise
                continue
            if answered.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status, answer, answered
        raise ConnectionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.socket_path is not None:
            return await asyncio.open_unix_connection(self.socket_path, limit=2**20)
        return await asyncio.open_connection(self.host, self.port, limit=2**20)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP/1.1 answer: status, body (Content-Length or chunked) and lower-case headers."""
    line = await reader.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        size = int(headers["content-length"])
        if size > MAX_ANSWER_BYTES:
            raise ValueError(f"an answer of {size} bytes")
        return status, await reader.readexactly(size), headers
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        total = 0
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            total += size
            if total > MAX_ANSWER_BYTES:
                raise ValueError(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        return status, b"".join(chunks), headers
    headers["connection"] = "close"  # the body ends with the connection
    return status, await reader.read(MAX_ANSWER_BYTES), headers


def _server_timing(headers: dict[str, str]) -> float | None:
    text = headers.get("server-timing") or ""
    _, found, value = text.partition("dur=")
    if not found:
        return None
    try:
        return float(value.split(";")[0].split(",")[0])
    except ValueError:
        return None


def _key_index(key: str | None, schema: Any) -> tuple[str, int] | None:
    if not key:
        return None
    names = [field.name for field in schema.fields]
    return key, names.index(key) if key in names else -1


def _key_value(decoded: Any, key: str, index: int) -> str | None:
    """The ``key`` field's value in the request's first row, as text (None if absent)."""
    rows = decoded.get("rows") if isinstance(decoded, dict) else None
    if not isinstance(rows, list) or not rows:
        return None
    row = rows[0]
    if isinstance(row, dict):
        value = row.get(key)
    elif isinstance(row, list) and 0 <= index < len(row):
        value = row[index]
    else:
        return None
    return None if value is None else str(value)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)
