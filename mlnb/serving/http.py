"""One ``/predict`` request, from body bytes to a status and a JSON answer.

:class:`PredictHandler` is what every generated service runs per request: decode the JSON,
validate the rows against the training schema, answer through the serve code, and call the
monitoring hooks. Bad input is a 4xx JSON answer naming the row and field; an exception in the
serve code is a 500 JSON answer naming it; the service keeps serving either way.

:class:`PredictMiddleware` answers ``POST /predict`` with the handler as bare ASGI (no
framework in between) inside ``bentoml serve``; a :class:`HandlerSlot` lets it be installed
before the worker has made the handler. It reads the body within a deadline (``$MLNB_BODY_TIMEOUT``
seconds, default 5): a body shorter than its Content-Length, or one trickled in, is a 408 JSON
answer, not BentoML's 504 once its request timeout has passed. Every error under ``/predict``
is a :class:`~mlnb.errors.RequestRejected` answered by :func:`~mlnb.errors.error_response`
(the shape of :meth:`~mlnb.errors.RequestRejected.to_json`): another method is a 405,
``/predict/...`` a 404. This module imports neither numpy nor pandas (the validation and
the serve code do, in the worker), so BentoML's arbiter can import the service.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

# pydantic-core (a BentoML dependency) reads and writes JSON several times faster than json.
from pydantic_core import from_json, to_json

from mlnb.errors import RequestRejected, error_response

if TYPE_CHECKING:  # numpy and pandas: this module stays importable without them
    from mlnb.serving.schema import RequestSchema

log = logging.getLogger("mlnb.serving")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
MONITORING_ENV = "MLNB_MONITORING"  # "off" skips the monitoring hooks (for benchmarks)
BODY_TIMEOUT_ENV = "MLNB_BODY_TIMEOUT"  # seconds to read a request body in (default 5)
DEFAULT_BODY_TIMEOUT_S = 5.0
_TICK_S = 0.25  # how often the deadlines of bodies being read are checked
# pydantic-core's parser refuses documents nested deeper (as mlnb.bounded_json would do;
# that module is not imported here: a Bento ships mlnb's serving and monitoring packages only)
MAX_BODY_DEPTH = 200
REQUEST_ID_HEADER = b"x-request-id"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Answerer(Protocol):
    """What answers a request's validated rows: a :class:`~mlnb.serving.answer.Predictor`
    (``/predict``), or :class:`~mlnb.serving.explaining.Explaining` (``/explain``)."""

    def answer(self, frame: Any) -> dict[str, Any]: ...


class PredictHandler:
    """Validation, prediction and the monitoring hooks of one service's ``/predict``."""

    def __init__(
        self,
        schema: RequestSchema,
        predictor: Answerer,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        hooks: Any = None,
        failure: str = "prediction-failed",
    ) -> None:
        self.schema = schema
        self.predictor = predictor
        self.max_body_bytes = max_body_bytes
        self.failure = failure  # the error code of a 500 answer
        monitoring = os.environ.get(MONITORING_ENV, "on").lower() not in ("off", "0", "false")
        self.hooks = hooks if monitoring else None

    def handle(self, body: bytes, request_id: RequestKey = None) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for one request body (``request_id``: the id its rows
        are logged under, :func:`request_id_of`'s)."""
        try:
            decoded = self.decode(body)
        except RequestRejected as rejection:
            return error_response(rejection)
        return self.handle_decoded(decoded, request_id)

    def decode(self, body: bytes) -> Any:
        """The body as JSON; raises RequestRejected for one too large or not JSON."""
        if len(body) > self.max_body_bytes:
            raise self.too_large(len(body))
        try:
            return from_json(body)  # nests at most MAX_BODY_DEPTH levels
        except ValueError as exc:
            rejection = _bad_json(exc)
            self._hook("on_reject", rejection)
            raise rejection from None

    def handle_decoded(
        self, decoded: Any, request_id: RequestKey = None
    ) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for a decoded body: 4xx for bad rows, 500 when the
        serve code fails."""
        try:
            return 200, self.handle_json(decoded, request_id)
        except RequestRejected as rejection:
            return error_response(rejection)
        except Exception as exc:
            from mlnb.serving.answer import ServeOutputError

            log.exception("mlnb: the serve code failed on a valid request")
            name = "the serve code" if isinstance(exc, ServeOutputError) else type(exc).__name__
            failed = RequestRejected(f"{name}: {exc}", reason=self.failure, status=500)
            return error_response(failed)

    def handle_json(self, body: Any, request_id: RequestKey = None) -> dict[str, Any]:
        """The answer for a decoded body; raises RequestRejected for a bad one."""
        try:
            frame = self.schema.frame(body)
        except RequestRejected as rejection:
            self._hook("on_reject", rejection)
            raise
        answer = self.predictor.answer(frame)
        if request_id is None:
            self._hook("on_answer", frame, answer)
        else:
            self._hook("on_answer", frame, answer, request_id)
        return answer

    def too_large(self, size: int) -> RequestRejected:
        rejection = RequestRejected(
            f"the request body has {size} bytes, more than the {self.max_body_bytes} "
            "this service takes",
            reason="body-too-large",
            status=413,
            fix="send fewer rows per request",
        )
        self._hook("on_reject", rejection)
        return rejection

    def too_slow(self, seconds: float, size: int, declared: int | None) -> RequestRejected:
        expected = f" of the {declared} its Content-Length promised" if declared else ""
        rejection = RequestRejected(
            f"the request body did not arrive within {seconds:g} s ({size} bytes{expected})",
            reason="body-timeout",
            status=408,
            fix="send the whole body at once, as long as its Content-Length says",
        )
        self._hook("on_reject", rejection)
        return rejection

    def _hook(self, name: str, *args: Any) -> None:
        if self.hooks is None:
            return
        try:
            getattr(self.hooks, name)(*args)
        except Exception:
            log.exception("mlnb: monitoring hook %s failed", name)


def encode(answer: dict[str, Any]) -> bytes:
    """Compact JSON; NaN and infinities (which JSON lacks) as null."""
    return to_json(answer, inf_nan_mode="null", fallback=str)


class PredictApp:
    """A bare ASGI app answering ``POST`` with the handler (the path is the caller's business).

    The body is read within ``body_timeout`` seconds, else the answer is a 408.
    """

    def __init__(self, handler: PredictHandler, body_timeout: float | None = None) -> None:
        self.handler = handler
        self.deadlines = BodyDeadlines(
            default_body_timeout() if body_timeout is None else body_timeout
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await send_error(send, method_not_allowed(scope["method"], scope["path"]), _ALLOW_POST)
            return
        limit = self.handler.max_body_bytes
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await send_error(send, self.handler.too_large(declared))
            return
        outcome, body, size = await read_body(receive, self.deadlines, limit)
        if outcome == "timeout":
            rejection = self.handler.too_slow(self.deadlines.seconds, size, declared)
            await send_error(send, rejection, _CLOSE)
        elif outcome == "too-large":
            await send_error(send, self.handler.too_large(size), _CLOSE)
        elif outcome == "read":  # not http.disconnect: someone to answer
            status, answer, headers = await self.respond(scope, body)
            await send_bytes(send, status, answer, headers)

    async def respond(self, scope: Scope, body: bytes) -> tuple[int, bytes, list[Header]]:
        """The status, JSON body and headers answering one whole request body: the
        handler's answer, its ``X-Request-Id`` and the handler's time (``Server-Timing``)."""
        request_id = request_id_of(scope)
        started = time.perf_counter()
        status, answer = self.handler.handle(body, batch_ids(scope) or request_id)
        took = time.perf_counter() - started
        return status, encode(answer), answer_headers(request_id, took)


Header = tuple[bytes, bytes]


def answer_headers(request_id: str, seconds: float) -> list[Header]:
    """``X-Request-Id`` and ``Server-Timing: mlnb;dur=<ms>``: the time the handler took
    (validation, prediction, monitoring), without the HTTP around it."""
    return [
        (REQUEST_ID_HEADER, request_id.encode()),
        (b"server-timing", b"mlnb;dur=%.3f" % (seconds * 1000)),
    ]


async def read_body(
    receive: Receive, deadlines: BodyDeadlines, limit: int
) -> tuple[str, bytes, int]:
    """Read a request body within its deadline and at most ``limit`` bytes (one read past
    it). The outcome (``"read"``; ``"too-large"``; ``"timeout"``, the deadline passed;
    ``"gone"``, the client disconnected), the body when read, and the bytes received."""
    chunks = []
    size = 0
    more = True
    message: Message = {"type": "http.request"}
    task = deadlines.start()
    try:
        while more and size <= limit:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "timeout", b"", size
    finally:
        deadlines.done(task)
    if size > limit:
        return "too-large", b"", size
    if message["type"] != "http.request":
        return "gone", b"", size
    return "read", b"".join(chunks), size


class RequestIds:
    """This process's request ids: a random prefix (unique across workers and restarts) and a
    counter, ``"3f9a1c2e7b-17"``."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(5)
        self.count = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}-{next(self.count)}"


_IDS = RequestIds()
MAX_REQUEST_ID = 128
_REQUEST_ID_OK = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` when it is a plain id (at most 128 characters of
    letters, digits and ``._:-``), else a new one: the id the request's rows are logged
    under, and which the answer's ``X-Request-Id`` header returns (``/feedback`` takes it)."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            if _REQUEST_ID_OK.fullmatch(value):
                return str(value.decode())
            break
    return _IDS.next()


BATCH_IDS_HEADER = b"x-mlnb-request-ids"  # a release's shadow batch: "id*rows,id*rows,..."
MAX_BATCH_IDS = 10_000
RequestKey = str | tuple[tuple[str, int], ...] | None


def batch_ids(scope: Scope) -> tuple[tuple[str, int], ...] | None:
    """The request ids of a batch a release sent its candidate (``X-Mlnb-Request-Ids:
    id*rows,...``): its rows are logged under the ids of the requests they came from. None
    without the header, or with one that does not parse (the rows then get one new id)."""
    for name, value in scope.get("headers", ()):
        if name != BATCH_IDS_HEADER:
            continue
        pairs = []
        for part in value.split(b",", MAX_BATCH_IDS)[:MAX_BATCH_IDS]:
            key, _, rows = part.partition(b"*")
            if not _REQUEST_ID_OK.fullmatch(key) or not rows.isdigit():
                return None
            pairs.append((key.decode(), int(rows)))
        return tuple(pairs) or None
    return None


class BodyDeadlines:
    """Deadlines of the request bodies being read, checked every ``_TICK_S`` by one timer.

    A timer per request (``loop.call_at``) costs about 4 us; noting the reading task in a dict
    costs under 1. A task past its deadline is cancelled, and :meth:`expired` tells that
    cancellation from any other.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.Task[Any] | None:
        """Note the current task as reading a body; None when there is no deadline."""
        task = asyncio.current_task()
        if task is None or self.seconds <= 0:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # the first body of this loop: start checking
            self._loop = loop
            loop.call_later(_TICK_S, self._tick, loop)
        self._reading[task] = loop.time() + self.seconds
        return task

    def done(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` was cancelled for its deadline (then it is no longer cancelling)."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()
        return True

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reading:
            now = loop.time()
            late = [task for task, deadline in self._reading.items() if deadline <= now]
            for task in late:
                del self._reading[task]
                self._expired.add(task)
                task.cancel()
        if self._loop is loop and not loop.is_closed():
            loop.call_later(_TICK_S, self._tick, loop)


class HandlerSlot:
    """The handler of a service that makes it per worker, in the service's ``__init__``.

    BentoML builds a worker's ASGI middleware before it creates the service instance, and it
    imports the service module in its arbiter too (to read the config), where no model should
    load. A generated service therefore hands :class:`PredictMiddleware` an empty slot and
    fills it from ``__init__``, once per worker.
    """

    def __init__(self) -> None:
        self.handler: PredictHandler | None = None

    def set(self, handler: PredictHandler) -> PredictHandler:
        """Fill the slot (once per worker); returns the handler."""
        self.handler = handler
        return handler


class PredictMiddleware:
    """ASGI middleware that answers ``POST /predict`` itself and passes everything else on.

    Installed with ``Service.add_asgi_middleware``, it runs inside BentoML's own middleware
    (metrics, tracing, access log, timeout: the generated service turns the access log and
    the tracing of ``/predict`` off) but skips its pydantic IO layer, which costs more than the
    model. The service still declares its ``predict`` API, so the OpenAPI page and BentoML's
    client describe and call the same route.

    ``handler`` is the :class:`PredictHandler`, or a :class:`HandlerSlot` the service fills in
    its ``__init__``; until it is filled, ``/predict`` answers 503. Another method than POST is
    a 405, a path under ``/predict/`` a 404 (not BentoML's text answers, nor Starlette's 307
    to ``/predict`` with a Location made from the Host header), all JSON.
    """

    def __init__(
        self, app: Any, handler: PredictHandler | HandlerSlot, path: str = "/predict"
    ) -> None:
        self.app = app
        self.path = path
        self.under = path.rstrip("/") + "/"
        self.slot = handler if isinstance(handler, HandlerSlot) else None
        self.predict = None if isinstance(handler, HandlerSlot) else PredictApp(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == self.path:
            if scope["method"] != "POST":
                await send_error(send, method_not_allowed(scope["method"], self.path), _ALLOW_POST)
                return
            predict = self.predict or self._from_slot()
            if predict is None:
                await send_error(send, _not_ready())
                return
            await predict(scope, receive, send)
        elif scope["path"].startswith(self.under):
            await send_error(send, _not_found(scope["path"], self.path))
        else:
            await self.app(scope, receive, send)

    def _from_slot(self) -> PredictApp | None:
        handler = self.slot.handler if self.slot is not None else None
        if handler is not None:
            self.predict = PredictApp(handler)
        return self.predict


def _not_ready() -> RequestRejected:
    return RequestRejected(
        "the service has not loaded its model yet", reason="not-ready", status=503
    )


def method_not_allowed(method: str, path: str = "/predict") -> RequestRejected:
    """The 405 of a route that takes POST only (a release's ``/predict`` sends it too)."""
    shown = path if len(path) <= 80 else path[:77] + "..."
    return RequestRejected(
        f"{shown} takes POST, not {method[:16]}",
        reason="method-not-allowed",
        status=405,
        fix='POST a JSON object {"rows": [...]}',
    )


def _not_found(path: str, predict: str) -> RequestRejected:
    shown = path if len(path) <= 80 else path[:77] + "..."
    return RequestRejected(
        f"no route {shown!r}: the service answers POST {predict}",
        reason="not-found",
        status=404,
        fix=f"POST to {predict}",
    )


def _bad_json(exc: ValueError) -> RequestRejected:
    if "recursion limit exceeded" in str(exc):  # pydantic-core's words for too deep
        return RequestRejected(
            f"the request body nests lists and objects more than {MAX_BODY_DEPTH} levels deep",
            reason="too-deep",
            status=400,
            fix='send {"rows": [...]}: each row an object or list of plain values',
        )
    return RequestRejected(
        f"the request body is not valid JSON: {exc}",
        reason="bad-json",
        status=400,
        fix='send a JSON object {"rows": [...]}',
    )


def default_body_timeout() -> float:
    text = os.environ.get(BODY_TIMEOUT_ENV, "").strip()
    try:
        return float(text) if text else DEFAULT_BODY_TIMEOUT_S
    except ValueError:
        log.warning("mlnb: %s=%r is not a number of seconds; using 5", BODY_TIMEOUT_ENV, text)
        return DEFAULT_BODY_TIMEOUT_S


_JSON_TYPE = (b"content-type", b"application/json")
_ALLOW_POST = ((b"allow", b"POST"),)
_CLOSE = ((b"connection", b"close"),)


async def send_json(
    send: Send, status: int, answer: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send_bytes(send, status, encode(answer), extra)


async def send_error(
    send: Send, error: BaseException, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer ``error`` with :func:`~mlnb.errors.error_response`'s status and body."""
    await send_json(send, *error_response(error), extra)


async def send_bytes(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [_JSON_TYPE, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
