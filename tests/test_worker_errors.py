"""Every error the served worker sends goes through mlnb.errors.error_response (issue 19):
``/feedback``'s route errors and a release's ``/predict`` keep their statuses, headers and
body keys, now made from FeedbackRejected / RequestRejected instead of by hand."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mlnb.serving.feedback import BookSlot, FeedbackMiddleware
from mlnb.serving.release import ReleaseMiddleware, ReleaseSlot

FEEDBACK_KEYS = ["error", "message", "row", "field", "fix", "item"]


def _call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict, dict]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    start, answer = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], json.loads(answer["body"]), headers


class _Book:
    task = "classification"

    def receive(self, items: Any) -> dict[str, Any]:
        raise OSError("/secret/path is full")


def test_feedback_route_errors_keep_their_status_and_shape(monkeypatch) -> None:
    monkeypatch.delenv("MLNB_MONITORING", raising=False)
    app = FeedbackMiddleware(None, BookSlot())
    status, body, headers = _call(app, "GET", "/feedback")
    assert (status, headers["allow"]) == (405, "POST")
    assert list(body) == FEEDBACK_KEYS and body["error"] == "method-not-allowed"
    assert body["message"] == "/feedback takes POST, not GET"
    status, body, _ = _call(app, "POST", "/feedback/x")
    assert (status, body["error"], list(body)) == (404, "not-found", FEEDBACK_KEYS)
    assert body["message"] == "no route '/feedback/x': labels go to POST /feedback"
    status, body, _ = _call(app, "POST", "/feedback", b"{}")
    assert (status, body["error"], list(body)) == (503, "not-ready", FEEDBACK_KEYS)
    slot = BookSlot()
    slot.set(None, "the folder is read-only")
    status, body, _ = _call(FeedbackMiddleware(None, slot), "POST", "/feedback", b"{}")
    assert (status, body["error"]) == (503, "feedback-off")
    assert body["message"] == "labels are not taken: the folder is read-only"


def test_feedback_that_cannot_be_recorded_is_a_500_naming_no_detail(monkeypatch) -> None:
    monkeypatch.delenv("MLNB_MONITORING", raising=False)
    app = FeedbackMiddleware(None, _Book())
    status, body, _ = _call(app, "POST", "/feedback", b'{"request_id": "r-1", "label": "a"}')
    assert (status, list(body)) == (500, FEEDBACK_KEYS)
    assert body == {
        "error": "feedback-failed",
        "message": "the labels could not be recorded: OSError",
        "row": None,
        "field": None,
        "fix": "send them again; the service's log has the details",
        "item": None,
    }
    status, body, _ = _call(app, "POST", "/feedback", b"[1]")
    assert (status, body["error"], body["item"]) == (422, "not-an-object", None)


@pytest.mark.parametrize("off", ["off"])
def test_feedback_off_says_so(monkeypatch, off: str) -> None:
    monkeypatch.setenv("MLNB_MONITORING", off)
    status, body, _ = _call(FeedbackMiddleware(None, _Book()), "POST", "/feedback", b"{}")
    assert (status, body["error"], list(body)) == (503, "feedback-off", FEEDBACK_KEYS)


def test_a_release_answers_its_errors_in_the_predict_shape() -> None:
    app = ReleaseMiddleware(None, ReleaseSlot())
    status, body, headers = _call(app, "GET", "/predict")
    assert status == 405 and "allow" not in headers  # as before: no Allow header
    assert body == {
        "error": "method-not-allowed",
        "message": "/predict takes POST, not GET",
        "row": None,
        "field": None,
        "fix": 'POST a JSON object {"rows": [...]}',
    }
    status, body, _ = _call(app, "POST", "/predict", b"{}")
    assert (status, body) == (
        503,
        {"error": "not-ready", "message": "the release is starting", "row": None, "field": None},
    )
