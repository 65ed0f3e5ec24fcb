"""One ``/predict`` request, from body bytes to a status and a JSON answer.

:class:`PredictHandler` is what every generated service runs per request: decode the JSON,
validate the rows against the training schema, answer through the serve code, and call the
monitoring hooks. Bad input is a 4xx JSON answer naming the row and field; an exception in the
serve code is a 500 JSON answer naming it; the service keeps serving either way.

:class:`PredictMiddleware` answers ``POST /predict`` with the handler as bare ASGI (no
framework in between) inside ``bentoml serve``; a :class:`HandlerSlot` lets it be installed
before the worker has made the handler. This module imports neither numpy nor pandas (the
validation and the serve code do, in the worker), so BentoML's arbiter can import the service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

# pydantic-core (a BentoML dependency) reads and writes JSON several times faster than json.
from pydantic_core import from_json, to_json

from mlnb.errors import RequestRejected

if TYPE_CHECKING:  # numpy and pandas: this module stays importable without them
    from mlnb.serving.answer import Predictor
    from mlnb.serving.schema import RequestSchema

log = logging.getLogger("mlnb.serving")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
MONITORING_ENV = "MLNB_MONITORING"  # "off" skips the monitoring hooks (for benchmarks)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class PredictHandler:
    """Validation, prediction and the monitoring hooks of one service's ``/predict``."""

    def __init__(
        self,
        schema: RequestSchema,
        predictor: Predictor,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        hooks: Any = None,
    ) -> None:
        self.schema = schema
        self.predictor = predictor
        self.max_body_bytes = max_body_bytes
        monitoring = os.environ.get(MONITORING_ENV, "on").lower() not in ("off", "0", "false")
        self.hooks = hooks if monitoring else None

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON answer for one request body."""
        try:
            if len(body) > self.max_body_bytes:
                raise self.too_large(len(body))
            try:
                decoded = from_json(body)
            except ValueError as exc:
                rejection = RequestRejected(
                    f"the request body is not valid JSON: {exc}",
                    reason="bad-json",
                    status=400,
                    fix='send a JSON object {"rows": [...]}',
                )
                self._hook("on_reject", rejection)
                raise rejection from None
            return 200, self.handle_json(decoded)
        except RequestRejected as rejection:
            return rejection.status, rejection.to_json()
        except Exception as exc:
            from mlnb.serving.answer import ServeOutputError

            log.exception("mlnb: the serve code failed on a valid request")
            name = "the serve code" if isinstance(exc, ServeOutputError) else type(exc).__name__
            return 500, {
                "error": "prediction-failed",
                "message": f"{name}: {exc}",
                "row": None,
                "field": None,
            }

    def handle_json(self, body: Any) -> dict[str, Any]:
        """The answer for a decoded body; raises RequestRejected for a bad one."""
        try:
            frame = self.schema.frame(body)
        except RequestRejected as rejection:
            self._hook("on_reject", rejection)
            raise
        answer = self.predictor.answer(frame)
        self._hook("on_answer", frame, answer)
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
    """A bare ASGI app answering ``POST`` with the handler (the path is the caller's business)."""

    def __init__(self, handler: PredictHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _send(send, 405, {"error": "method-not-allowed", "message": "use POST"})
            return
        limit = self.handler.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send(send, 413, self.handler.too_large(declared).to_json())
            return
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send(send, 413, self.handler.too_large(size).to_json())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        status, answer = self.handler.handle(b"".join(chunks))
        await _send(send, status, answer)


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
    its ``__init__``; until it is filled, ``/predict`` answers 503.
    """

    def __init__(
        self, app: Any, handler: PredictHandler | HandlerSlot, path: str = "/predict"
    ) -> None:
        self.app = app
        self.path = path
        self.slot = handler if isinstance(handler, HandlerSlot) else None
        self.predict = None if isinstance(handler, HandlerSlot) else PredictApp(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            predict = self.predict or self._from_slot()
            if predict is None:
                await _send(send, 503, _NOT_READY)
                return
            await predict(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _from_slot(self) -> PredictApp | None:
        handler = self.slot.handler if self.slot is not None else None
        if handler is not None:
            self.predict = PredictApp(handler)
        return self.predict


_NOT_READY = {
    "error": "not-ready",
    "message": "the service has not loaded its model yet",
    "row": None,
    "field": None,
}


_JSON_TYPE = (b"content-type", b"application/json")


async def _send(send: Send, status: int, answer: dict[str, Any]) -> None:
    body = encode(answer)
    headers = [_JSON_TYPE, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
