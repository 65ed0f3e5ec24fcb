"""One error shape (issue 19): every MlnbError in mlnb.errors with its own code, and
``error_response`` as the one way an error becomes a JSON body and an HTTP status, for the
CLI's ``--json``, the server extension's routes and jobs, and a served model's answers."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb import errors
from mlnb.errors import (
    BadRequestError,
    CellRef,
    FeedbackRejected,
    JobFailedError,
    MlnbError,
    RequestRejected,
    UnknownStageError,
    error_response,
)

# The keys of MlnbError.to_json(): what the sidebar (labextension/src/types.ts IErrorInfo),
# the %mlnb panel and the jobs read. The server's routes add "status".
SHAPE = {"error", "message", "fix", "notebook", "cell", "cell_index", "cell_first_line", "stage"}

# Every MlnbError subclass once every mlnb module is imported: in a child process, so that
# neither the imports nor the test suite's own subclasses meet the rest of the tests.
_WALK = """
import importlib, json, pkgutil
import mlnb
from mlnb.errors import MlnbError
skipped = []
for info in pkgutil.walk_packages(mlnb.__path__, "mlnb."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue  # runs the command
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:  # an optional extra that is not installed
        if (exc.name or "").split(".")[0] == "mlnb":
            raise
        skipped.append(info.name)
found, queue = [], [MlnbError]
while queue:
    for cls in queue.pop().__subclasses__():
        found.append([cls.__module__, cls.__qualname__, cls.code])
        queue.append(cls)
print(json.dumps({"classes": found, "skipped": skipped}))
"""


@pytest.fixture(scope="module")
def every_error_class() -> list[tuple[str, str, str]]:
    result = subprocess.run(
        [sys.executable, "-c", _WALK], capture_output=True, text=True, check=True, timeout=300
    )
    walked = json.loads(result.stdout)
    return [tuple(entry) for entry in walked["classes"]]


def test_every_error_class_has_a_code_of_its_own(
    every_error_class: list[tuple[str, str, str]],
) -> None:
    codes: dict[str, list[str]] = {}
    for module, name, code in every_error_class:
        codes.setdefault(code, []).append(f"{module}.{name}")
    assert {code: names for code, names in codes.items() if len(names) > 1} == {}
    assert MlnbError.code not in codes  # the root's code names no particular error
    # the walk reached the classes that lived outside errors.py
    names = {name for _, name, _ in every_error_class}
    assert {"ReleaseError", "MonitorLogError", "ExportError", "FeedbackRejected"} <= names
    assert len(every_error_class) > 50


def test_every_error_class_is_in_mlnb_errors(every_error_class: list[tuple[str, str, str]]) -> None:
    for module, name, _ in every_error_class:
        cls = getattr(importlib.import_module(module), name)
        assert getattr(errors, name, None) is cls, f"{module}.{name} is not mlnb.errors.{name}"


def test_the_two_bad_requests_are_told_apart() -> None:
    assert BadRequestError.code == "bad-request"  # the server's; the sidebar reads it
    assert RequestRejected.code != BadRequestError.code
    # a served model's body says its reason, never the class's code
    rejected = RequestRejected("no rows", reason="missing-field", status=422)
    assert error_response(rejected) == (
        422,
        {"error": "missing-field", "message": "no rows", "row": None, "field": None},
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("mlnb.check", "CheckUsageError"),
        ("mlnb.reporting.logs", "MonitorLogError"),
        ("mlnb.export.kfp", "ExportError"),
        ("mlnb.grid", "GridError"),
        ("mlnb.bento.release", "ReleaseError"),
        ("mlnb.serving.release_rules", "ReleaseRuleError"),
        ("mlnb.serving.release_state", "ReleaseStateError"),
    ],
)
def test_a_moved_class_is_still_imported_from_where_it_was(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name) and cls.__module__ == "mlnb.errors"


def test_mlnb_errors_imports_nothing_more_than_the_standard_library_and_cell_numbers() -> None:
    # A Bento ships errors.py (and what it imports): it must stay light.
    script = (
        "import sys; before = set(sys.modules); import mlnb.errors; "
        "print(sorted(set(sys.modules) - before))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    loaded = set(json.loads(result.stdout.replace("'", '"')))
    assert {m for m in loaded if m.split(".")[0] == "mlnb"} == {
        "mlnb",
        "mlnb.errors",
        "mlnb.cell_numbers",
    }
    heavy = {"http", "json", "tornado", "IPython", "bentoml", "numpy", "pandas", "jupyter_server"}
    assert not loaded & heavy, loaded & heavy


# --- details ---


def test_details_are_a_keyword_and_none_by_default() -> None:
    assert MlnbError("m").details is None
    given = {"stages": [{"name": "load"}]}
    error = UnknownStageError("m", details=given)
    assert error.details == given and error.details is not given  # a copy
    assert "stages" not in error.to_json()  # to_json is the error's own fields
    assert set(error.to_json()) == SHAPE


def test_details_travel_in_the_body_and_may_be_set_after_the_raise() -> None:
    error = UnknownStageError("no stage 'x'", fix="name one", notebook="nb.ipynb")
    error.details = {"stages": [{"name": "load", "kind": "data", "cells": [1]}]}
    status, body = error_response(error)
    assert status == 400
    assert body == {**error.to_json(), "stages": [{"name": "load", "kind": "data", "cells": [1]}]}
    json.dumps(body)


# --- error_response ---


def test_an_mlnb_error_answers_with_its_own_status_and_fields() -> None:
    error = errors.RunNotFoundError(
        "no run 'x'", fix="list runs", notebook="nb.ipynb", cell=CellRef(4, "x = 1"), stage="s"
    )
    status, body = error_response(error, status=500)  # its own status wins
    assert status == 404
    assert body == {
        "error": "run-not-found",
        "message": "no run 'x'",
        "fix": "list runs",
        "notebook": "nb.ipynb",
        "cell": 4,
        "cell_index": 4,
        "cell_first_line": "x = 1",
        "stage": "s",
    }


def test_a_rejected_request_answers_in_the_services_shape() -> None:
    one = RequestRejected("bad", reason="wrong-type", status=422, row=2, field="age", fix="f")
    two = RequestRejected("worse", reason="missing-field", row=3, field="sex")
    one.errors = [one.summary(), two.summary()]
    assert error_response(one) == (
        422,
        {
            "error": "wrong-type",
            "message": "bad",
            "row": 2,
            "field": "age",
            "fix": "f",
            "errors": [
                {"message": "bad", "row": 2, "field": "age", "error": "wrong-type"},
                {"message": "worse", "row": 3, "field": "sex", "error": "missing-field"},
            ],
        },
    )
    feedback = FeedbackRejected("no label", reason="missing-label", status=400, item=1)
    assert error_response(feedback) == (
        400,
        {"error": "missing-label", "message": "no label", "row": None, "field": None, "item": 1},
    )


def test_any_other_exception_is_an_internal_error_that_tells_nothing_of_itself() -> None:
    status, body = error_response(ValueError("/secret/path: token=abc"))
    assert status == 500
    assert body == {
        "error": "internal-error",
        "message": "Internal Server Error",
        "fix": None,
        "notebook": None,
        "cell": None,
        "cell_index": None,
        "cell_first_line": None,
        "stage": None,
    }
    assert "secret" not in json.dumps(body)


def test_an_http_status_without_an_mlnb_error_is_coded_by_the_status() -> None:
    assert error_response(None, status=404)[1]["message"] == "Not Found"
    assert error_response(None, status=404, message="")[1]["message"] == "Not Found"
    status, body = error_response(None, status=403, message="no xsrf", fix="log in")
    assert status == 403
    assert (body["error"], body["message"], body["fix"]) == ("http-403", "no xsrf", "log in")
    assert set(body) == SHAPE


# --- who uses it ---


def test_the_servers_error_body_is_the_shape_with_the_status() -> None:
    import tornado.web

    from mlnb.server.handlers import error_body

    error = UnknownStageError("no stage 'x'", notebook="nb.ipynb", details={"stages": []})
    assert error_body(500, error, None) == {**error_response(error)[1], "status": 400}
    body = error_body(404, tornado.web.HTTPError(404, "no route %s", "/x"), "Not Found")
    assert (body["status"], body["error"], body["message"]) == (404, "http-404", "no route /x")
    assert set(body) == SHAPE | {"status"}
    body = error_body(403, tornado.web.HTTPError(403), "Forbidden")
    assert (body["message"], body["fix"]) == (
        "Forbidden",
        "log in to Jupyter again (reload the page)",
    )
    body = error_body(500, KeyError("/home/me/secret"), None)
    assert body["error"] == "internal-error" and "secret" not in body["message"]
    assert body["message"] == "internal error in the mlnb server extension (see the server log)"


def test_a_job_that_printed_no_error_fails_in_the_shape() -> None:
    from mlnb.server.jobs import Job

    job = Job("j1", "build", "nb.ipynb", ["mlnb", "build"])
    job.log_lines.append("Killed")
    job.finish(-9, b"")
    assert job.status == "failed" and job.error is not None
    assert set(job.error) == SHAPE
    assert job.error["error"] == JobFailedError.code == "job-failed"
    assert job.error["message"] == "`mlnb build` was stopped by signal 9: Killed"
    assert job.error["notebook"] == "nb.ipynb" and job.error["fix"]


def test_the_clis_json_error_is_the_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlnb.cli import main

    assert main(["inspect", "--json", str(tmp_path / "absent.ipynb")]) == 2
    out, err = capsys.readouterr()
    body = json.loads(out)
    assert set(body) == SHAPE and body["error"] == "notebook-unreadable"
    assert err.startswith("mlnb: error: ")


class _Schema:
    def frame(self, body: Any) -> Any:
        return body


class _FailingPredictor:
    def answer(self, frame: Any) -> Any:
        raise RuntimeError("boom")


def test_a_served_model_answers_its_failures_in_its_shape() -> None:
    from mlnb.serving import http

    handler = http.PredictHandler(_Schema(), _FailingPredictor())  # type: ignore[arg-type]
    assert handler.handle(b'{"rows": []}') == (
        500,
        {"error": "prediction-failed", "message": "RuntimeError: boom", "row": None, "field": None},
    )
    status, body = handler.handle(b"{not json")
    assert status == 400 and body["error"] == "bad-json" and body["fix"]
    assert errors.error_response(http.method_not_allowed("GET"))[1] == {
        "error": "method-not-allowed",
        "message": "/predict takes POST, not GET",
        "row": None,
        "field": None,
        "fix": 'POST a JSON object {"rows": [...]}',
    }


def test_a_served_model_sends_an_error_with_its_status_and_headers() -> None:
    from mlnb.serving import http

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = http.PredictMiddleware(None, http.HandlerSlot())  # an empty slot: not ready
    for path, method, status, error in [
        ("/predict", "POST", 503, "not-ready"),
        ("/predict", "GET", 405, "method-not-allowed"),
        ("/predict/x", "POST", 404, "not-found"),
    ]:
        sent.clear()
        scope = {"type": "http", "path": path, "method": method, "headers": []}
        asyncio.run(app(scope, None, send))  # type: ignore[arg-type]
        assert sent[0]["status"] == status
        body = json.loads(sent[1]["body"])
        assert body["error"] == error and body["row"] is None and body["field"] is None
        assert (b"allow", b"POST") in sent[0]["headers"] or method == "POST"
