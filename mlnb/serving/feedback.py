"""``POST /feedback``: ground truth for answered requests, from body bytes to labels.

A body is one of::

    {"request_id": "r-1", "label": "benign"}               the label of row 0 of request r-1
    {"request_id": "r-1", "label": 3.5, "row": 2}           ... of its row 2
    {"request_id": "r-1", "labels": ["benign", null, "malignant"]}   rows 0.., null: unknown
    {"feedback": [item, ...]}                               a batch of the items above

``request_id`` is the answer's ``X-Request-Id`` header (at most 128 characters of
``[A-Za-z0-9._:-]``), a label is a JSON string, number or bool (a number for a regressor),
``row`` an int >= 0 (default 0). A body holds at most ``MAX_LABELS`` labels. A bad body is a
4xx JSON answer in the shape of :meth:`mlnb.errors.FeedbackRejected.to_json`, naming the item
(its index in ``feedback``), the field and the fix; never a 500.

:func:`parse_feedback` does the reading; :class:`FeedbackMiddleware` answers the route as bare
ASGI, as :class:`mlnb.serving.http.PredictMiddleware` answers ``/predict``, and hands the labels
to a :class:`mlnb.monitoring.feedback.FeedbackBook` (joined there to the answers it
remembered). Like ``http.py``, this module imports neither numpy nor pandas: BentoML's
arbiter imports the service module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from pydantic_core import from_json

from mlnb.errors import FeedbackRejected
from mlnb.serving.http import (
    MAX_BODY_DEPTH,
    MONITORING_ENV,
    BodyDeadlines,
    Receive,
    Scope,
    Send,
    content_length,
    default_body_timeout,
    read_body,
    send_error,
    send_json,
)

log = logging.getLogger("mlnb.serving")

MAX_LABELS = 10_000  # labels in one body
MAX_REQUEST_ID = 128  # characters, as the X-Request-Id the service answers with
MAX_LABEL_CHARS = 1_000  # a class name, as text
MAX_ROW = 2**31 - 1  # the feedback log's row column is an int32
DEFAULT_MAX_FEEDBACK_BYTES = 4 * 1024 * 1024  # 10,000 labels of long ids and classes fit
_THREAD_BYTES = 64 * 1024  # a larger body is read and joined off the event loop
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ITEM_KEYS = frozenset({"request_id", "label", "labels", "row"})
_FORMS = (
    '{"request_id": "...", "label": ...} (optionally "row": N), '
    '{"request_id": "...", "labels": [...]} or {"feedback": [item, ...]}'
)


class Label(NamedTuple):
    """One label: the request it is for, the row within that request and the true value."""

    request_id: str
    row: int
    label: str | int | float | bool


class Book(Protocol):
    """What the middleware needs of a :class:`mlnb.monitoring.feedback.FeedbackBook`."""

    task: str

    def receive(self, items: Sequence[Label]) -> dict[str, Any]: ...


def parse_feedback(
    body: bytes, *, numeric: bool = False, max_bytes: int = DEFAULT_MAX_FEEDBACK_BYTES
) -> list[Label]:
    """The labels of a ``/feedback`` body; raises :class:`FeedbackRejected` for a bad one.

    ``numeric``: every label must be a number (the service is a regressor).
    """
    if len(body) > max_bytes:
        raise too_large(len(body), max_bytes)
    try:
        decoded = from_json(body, allow_inf_nan=False)  # nests at most MAX_BODY_DEPTH levels
    except ValueError as exc:
        if "recursion limit exceeded" in str(exc):
            raise FeedbackRejected(
                f"the body nests lists and objects more than {MAX_BODY_DEPTH} levels deep",
                reason="too-deep",
                status=400,
                fix=f"send {_FORMS}",
            ) from None
        raise FeedbackRejected(
            f"the body is not valid JSON: {str(exc)[:200]}",
            reason="bad-json",
            status=400,
            fix=f"send {_FORMS} (NaN and Infinity are not JSON)",
        ) from None
    return read_labels(decoded, numeric=numeric)


def read_labels(body: Any, *, numeric: bool = False) -> list[Label]:
    """The labels of a decoded body (see the module's docstring for its forms)."""
    if not isinstance(body, dict):
        raise FeedbackRejected(
            f"the body is a JSON {_kind(body)}, not an object",
            reason="not-an-object",
            fix=f"send {_FORMS}",
        )
    if "feedback" not in body:
        labels: list[Label] = []
        _read_item(body, 0, labels, numeric)
        return labels
    extra = sorted(set(body) - {"feedback"})
    if extra:
        raise FeedbackRejected(
            f"a batch has only the field 'feedback', not {_names(extra)}",
            reason="unknown-field",
            field=extra[0][:64],
            fix='send {"feedback": [item, ...]}, each item with its own request_id',
        )
    batch = body["feedback"]
    if not isinstance(batch, list):
        raise FeedbackRejected(
            f"'feedback' is a JSON {_kind(batch)}, not a list of items",
            reason="wrong-type",
            field="feedback",
            fix='send {"feedback": [{"request_id": "...", "label": ...}, ...]}',
        )
    if len(batch) > MAX_LABELS:
        raise too_many(len(batch))
    labels = []
    for index, item in enumerate(batch):
        _read_item(item, index, labels, numeric)
    return labels


def _read_item(item: Any, index: int, labels: list[Label], numeric: bool) -> None:
    """Append the labels of one item (an object) to ``labels``."""
    if not isinstance(item, dict):
        raise FeedbackRejected(
            f"item {index} is a JSON {_kind(item)}, not an object",
            reason="wrong-type",
            item=index,
            fix='each item is {"request_id": "...", "label": ...}',
        )
    extra = sorted(set(item) - _ITEM_KEYS)
    if extra:
        raise FeedbackRejected(
            f"item {index} has the unknown field {_names(extra)}",
            reason="unknown-field",
            item=index,
            field=extra[0][:64],
            fix="an item has request_id, label (or labels) and optionally row",
        )
    request_id = item.get("request_id")
    if request_id is None:
        raise FeedbackRejected(
            f"item {index} has no request_id",
            reason="missing-field",
            item=index,
            field="request_id",
            fix="send the X-Request-Id header of the /predict answer as request_id",
        )
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        shown = _kind(request_id) if not isinstance(request_id, str) else "a text"
        if isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID:
            shown = f"{len(request_id)} characters long"
        raise FeedbackRejected(
            f"item {index}'s request_id is {shown}, not a request id",
            reason="bad-request-id",
            item=index,
            field="request_id",
            fix=f"send the X-Request-Id header of the /predict answer: 1 to {MAX_REQUEST_ID} "
            "characters of letters, digits and . _ : -",
        )
    if "labels" in item:
        if "label" in item or "row" in item:
            raise FeedbackRejected(
                f"item {index} has labels and also {'label' if 'label' in item else 'row'}",
                reason="ambiguous-item",
                item=index,
                field="labels",
                fix='send "labels" (one per row of the request, from row 0) or "label" '
                'with an optional "row", not both',
            )
        values = item["labels"]
        if not isinstance(values, list):
            raise FeedbackRejected(
                f"item {index}'s labels is a JSON {_kind(values)}, not a list",
                reason="wrong-type",
                item=index,
                field="labels",
                fix="send one label per row of the request, null for a row without one",
            )
        if len(labels) + len(values) > MAX_LABELS:
            raise too_many(len(labels) + len(values))
        for row, value in enumerate(values):
            if value is not None:
                labels.append(
                    Label(request_id, row, _label(value, index, f"labels[{row}]", numeric))
                )
        return
    if "label" not in item:
        raise FeedbackRejected(
            f"item {index} has no label",
            reason="missing-field",
            item=index,
            field="label",
            fix='send "label": the true class (or value) of the row',
        )
    row = item.get("row", 0)
    if type(row) is not int or not 0 <= row <= MAX_ROW:
        raise FeedbackRejected(
            f"item {index}'s row is {_kind(row) if type(row) is not int else row}, "
            "not a row number",
            reason="bad-row",
            item=index,
            field="row",
            fix="send the row's position in the request (0 for the first), or leave it out",
        )
    if len(labels) >= MAX_LABELS:
        raise too_many(len(labels) + 1)
    labels.append(Label(request_id, row, _label(item["label"], index, "label", numeric)))


def _label(value: Any, index: int, field: str, numeric: bool) -> str | int | float | bool:
    """A label checked: a string (not too long), a finite number or a bool."""
    kind = type(value)
    if kind is str and not numeric:
        if len(value) <= MAX_LABEL_CHARS:
            return value  # type: ignore[no-any-return]
        problem = f"a text of {len(value)} characters"
    elif kind is bool and not numeric:
        return value  # type: ignore[no-any-return]
    elif kind is int or kind is float:
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if finite:
            return value  # type: ignore[no-any-return]
        problem = "a number too large"
    else:
        problem = f"a JSON {_kind(value)}"
    wanted = "a number" if numeric else "a string, number or bool"
    raise FeedbackRejected(
        f"item {index}'s {field} is {problem}, not {wanted}",
        reason="bad-label",
        item=index,
        field=field,
        fix="send the true value of the row as a number"
        if numeric
        else f"send the true class of the row (text of at most {MAX_LABEL_CHARS} characters, "
        "a number or a bool)",
    )


def too_large(size: int, limit: int) -> FeedbackRejected:
    return FeedbackRejected(
        f"the body has {size} bytes, more than the {limit} /feedback takes",
        reason="body-too-large",
        status=413,
        fix="send the labels in several requests",
    )


def too_many(count: int) -> FeedbackRejected:
    return FeedbackRejected(
        f"the body holds {count} labels or more, more than the {MAX_LABELS} /feedback takes",
        reason="too-many-labels",
        status=413,
        fix=f"send at most {MAX_LABELS} labels per request",
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n[:64]) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


# --- the route ---------------------------------------------------------------------------


class BookSlot:
    """The feedback book of a service that makes it per worker, in the service's ``__init__``
    (as :class:`mlnb.serving.http.HandlerSlot` holds the ``/predict`` handler)."""

    def __init__(self) -> None:
        self.book: Book | None = None
        self.off: str | None = None  # why there is no book, once the worker has started

    def set(self, book: Book | None, why: str | None = None) -> Book | None:
        """Fill the slot (once per worker); None says the worker takes no labels, and why."""
        self.book = book
        self.off = None if book is not None else (why or _NO_BOOK)
        return book


_NO_BOOK = "monitoring did not start in this worker (its log says why)"


class FeedbackMiddleware:
    """ASGI middleware that answers ``POST /feedback`` itself and passes everything else on.

    ``book_slot`` is the book (anything with ``task`` and ``receive(labels)``) or a
    :class:`BookSlot` the service fills in its ``__init__``; until then the route answers 503,
    and with ``$MLNB_MONITORING=off`` always 503. Another method is a 405, a path under
    ``/feedback/`` a 404; every answer is JSON. The body is read within ``$MLNB_BODY_TIMEOUT``
    seconds (else a 408) and at most ``max_body_bytes`` long (else a 413). A 200 answer is
    what the book's ``receive`` says: ``{"accepted": n, "matched": {version: n}, "unmatched": n}``.
    """

    def __init__(
        self,
        app: Any,
        book_slot: BookSlot | Book,
        path: str = "/feedback",
        *,
        max_body_bytes: int = DEFAULT_MAX_FEEDBACK_BYTES,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.under = path.rstrip("/") + "/"
        self.slot = book_slot if isinstance(book_slot, BookSlot) else None
        self.book = None if isinstance(book_slot, BookSlot) else book_slot
        self.max_body_bytes = max_body_bytes
        self.deadlines = BodyDeadlines(
            default_body_timeout() if body_timeout is None else body_timeout
        )
        setting = os.environ.get(MONITORING_ENV, "on").lower()
        self.monitoring = setting not in ("off", "0", "false")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == self.path:
            await self._feedback(scope, receive, send)
        elif scope["path"].startswith(self.under):
            await send_error(send, self._not_found(scope["path"]))
        else:
            await self.app(scope, receive, send)

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, self._not_allowed(scope["method"]), _ALLOW_POST)
            return
        book = self._book()
        if book is None:
            await send_error(send, self._unavailable())
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        try:
            if len(body) > _THREAD_BYTES:  # keep the event loop for /predict meanwhile
                answer = await asyncio.to_thread(_take, book, body)
            else:
                answer = _take(book, body)
        except FeedbackRejected as rejection:
            await send_error(send, rejection)
            return
        except Exception as exc:
            log.exception("mlnb: recording labels failed")
            await send_error(send, _not_recorded(exc))
            return
        await send_json(send, 200, answer)

    def _book(self) -> Book | None:
        if not self.monitoring:
            return None
        if self.book is None and self.slot is not None:
            self.book = self.slot.book
        return self.book

    def _unavailable(self) -> FeedbackRejected:
        """The 503 of a route that takes no labels (yet, or in this worker)."""
        if not self.monitoring:
            return _refused(
                "feedback-off",
                f"labels are not taken: the service runs with {MONITORING_ENV}=off",
                f"start the service without {MONITORING_ENV}=off to take labels",
            )
        if self.slot is not None and self.slot.off:
            return _refused(
                "feedback-off",
                f"labels are not taken: {self.slot.off}",
                "restart the service once its monitoring folder can be written",
            )
        return _refused("not-ready", "the service has not started yet", "retry in a moment")

    def _not_found(self, path: str) -> FeedbackRejected:
        return _refused(
            "not-found",
            f"no route {path[:80]!r}: labels go to POST {self.path}",
            f"POST to {self.path}",
            status=404,
        )

    def _not_allowed(self, method: str) -> FeedbackRejected:
        return _refused(
            "method-not-allowed",
            f"{self.path} takes POST, not {method[:16]}",
            f"POST {_FORMS}",
            status=405,
        )

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when an error was answered instead."""
        limit = self.max_body_bytes
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await send_error(send, too_large(declared, limit))
            return None
        outcome, body, size = await read_body(receive, self.deadlines, limit)
        if outcome == "timeout":
            rejection = FeedbackRejected(
                f"the body did not arrive within {self.deadlines.seconds:g} s ({size} bytes)",
                reason="body-timeout",
                status=408,
                fix="send the whole body at once, as long as its Content-Length says",
            )
            await send_error(send, rejection, _CLOSE)
            return None
        if outcome == "too-large":
            await send_error(send, too_large(size, limit), _CLOSE)
            return None
        if outcome == "gone":  # the client went away
            return None
        return body


def _take(book: Book, body: bytes) -> dict[str, Any]:
    return book.receive(parse_feedback(body, numeric=book.task == "regression"))


def _refused(reason: str, message: str, fix: str, *, status: int = 503) -> FeedbackRejected:
    """An answer of the route itself (not of a body's labels), in the labels' error shape."""
    return FeedbackRejected(message, reason=reason, status=status, fix=fix)


def _not_recorded(exc: Exception) -> FeedbackRejected:
    """The 500 of labels read but not recorded: the exception's type, never its text."""
    return _refused(
        "feedback-failed",
        f"the labels could not be recorded: {type(exc).__name__}",
        "send them again; the service's log has the details",
        status=500,
    )


_ALLOW_POST = ((b"allow", b"POST"),)
_CLOSE = ((b"connection", b"close"),)
