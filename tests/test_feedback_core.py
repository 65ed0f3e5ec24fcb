"""Labels fed back, without a server: reading /feedback bodies (and hostile ones), the route
as ASGI, joins to remembered answers, live accuracy and MAE against sklearn's, alerts to a
local receiver, the feedback log and the offline figures from a monitoring folder."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sklearn.metrics import accuracy_score, mean_absolute_error

from mlnb.errors import FeedbackRejected
from mlnb.monitoring.feedback import (
    FEEDBACK_SCHEMA,
    MAX_REMEMBERED_ROWS,
    FeedbackBook,
)
from mlnb.monitoring.records import Answered, PredictionRecords
from mlnb.monitoring.segments import SegmentWriter
from mlnb.reporting.feedback_log import live_metrics, read_feedback
from mlnb.serving.feedback import (
    MAX_LABELS,
    BookSlot,
    FeedbackMiddleware,
    Label,
    parse_feedback,
)

from .build_support import free_port

# --- reading bodies ----------------------------------------------------------------------


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def rejected(raw: bytes, **options: Any) -> dict[str, Any]:
    with pytest.raises(FeedbackRejected) as caught:
        parse_feedback(raw, **options)
    answer = caught.value.to_json()
    assert set(answer) >= {"error", "message", "row", "field", "fix", "item"}
    assert 400 <= caught.value.status < 500 and answer["fix"]
    return {"status": caught.value.status, **answer}


def test_the_three_forms_of_a_body_give_labels_by_request_and_row() -> None:
    assert parse_feedback(body({"request_id": "a-1", "label": "benign"})) == [
        Label("a-1", 0, "benign")
    ]
    assert parse_feedback(body({"request_id": "a-1", "label": 3.5, "row": 2})) == [
        Label("a-1", 2, 3.5)
    ]
    assert parse_feedback(body({"request_id": "a:1", "labels": [True, None, 0]})) == [
        Label("a:1", 0, True),
        Label("a:1", 2, 0),
    ]
    batch = {"feedback": [{"request_id": "x", "label": 1}, {"request_id": "y", "labels": ["p"]}]}
    assert parse_feedback(body(batch)) == [Label("x", 0, 1), Label("y", 0, "p")]
    assert parse_feedback(body({"feedback": []})) == []


@pytest.mark.parametrize(
    ("value", "status", "reason", "item", "field"),
    [
        ([1, 2], 422, "not-an-object", None, None),
        ({"label": "a"}, 422, "missing-field", 0, "request_id"),
        ({"request_id": "a"}, 422, "missing-field", 0, "label"),
        ({"request_id": "a" * 129, "label": 1}, 422, "bad-request-id", 0, "request_id"),
        ({"request_id": "a b", "label": 1}, 422, "bad-request-id", 0, "request_id"),
        ({"request_id": 7, "label": 1}, 422, "bad-request-id", 0, "request_id"),
        ({"request_id": "a", "label": None}, 422, "bad-label", 0, "label"),
        ({"request_id": "a", "label": [1]}, 422, "bad-label", 0, "label"),
        ({"request_id": "a", "label": {"x": 1}}, 422, "bad-label", 0, "label"),
        ({"request_id": "a", "label": "x" * 1001}, 422, "bad-label", 0, "label"),
        ({"request_id": "a", "label": 10**400}, 422, "bad-label", 0, "label"),
        ({"request_id": "a", "label": 1, "row": -1}, 422, "bad-row", 0, "row"),
        ({"request_id": "a", "label": 1, "row": True}, 422, "bad-row", 0, "row"),
        ({"request_id": "a", "label": 1, "row": 1.5}, 422, "bad-row", 0, "row"),
        ({"request_id": "a", "label": 1, "row": 2**31}, 422, "bad-row", 0, "row"),
        ({"request_id": "a", "label": 1, "rows": 2}, 422, "unknown-field", 0, "rows"),
        ({"request_id": "a", "label": 1, "labels": [1]}, 422, "ambiguous-item", 0, "labels"),
        ({"request_id": "a", "labels": "ab"}, 422, "wrong-type", 0, "labels"),
        ({"request_id": "a", "labels": [1, [2]]}, 422, "bad-label", 0, "labels[1]"),
        ({"feedback": {"request_id": "a"}}, 422, "wrong-type", None, "feedback"),
        ({"feedback": [], "extra": 1}, 422, "unknown-field", None, "extra"),
        ({"feedback": [{"request_id": "a", "label": 1}, 5]}, 422, "wrong-type", 1, None),
        ({"feedback": [{"request_id": "a", "label": 1}, {"label": 2}]}, 422,
         "missing-field", 1, "request_id"),
    ],
)  # fmt: skip
def test_a_bad_item_is_a_4xx_naming_the_item_the_field_and_the_fix(
    value: Any, status: int, reason: str, item: int | None, field: str | None
) -> None:
    answer = rejected(body(value))
    assert (answer["status"], answer["error"], answer["item"], answer["field"]) == (
        status,
        reason,
        item,
        field,
    )


def test_a_regressor_takes_numbers_only() -> None:
    assert parse_feedback(body({"request_id": "a", "label": 2}), numeric=True) == [Label("a", 0, 2)]
    for label in ("2.5", True):
        answer = rejected(body({"request_id": "a", "label": label}), numeric=True)
        assert answer["error"] == "bad-label" and "a number" in answer["message"]


def test_limits_on_size_count_depth_and_json() -> None:
    many = {"feedback": [{"request_id": "a", "label": 1}] * (MAX_LABELS + 1)}
    assert rejected(body(many))["error"] == "too-many-labels"
    spread = {"feedback": [{"request_id": "a", "labels": [1] * 6000}] * 2}
    assert rejected(body(spread))["status"] == 413
    exact = {"feedback": [{"request_id": "a", "labels": [1] * 5000}] * 2}
    assert len(parse_feedback(body(exact))) == MAX_LABELS
    assert rejected(b"x" * 101, max_bytes=100)["error"] == "body-too-large"
    assert rejected(b"[" * 100_000)["error"] == "too-deep"
    deep = {"feedback": [json.loads("[" * 150 + "]" * 150)]}
    assert rejected(body(deep))["item"] == 0
    assert rejected(b'{"request_id": "a", "label": NaN}')["error"] == "bad-json"
    assert rejected(b'{"request_id": "a", "label": Infinity}')["error"] == "bad-json"
    assert rejected(b"\xff\xfe")["error"] == "bad-json"
    assert rejected(b"")["error"] == "bad-json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["request_id", "label", "labels", "row", "feedback", "x"]) | st.text(),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_is_labels_or_a_4xx_never_another_exception(value: Any) -> None:
    try:
        labels = parse_feedback(json.dumps(value).encode())
    except FeedbackRejected as rejection:
        assert 400 <= rejection.status < 500
        json.dumps(rejection.to_json())
    else:
        assert all(isinstance(label, Label) and label.row >= 0 for label in labels)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_labels_or_a_4xx(raw: bytes) -> None:
    try:
        parse_feedback(raw)
    except FeedbackRejected as rejection:
        assert 400 <= rejection.status < 500


# --- the route as ASGI -------------------------------------------------------------------


class Recorder:
    task = "classification"

    def __init__(self, fail: bool = False) -> None:
        self.received: list[Label] = []
        self.fail = fail

    def receive(self, items: Any) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("disk gone")
        self.received.extend(items)
        return {"accepted": len(items), "matched": {}, "unmatched": len(items)}


async def passed_on(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def call(
    middleware: FeedbackMiddleware,
    raw: bytes = b"",
    *,
    method: str = "POST",
    path: str = "/feedback",
    headers: list[tuple[bytes, bytes]] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []
    queued = messages or [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if not queued:
            await asyncio.sleep(3600)
        return queued.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"]), dict(sent[0]["headers"])


def test_the_route_answers_json_for_every_method_path_and_state() -> None:
    slot = BookSlot()
    middleware = FeedbackMiddleware(passed_on, slot)
    one = body({"request_id": "a", "label": "x"})
    assert call(middleware, one)[:2] == (503, call(middleware, one)[1])
    assert call(middleware, one)[1]["error"] == "not-ready"
    status, answer, headers = call(middleware, method="GET")
    assert (status, answer["error"], headers[b"allow"]) == (405, "method-not-allowed", b"POST")
    assert call(middleware, path="/feedback/x")[:2][0] == 404
    assert call(middleware, path="/predict")[0] == 299  # not the middleware's
    book = Recorder()
    slot.set(book)
    assert call(middleware, one)[:2] == (200, {"accepted": 1, "matched": {}, "unmatched": 1})
    status, answer, _ = call(middleware, b'{"request_id": 1}')
    assert (status, answer["error"], answer["item"]) == (422, "bad-request-id", 0)
    assert book.received == [Label("a", 0, "x")]
    big = body({"feedback": [{"request_id": "a", "label": "y"}] * 5000})  # read in a thread
    assert call(middleware, big)[0] == 200 and len(book.received) == 5001
    failing = FeedbackMiddleware(passed_on, Recorder(fail=True))
    status, answer, _ = call(failing, one)
    assert (status, answer["error"]) == (500, "feedback-failed")


def test_the_route_refuses_large_slow_and_switched_off_bodies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = FeedbackMiddleware(passed_on, Recorder(), max_body_bytes=100, body_timeout=0.3)
    declared = [(b"content-length", b"1000")]
    assert call(middleware, headers=declared)[1]["error"] == "body-too-large"
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 2
    assert call(middleware, messages=chunks)[0] == 413
    trickle = [{"type": "http.request", "body": b"{", "more_body": True}]
    started = time.monotonic()
    status, answer, _ = call(middleware, messages=trickle)
    assert (status, answer["error"]) == (408, "body-timeout")
    assert time.monotonic() - started < 3
    slot = BookSlot()
    slot.set(None)  # the worker's monitoring failed to start
    status, answer, _ = call(FeedbackMiddleware(passed_on, slot), b"{}")
    assert (status, answer["error"]) == (503, "feedback-off")
    monkeypatch.setenv("MLNB_MONITORING", "off")
    status, answer, _ = call(FeedbackMiddleware(passed_on, Recorder()), b"{}")
    assert (status, answer["error"]) == (503, "feedback-off")
    assert "MLNB_MONITORING=off" in answer["message"]


# --- the book ----------------------------------------------------------------------------


@pytest.fixture
def books(tmp_path: Path):
    made: list[FeedbackBook] = []

    def make(task: str = "classification", **options: Any) -> FeedbackBook:
        versions = options.pop("versions", {"v1": {"tag": "bc:v1", "metrics": {}}})
        options.setdefault("webhook", "")
        options.setdefault("registry", CollectorRegistry())
        options.setdefault("service", "bc")
        book = FeedbackBook(tmp_path / f"m{len(made)}", versions, task=task, **options)
        made.append(book)
        return book

    yield make
    for book in made:
        book.stop()


def sample(registry: CollectorRegistry, name: str, version: str) -> float | None:
    """A version's sample, under the labels every mlnb_* series carries."""
    return registry.get_sample_value(name, {"service_name": "bc", "version": version})


def test_labels_join_every_version_that_answered_by_request_and_row(books: Any) -> None:
    versions = {
        "primary": {"tag": "bc:1", "metrics": {"accuracy": 0.9}},
        "candidate": {"tag": "bc:2", "metrics": {"accuracy": 0.95, "roc_auc": 0.99}},
    }
    book = books(versions=versions)
    served = [{"diagnosis": "benign", "benign_probability": 0.9}, {"diagnosis": "malignant",
              "benign_probability": 0.2}]  # fmt: skip
    book.remember("r1", "primary", served)
    book.remember("r1", "candidate", ["benign", "benign"])  # the shadow's answer
    book.remember("r2", "primary", ["benign"])
    answer = book.receive(
        [Label("r1", 0, "benign"), Label("r1", 1, "malignant"), Label("r2", 0, "malignant"),
         Label("r2", 5, "benign"), Label("gone", 0, "benign"), Label("r1", 0, "malignant")]
    )  # fmt: skip
    assert answer == {
        "accepted": 6,
        "matched": {"primary": 3, "candidate": 2},
        "unmatched": 2,  # r2 has no row 5; no version answered "gone"
        "repeated": 1,  # r1 row 0 again: logged, not counted again
    }
    figures = book.figures()
    assert figures["primary"]["live"] == pytest.approx(2 / 3)
    assert figures["candidate"]["live"] == 0.5
    assert (figures["candidate"]["metric"], figures["candidate"]["training"]) == ("accuracy", 0.95)
    book.flush()
    logged = read_feedback(book.folder)
    assert logged.schema == FEEDBACK_SCHEMA and logged.num_rows == 6
    assert logged.column("label").to_pylist()[:3] == ["benign", "malignant", "malignant"]
    assert logged.column("row").to_pylist()[3] == 5


def test_classes_compare_as_the_log_writes_them(books: Any) -> None:
    book = books()
    book.remember("a", "v1", [1, 0, True, 2.0])
    answer = book.receive([Label("a", 0, "1"), Label("a", 1, 0.0), Label("a", 2, True),
                           Label("a", 3, 2)])  # fmt: skip
    assert answer["matched"] == {"v1": 4} and book.live("v1") == 1.0


def test_the_metrics_and_the_window(books: Any) -> None:
    registry = CollectorRegistry()
    book = books(versions={"v1": {"metrics": {"accuracy": 0.8}}}, window=4, registry=registry)
    assert sample(registry, "mlnb_training_accuracy", "v1") == 0.8
    assert sample(registry, "mlnb_feedback_labels_total", "v1") == 0.0
    book.remember("a", "v1", ["x"] * 6)
    book.receive([Label("a", i, "x" if i < 2 else "y") for i in range(6)])
    assert book.live("v1") == 0.0  # the last four are wrong
    assert sample(registry, "mlnb_live_accuracy", "v1") == 0.0
    assert sample(registry, "mlnb_feedback_labels_total", "v1") == 6
    assert sample(registry, "mlnb_feedback_correct_total", "v1") == 2
    book.receive([Label("a", 0, "x"), Label("b", 0, "x")])  # a repeat, an unknown request
    assert sample(registry, "mlnb_feedback_unmatched_total", "v1") == 1
    regressor = CollectorRegistry()
    book = books("regression", versions={"v1": {"metrics": {"mae": 2.0, "r2": 0.5}}},
                 registry=regressor)  # fmt: skip
    book.remember("b", "v1", [{"value": 10.0}, {"value": 20.0}])
    book.receive([Label("b", 0, 13), Label("b", 1, 19.5)])
    assert book.live("v1") == pytest.approx(1.75)
    assert sample(regressor, "mlnb_live_mae", "v1") == pytest.approx(1.75)
    assert sample(regressor, "mlnb_feedback_abs_error_sum", "v1") == pytest.approx(3.5)
    assert sample(regressor, "mlnb_feedback_abs_error_count", "v1") == 2
    assert sample(regressor, "mlnb_training_mae", "v1") == 2.0


def test_remembering_is_cheap_and_bounded(books: Any) -> None:
    book = books()
    answers = [["benign"] for _ in range(MAX_REMEMBERED_ROWS + 50_000)]
    started = time.perf_counter()
    for i, answer in enumerate(answers):
        book.remember(str(i), "v1", answer)
    each = (time.perf_counter() - started) / len(answers)
    assert each < 20e-6, f"remember took {each * 1e6:.1f} us"
    assert len(book._answers) <= MAX_REMEMBERED_ROWS
    assert book.receive([Label("0", 0, "benign")])["unmatched"] == 1  # the oldest: forgotten
    assert book.receive([Label(str(len(answers) - 1), 0, "benign")])["matched"] == {"v1": 1}


# --- alerts ------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def posted(count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(Receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # and no more than that
    return list(Receiver.received)


def feed(book: FeedbackBook, version: str, n: int, right: bool) -> None:
    start = random.randrange(10**9)
    for i in range(n):
        book.remember(f"q{start + i}", version, ["yes"])
    book.receive([Label(f"q{start + i}", 0, "yes" if right else "no") for i in range(n)])


def test_an_accuracy_alert_fires_once_and_clears(books: Any, receiver: str) -> None:
    versions = {"primary": {"tag": "bc:1", "metrics": {"accuracy": 0.9}}}
    book = books(versions=versions, window=20, min_labels=10, margin=0.05, webhook=receiver)
    feed(book, "primary", 9, right=False)  # fewer than min_labels: no alert yet
    assert posted(0, 0.2) == [] and not book.figures()["primary"]["alerting"]
    feed(book, "primary", 1, right=False)
    [alert] = posted(1)
    assert alert == {
        "bento": "bc:1", "alert": "accuracy", "version": "primary", "metric": "accuracy",
        "live": 0.0, "training": 0.9, "margin": 0.05, "bound": 0.85, "labels": 10, "window": 20,
    }  # fmt: skip
    feed(book, "primary", 5, right=False)
    assert len(posted(2, 0.3)) == 1  # once, not on every label while it stays below
    assert book.metrics.alerting.labels(service_name="bc", version="primary")._value.get() == 1
    feed(book, "primary", 19, right=True)  # 19/20 = 0.95 >= 0.85: cleared
    assert not book.figures()["primary"]["alerting"]
    assert book.metrics.alerting.labels(service_name="bc", version="primary")._value.get() == 0
    feed(book, "primary", 4, right=False)  # 15/20 = 0.75: fires again
    assert len(posted(2)) == 2 and book.figures()["primary"]["alerting"]


def test_a_mae_alert_and_a_webhook_that_fails(books: Any, receiver: str) -> None:
    book = books("regression", versions={"v1": {"metrics": {"mae": 10.0}}}, window=10,
                 min_labels=5, margin=0.05, webhook=receiver)  # fmt: skip
    for i in range(5):
        book.remember(f"r{i}", "v1", [100.0])
    book.receive([Label(f"r{i}", 0, 110.4) for i in range(5)])  # 10.4 <= 10.5: within
    assert posted(1, 0.3) == []
    book.remember("r9", "v1", [100.0])
    book.receive([Label("r9", 0, 140)])  # mean (5 * 10.4 + 40) / 6 = 15.33
    [alert] = posted(1)
    assert (alert["metric"], alert["bound"], alert["live"]) == ("mae", 10.5, pytest.approx(92 / 6))
    dead = books(versions={"v1": {"metrics": {"accuracy": 1.0}}}, min_labels=1,
                 webhook=f"http://127.0.0.1:{free_port()}/nobody")  # fmt: skip
    feed(dead, "v1", 3, right=False)  # the post fails in its thread; receive answered
    assert dead.figures()["v1"]["alerting"]


def test_no_training_metric_no_alert(books: Any) -> None:
    book = books(versions={"v1": {"metrics": {"roc_auc": 0.9}}}, min_labels=1)
    feed(book, "v1", 5, right=False)
    assert book.figures()["v1"] == {
        "tag": None, "metric": "accuracy", "training": None, "live": 0.0, "labels": 5,
        "window": 5, "alerting": False,
    }  # fmt: skip


# --- live accuracy equals sklearn's, online and from the logs ----------------------------

CLASSES = ["benign", "malignant", 1, 0, True]


@st.composite
def labelled_requests(draw: st.DrawFn, regression: bool = False) -> list[tuple[list, list]]:
    """Requests of 1-4 rows: the predictions, and per row a label or None (no label)."""
    values = st.floats(-1e3, 1e3) if regression else st.sampled_from(CLASSES)
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        rows = draw(st.integers(1, 4))
        predicted = draw(st.lists(values, min_size=rows, max_size=rows))
        labels = draw(st.lists(st.none() | values, min_size=rows, max_size=rows))
        requests.append((predicted, labels))
    return requests


def truth(requests: list[tuple[list, list]]) -> tuple[list, list, list[Label]]:
    """The labelled rows' predictions and labels, and the labels as the service gets them
    (shuffled across requests)."""
    y_pred, y_true, items = [], [], []
    for index, (_, labels) in enumerate(requests):
        for row, label in enumerate(labels):
            if label is not None:
                items.append(Label(f"req-{index}", row, label))
    random.Random(len(items)).shuffle(items)
    for item in items:
        y_pred.append(requests[int(item.request_id[4:])][0][item.row])
        y_true.append(item.label)
    return y_pred, y_true, items


def log_predictions(folder: Path, requests: list[tuple[list, list]], classification: bool) -> None:
    """The predictions log a service writes for these requests (one feature, x)."""
    records = PredictionRecords([{"name": "x", "dtype": "float64", "kind": "float"}],
                                classification)  # fmt: skip
    records.start(1)
    answered = [
        Answered(time.time(), pd.DataFrame({"x": [0.0] * len(p)}), p, len(p), f"req-{i}")
        for i, (p, _) in enumerate(requests)
    ]
    writer = SegmentWriter(folder / "predictions", records.schema)
    writer.write(records.build(answered).batch)
    writer.close()


def as_text(values: list) -> list[str]:
    return [str(v) for v in values]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_requests(), st.sampled_from([3, 1000]))
def test_live_accuracy_is_sklearns_accuracy_on_the_same_rows(requests: list, window: int) -> None:
    y_pred, y_true, items = truth(requests)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "reference.json").write_text(json.dumps({"bento": "bc:v1",
                                                         "task": "classification"}))  # fmt: skip
        log_predictions(root, requests, classification=True)
        book = FeedbackBook(root, {"v1": {"metrics": {"accuracy": 0.5}}}, task="classification",
                            window=window, webhook="", registry=CollectorRegistry())  # fmt: skip
        try:
            for index, (predicted, _) in enumerate(requests):
                book.remember(f"req-{index}", "v1", predicted)
            for start in range(0, len(items), 5):  # several posts
                book.receive(items[start : start + 5])
            book.flush()
            offline = live_metrics(root, window=window)
        finally:
            book.stop()
    if not items:
        assert book.live("v1") is None and offline["v1"]["live"] is None
        return
    # the class texts the log holds: True is "True", 1 is "1" (a label 1 equals a class 1.0)
    expected = accuracy_score(as_text(y_true[-window:]), as_text(y_pred[-window:]))
    assert book.live("v1") == pytest.approx(expected)
    assert offline["v1"]["live"] == pytest.approx(expected)
    assert offline["v1"]["labels"] == len(items) and offline["v1"]["training"] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_requests(regression=True))
def test_live_mae_is_sklearns_mae_on_the_same_rows(requests: list) -> None:
    y_pred, y_true, items = truth(requests)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "reference.json").write_text(json.dumps({"bento": "d:v2", "task": "regression"}))
        log_predictions(root, requests, classification=False)
        book = FeedbackBook(root, {"v2": {}}, task="regression", webhook="",
                            registry=CollectorRegistry())  # fmt: skip
        try:
            for index, (predicted, _) in enumerate(requests):
                book.remember(f"req-{index}", "v2", [{"value": p} for p in predicted])
            book.receive(items)
            book.flush()
            offline = live_metrics(root, training={"v2": {"mae": 1.0}})
        finally:
            book.stop()
    if items:
        expected = mean_absolute_error(y_true, y_pred)
        assert book.live("v2") == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert offline["v2"]["live"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert offline["v2"]["training"] == 1.0


def test_live_metrics_of_a_release_folder(tmp_path: Path) -> None:
    requests = [(["a", "b"], ["a", "a"]), (["b"], ["b"])]
    shadow = [(["a", "a"], []), (["a"], [])]
    for role, logged in (("primary", requests), ("candidate", shadow)):
        (tmp_path / role).mkdir()
        log_predictions(tmp_path / role, logged, classification=True)
    release = {
        "release": "bc-release:1", "mode": "shadow", "task": "classification",
        "versions": {"primary": {"tag": "bc:1", "metrics": {"accuracy": 0.9}},
                     "candidate": {"tag": "bc:2", "metrics": {"accuracy": 0.8}}},
    }  # fmt: skip
    (tmp_path / "release.json").write_text(json.dumps(release))
    book = FeedbackBook(tmp_path, {}, task="classification", webhook="",
                        registry=CollectorRegistry())  # fmt: skip
    book.receive([Label("req-0", 0, "a"), Label("req-0", 1, "a"), Label("req-1", 0, "b"),
                  Label("req-7", 0, "b"), Label("req-0", 1, "b")])  # fmt: skip
    book.stop()
    figures = live_metrics(tmp_path, min_labels=1)
    assert figures["primary"] == {
        "tag": "bc:1", "metric": "accuracy", "training": 0.9, "live": pytest.approx(2 / 3),
        "labels": 3, "window": 3, "unmatched": 1, "alerting": True,
    }  # fmt: skip
    assert figures["candidate"]["live"] == pytest.approx(2 / 3)
    assert figures["candidate"]["alerting"] is True  # 0.667 < 0.8 - 0.05


def test_live_metrics_of_a_folder_that_is_not_one_names_the_fix(tmp_path: Path) -> None:
    from mlnb.reporting.logs import MonitorLogError

    with pytest.raises(MonitorLogError, match=r"reference\.json"):
        live_metrics(tmp_path)
    (tmp_path / "release.json").write_text("[" * 100 + "]" * 100)
    with pytest.raises(MonitorLogError) as caught:
        live_metrics(tmp_path)
    assert caught.value.fix
