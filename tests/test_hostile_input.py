"""Hostile input never reaches a traceback: deep and huge JSON on every parser, slow and short
bodies, near-miss routes, and parameter values that look like options (issue 16, point 5)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_root_dir, ...)

from mlnb import bounded_json
from mlnb.cli import build_parser
from mlnb.errors import InputLimitError
from mlnb.magics import parameters_as_yaml
from mlnb.panel.state import FormField, cli_parameters, form_fields
from mlnb.parameters import read_parameters
from mlnb.run.params import given_parameters, yaml_arguments, yaml_parameters
from mlnb.serving import http as serving_http

from .build_support import Server, project, start_server, user_env, wait_ready
from .conftest import code_cell, notebook_json

DEEP = 100_000
# a billion laughs: each alias counted at each use (10**9 values)
_LINKS = zip("abcdefgh", "bcdefghi", strict=True)
LAUGHS = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in _LINKS
)
OPTION_LIKE = {"name": "-x", "flag": "--flag", "number": "-5", "text": "-r"}


def deep(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


# --- the parser every reader uses ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (deep(), "too-deep"),
        ('{"a": ' + deep(40) + "}", "too-deep"),
        ("[" + "1," * 600_000 + "1]", "too-large"),
        ("{", "invalid"),
        ("1" * 5000, "invalid"),  # over Python's 4,300-digit limit: a ValueError, not a crash
    ],
    ids=["deep", "deep-in-object", "large", "broken", "long-int"],
)
def test_loads_names_what_and_the_limit(text: str, reason: str) -> None:
    with pytest.raises(InputLimitError) as caught:
        bounded_json.loads(text, max_bytes=1_000_000, max_depth=32, what="the thing")
    error = caught.value
    assert error.reason == reason and error.what == "the thing"
    assert "the thing" in str(error) and "Fix:" in str(error)
    if reason == "too-deep":
        assert "32 levels" in error.message and error.limit == 32


def test_brackets_in_strings_are_not_depth() -> None:
    text = json.dumps({"rows": [["[" * 100, "{" * 100]]})
    assert bounded_json.loads(text, max_bytes=10_000, max_depth=3, what="x") == json.loads(text)
    assert bounded_json.loads(text.encode(), max_bytes=10_000, max_depth=3, what="x")
    with pytest.raises(InputLimitError):
        bounded_json.loads(text, max_bytes=10_000, max_depth=2, what="x")


def test_the_service_states_the_depth_its_parser_keeps() -> None:
    from pydantic_core import from_json

    limit = serving_http.MAX_BODY_DEPTH  # pydantic-core takes 201 levels, not 202
    from_json(deep(limit))
    with pytest.raises(ValueError, match="recursion limit exceeded"):
        from_json(deep(limit + 2))


# --- mlnb monitor: legacy JSON lines and reference.json ----------------------------------------


def profile() -> dict[str, Any]:
    return {
        "dtype": "float64",
        "kind": "numeric",
        "quantiles": [float(q) for q in range(11)],
        "histogram": {"edges": [0.0, 5.0, 10.0], "counts": [50, 50]},
    }


def reference(**changes: Any) -> dict[str, Any]:
    base = {
        "bento": "hostile:1",
        "features": {"x": profile()},
        "prediction": {"kind": "categorical", "frequencies": {"a": 0.5, "b": 0.5}},
        "default_threshold": 0.2,
        "thresholds": {},
        "window": 100,
    }
    return {**base, **changes}


def monitor(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=user_env(folder),
    )


def test_monitor_counts_deep_huge_and_nan_lines_and_reads_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    data = folder / "predictions" / "data"
    data.mkdir(parents=True)
    (folder / "reference.json").write_text(json.dumps(reference()))
    good = [
        json.dumps({"timestamp": f"2026-11-30T10:00:{i:02d}", "mlnb_request": f"r{i}", "x": i % 10,
                    "prediction": "ab"[i % 2]})
        for i in range(40)
    ]  # fmt: skip
    hostile = [
        '{"x": ' + deep() + "}",  # killed mlnb monitor with RecursionError
        '{"x": "' + "y" * (3 * 1024 * 1024) + '"}',  # longer than a line may be, one read
        '{"x": NaN, "prediction": "a"}',  # bare NaN, which BentoML's monitor wrote
        "[1, 2]",  # JSON, not an object
    ]
    lines = good[:20] + hostile + good[20:]
    (data / "data.1.log").write_text("\n".join(lines) + "\n")
    result = monitor(folder)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_logged"] == 40 and summary["unreadable_lines"] == 4


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[]", "not a JSON object"),
        (json.dumps({"features": []}), "'features'"),
        (json.dumps(reference(features={"x": 3})), "feature 'x'"),
        (json.dumps(reference(features={"x": {**profile(), "bins": [1]}})), "'bins'"),
        (json.dumps(reference(features={"x": {**profile(), "quantiles": ["a"]}})), "quantiles"),
        (json.dumps(reference(features={"x": {"kind": "categorical", "frequencies": None}})),
         "frequencies"),
        (json.dumps(reference(prediction=[])), "'prediction'"),
        (json.dumps(reference(prediction={"kind": "numeric", "histogram": 1})), "histogram"),
        (json.dumps(reference(thresholds=[0.1])), "'thresholds'"),
        (json.dumps(reference(window="many")), "'window'"),
        (json.dumps(reference(window=1e400)), "'window'"),
        (json.dumps(reference(default_threshold="high")), "'default_threshold'"),
        ('{"features": ' + deep() + "}", "levels deep"),
        ("{not json", "not valid JSON"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else None,
)  # fmt: skip
def test_a_reference_of_the_wrong_shape_is_a_named_error(
    tmp_path: Path, content: str, words: str
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "reference.json").write_text(content)
    result = monitor(folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "cannot read" in result.stderr and words in result.stderr
    assert "Fix: copy the whole monitoring folder again" in result.stderr


def test_the_reference_the_service_writes_passes_the_check(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    (folder / "predictions").mkdir(parents=True)
    (folder / "reference.json").write_text(json.dumps(reference()))
    result = monitor(folder)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bento"] == "hostile:1"


# --- parameter values that look like options ---------------------------------------------------


def cli_values(argv: list[str]) -> dict[str, Any]:
    """What `mlnb run NB ARGV` would set: its own argument parser, then papermill's merge."""
    args = build_parser().parse_args(["run", "nb.ipynb", *argv])
    return given_parameters(
        args.parameters_file, args.parameters_yaml, args.parameter, args.raw_parameter
    )


@pytest.mark.parametrize(
    "value", ["-x", "--flag", "-5", "-", "--", "-r", "True", "3", "null", "2024-01-01", "a: b",
              "1e+20", "", " spaced ", "é\n'\""],
)  # fmt: skip
def test_yaml_arguments_give_any_string_back(value: str) -> None:
    assert cli_values(yaml_arguments({"name": value})) == {"name": value}


@pytest.mark.parametrize("value", [1e20, 1e-7, -0.5, 0.1, -3, 10**30, True, False, None])
def test_yaml_arguments_keep_types(value: Any) -> None:
    back = cli_values(yaml_arguments({"v": value}))["v"]
    assert back == value and type(back) is type(value)


def test_papermill_order_files_then_yaml_then_p_then_r(tmp_path: Path) -> None:
    file = tmp_path / "params.yaml"
    file.write_text("a: 1\nb: 1\nc: 1\nd: 1\nday: 2024-01-01\n")
    argv = ["-f", str(file), "-y", "{b: 2, c: 2, d: 2}", "-p", "c", "3", "-r", "d", "4"]
    assert cli_values(argv) == {"a": 1, "b": 2, "c": 3, "d": "4", "day": "2024-01-01"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: " + "[" * 5000 + "]" * 5000, "too-deep"),
        (LAUGHS, "too-deep"),  # a billion laughs: aliases counted at each use
        ("a: " + "x" * (2 * 1024 * 1024), "too-large"),
        ("[1, 2]", "invalid"),
        ("a: !!binary aGVsbG8=", "invalid"),
        ("{a: 1", "invalid"),
        ("1: 2", "invalid"),
    ],
    ids=["deep", "laughs", "large", "list", "binary", "broken", "int-key"],
)  # fmt: skip
def test_yaml_parameters_within_limits(text: str, reason: str) -> None:
    with pytest.raises(InputLimitError) as caught:
        yaml_parameters(text)
    assert caught.value.reason == reason and caught.value.fix


def test_the_panel_passes_values_that_start_with_a_dash() -> None:
    params = read_parameters('name = "a"\nflag = "b"\nnumber = "c"\ntext = "d"\nn = 1\nx = None')
    fields = form_fields(params)
    values = {**OPTION_LIKE, "n": 2, "x": "-7"}
    assert cli_values(cli_parameters(fields, values)) == {**OPTION_LIKE, "n": 2, "x": -7}
    assert cli_parameters(fields, {"name": "a", "n": 1, "x": "None"}) == []  # the defaults


def test_panel_and_rest_api_agree_on_a_parameter_whose_default_is_none() -> None:
    from mlnb.server.service import typed_value

    (param,) = read_parameters("x = None")
    (field,) = form_fields([param])
    assert field == FormField("x", "str", None, (), field.help) and "None" in field.help
    for text, typed in (("None", None), ("3", 3), ("0.5", 0.5), ("-x", "-x"), ("abc", "abc")):
        panel = cli_values(cli_parameters([field], {"x": text})).get("x")
        assert panel == typed and typed_value(param, typed, "nb.ipynb") == typed


def test_the_magic_passes_values_that_start_with_a_dash() -> None:
    options = ["-p", "n", "3", "-r", "name", "-x", "-k", "python3", "-r", "flag", "--flag"]
    rewritten = parameters_as_yaml(options)
    assert rewritten[:2] == ["-k", "python3"]
    assert cli_values(rewritten[2:]) == {"n": 3, "name": "-x", "flag": "--flag"}


def parameters_notebook(tmp_path: Path) -> Path:
    path = tmp_path / "params.ipynb"
    cells = [
        code_cell('name = "a"\nflag = "b"\nnumber = "c"\ntext = "d"\nn = 1', tags=("parameters",)),
        code_cell("seen = [name, flag, number, text, n]", tags=("mlnb:data:load",)),
    ]
    path.write_text(json.dumps(notebook_json(cells)))
    return path


@pytest.mark.slow
def test_mlnb_run_takes_option_like_values_through_y(tmp_path: Path) -> None:
    notebook = parameters_notebook(tmp_path)
    argv = [*yaml_arguments(OPTION_LIKE), "-p", "n", "-3"]
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "run", str(notebook), "--json", *argv],
        capture_output=True, text=True, timeout=300, check=False, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded", record.get("error")
    assert {k: record["parameters"][k] for k in [*OPTION_LIKE, "n"]} == {**OPTION_LIKE, "n": -3}


# --- the server extension ----------------------------------------------------------------------


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"mlnb.server": True}}}


async def call(jp_fetch: Any, route: str, method: str = "GET", body: Any = None, **kw: Any):
    kwargs: dict[str, Any] = {"method": method, "raise_error": False, **kw}
    if method == "POST":
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = await jp_fetch("mlnb", *route.split("/"), **kwargs)
    return response.code, json.loads(response.body) if response.body else None


@pytest.mark.parametrize("route", ["inspect", "runs", "builds"])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"path": "nb.ipynb", "x": ' + deep() + "}", "100 levels"),  # was a 500 on every route
        ("[" * 101 + "]" * 101, "100 levels"),
        (b'{"path": "' + b"a" * (33 * 1024 * 1024) + b'"}', "bytes"),
        ("{not json", "must be a JSON object"),
    ],
    ids=["deep-object", "deep-list", "huge", "not-json"],
)
def test_every_post_route_answers_hostile_json_with_a_400(
    jp_fetch: Any, jp_asyncio_loop: Any, route: str, body: str | bytes, words: str
) -> None:
    status, payload = jp_asyncio_loop.run_until_complete(call(jp_fetch, route, "POST", body))
    assert status == 400, payload
    assert payload["status"] == 400 and payload["error"] == "bad-request"
    assert words in payload["message"] and payload["fix"]


@pytest.mark.slow
def test_the_rest_api_runs_with_option_like_values(
    jp_fetch: Any, jp_asyncio_loop: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    parameters_notebook(jp_root_dir)
    record = jp_asyncio_loop.run_until_complete(run_through_the_api(jp_fetch))
    assert record.get("status") == "succeeded", record
    assert {k: record["parameters"][k] for k in [*OPTION_LIKE, "n"]} == {**OPTION_LIKE, "n": -3}


async def run_through_the_api(jp_fetch: Any) -> dict[str, Any]:
    body = {"path": "params.ipynb", "parameters": {**OPTION_LIKE, "n": -3}}
    status, started = await call(jp_fetch, "runs", "POST", body)
    assert status == 202, started
    deadline = time.monotonic() + 180
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, record = await call(
            jp_fetch, f"runs/{started['run_id']}", params={"path": "params.ipynb"}
        )
        if record.get("status") in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.3)
    return record


# --- the generated service over real HTTP ------------------------------------------------------

BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def served() -> Iterator[Server]:
    bento = project().build("breast_cancer.ipynb")["bento"]
    server = start_server(bento, {serving_http.BODY_TIMEOUT_ENV: str(BODY_TIMEOUT_S)})
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()


def request(
    server: Server, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, json.loads(data) if data else None
    finally:
        connection.close()


def raw_post(
    server: Server, declared: int, sent: bytes, trickle: bytes = b""
) -> tuple[bytes, float]:
    """POST /predict with Content-Length ``declared``, ``sent`` at once and then ``trickle``
    a byte a second; the raw answer and the seconds it took."""
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        sock.settimeout(1.0)
        answer = b""
        for byte in [trickle[i : i + 1] for i in range(len(trickle))] + [b""] * 20:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if byte:
                    sock.sendall(byte)
                continue
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and answer.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
                break
    return answer, time.monotonic() - started


def parse(answer: bytes) -> tuple[int, str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), head.decode().lower(), json.loads(body)


def assert_error_shape(payload: Any, error: str) -> None:
    assert {"error", "message", "row", "field"} <= set(payload), payload
    assert payload["error"] == error, payload


@pytest.mark.slow
def test_a_short_body_gets_a_quick_408(served: Server) -> None:
    answer, seconds = raw_post(served, 200, b'{"rows": [')
    status, head, payload = parse(answer)
    assert status == 408 and "application/json" in head
    assert_error_shape(payload, "body-timeout")
    assert "200" in payload["message"] and payload["fix"]
    assert seconds < BODY_TIMEOUT_S + 3  # BentoML answered 504 after its 10 s


@pytest.mark.slow
def test_a_trickled_body_gets_a_quick_408(served: Server) -> None:
    body = b'{"rows": [[' + b"1.0, " * 29 + b"1.0]]}"
    answer, seconds = raw_post(served, len(body), body[:1], trickle=body[1:])
    status, _, payload = parse(answer)
    assert status == 408 and seconds < BODY_TIMEOUT_S + 4
    assert_error_shape(payload, "body-timeout")


@pytest.mark.slow
def test_deep_and_huge_bodies_get_a_4xx(served: Server) -> None:
    status, _, payload = request(served, "POST", "/predict", ('{"rows": ' + deep() + "}").encode())
    assert status == 400
    assert_error_shape(payload, "too-deep")
    assert "200 levels" in payload["message"]
    huge = b'{"rows": [' + b"1.0," * (9 * 1024 * 1024) + b"1.0]}"
    status, _, payload = request(served, "POST", "/predict", huge)
    assert status == 413
    assert_error_shape(payload, "body-too-large")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/predict", 405, "method-not-allowed"),
        ("PUT", "/predict", 405, "method-not-allowed"),
        ("DELETE", "/predict", 405, "method-not-allowed"),
        ("POST", "/predict/", 404, "not-found"),  # was a 307 echoing the Host header
        ("GET", "/predict/", 404, "not-found"),
        ("POST", "/predict/x", 404, "not-found"),
        ("GET", "/predict/x/y", 404, "not-found"),
    ],
)
def test_every_answer_under_predict_is_json(
    served: Server, method: str, path: str, status: int, error: str
) -> None:
    body = b'{"rows": []}' if method in ("POST", "PUT") else None
    got, headers, payload = request(served, method, path, body)
    assert got == status and headers["content-type"] == "application/json"
    assert "location" not in headers
    assert_error_shape(payload, error)
    if status == 405:
        assert headers["allow"] == "POST"


@pytest.mark.slow
def test_the_service_still_answers_after_all_that(served: Server) -> None:
    status, _, payload = request(
        served, "POST", "/predict", b'{"rows": [' + b"[1.0" + b", 1.0" * 29 + b"]]}"
    )
    assert status == 200 and len(payload["predictions"]) == 1
