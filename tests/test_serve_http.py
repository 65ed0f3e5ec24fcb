"""The served Bentos over real HTTP on 127.0.0.1: answers, bad requests, BentoML's own client."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import joblib
import pandas as pd
import pytest

from .build_support import Server, post, project, start_server, wait_ready

pytestmark = pytest.mark.slow

MAX_ROWS = 50
MAX_BODY = 200_000


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """The two examples and the native fallback, served at once (one start-up wait)."""
    the_project = project()
    the_project.build("breast_cancer.ipynb")
    diabetes = the_project.build("diabetes.ipynb")
    fallback = the_project.build("fallback.ipynb")
    limits = {"MLNB_MAX_ROWS": str(MAX_ROWS), "MLNB_MAX_BODY_BYTES": str(MAX_BODY)}
    started = {
        "cancer": start_server("breast_cancer.ipynb", limits),  # a notebook: its newest Bento
        "diabetes": start_server(diabetes["bento"]),  # a tag
        "fallback": start_server(fallback["bento"].split(":")[0]),  # a name: the latest
    }
    try:
        for server in started.values():
            wait_ready(server)
        assert "mlnb serve: breast_cancer:" in started["cancer"].log.read_text()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    record = json.loads(
        (
            project().store / "runs" / project().build("breast_cancer.ipynb")["run_id"] / "run.json"
        ).read_text()
    )
    return pd.read_parquet(project().store / record["training_data"]["holdout"]["path"])


def native_model(notebook: str) -> object:
    run_id = project().build(notebook)["run_id"]
    record = json.loads((project().store / "runs" / run_id / "run.json").read_text())
    return joblib.load(project().store / record["model"]["path"])


def test_the_serve_code_answers_as_in_the_notebook(servers, held_out: pd.DataFrame) -> None:
    rows = held_out.head(20)
    status, answer = post(servers["cancer"].url + "/predict", {"rows": rows.to_dict("records")})
    assert status == 200 and set(answer) == {"predictions"}
    proba = native_model("breast_cancer.ipynb").predict_proba(rows)[:, 1]  # type: ignore[attr-defined]
    expected = [
        {"diagnosis": ["malignant", "benign"][int(p >= 0.5)], "benign_probability": round(p, 6)}
        for p in proba.tolist()
    ]
    assert answer["predictions"] == expected


def test_rows_may_be_lists_in_training_order(servers, held_out: pd.DataFrame) -> None:
    as_lists = held_out.head(3).to_numpy().tolist()
    as_dicts = held_out.head(3).to_dict("records")
    url = servers["cancer"].url + "/predict"
    assert post(url, {"rows": as_lists}) == post(url, {"rows": as_dicts})


def test_bentomls_client_calls_the_same_api(servers, held_out: pd.DataFrame) -> None:
    rows = held_out.head(4).to_dict("records")
    script = (
        "import json, sys, bentoml\n"
        "with bentoml.SyncHTTPClient(sys.argv[1]) as client:\n"
        "    print(json.dumps(client.predict(rows=json.loads(sys.argv[2]))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, servers["cancer"].url, json.dumps(rows)],
        env=project().env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer == post(servers["cancer"].url + "/predict", {"rows": rows})[1]


def test_a_regressor_answers_numbers_without_probabilities(servers) -> None:
    frame = pd.read_parquet(
        project().store
        / json.loads(
            (
                project().store / "runs" / project().build("diabetes.ipynb")["run_id"] / "run.json"
            ).read_text()
        )["training_data"]["holdout"]["path"]
    ).head(5)
    status, answer = post(servers["diabetes"].url + "/predict", {"rows": frame.to_dict("records")})
    assert status == 200 and set(answer) == {"predictions"}
    expected = native_model("diabetes.ipynb").predict(frame)  # type: ignore[attr-defined]
    assert answer["predictions"] == [round(float(v), 3) for v in expected]


def test_a_classifier_without_serve_code_gives_probabilities(servers, held_out) -> None:
    rows = held_out.head(3)
    status, answer = post(servers["fallback"].url + "/predict", {"rows": rows.to_dict("records")})
    assert status == 200
    model = native_model("fallback.ipynb")
    assert answer["predictions"] == model.predict(rows).tolist()  # type: ignore[attr-defined]
    assert answer["classes"] == [0, 1]
    expected = model.predict_proba(rows)  # type: ignore[attr-defined]
    assert pd.DataFrame(answer["probabilities"]).sub(expected).abs().max().max() < 1e-12


def _row(held_out: pd.DataFrame, **changes: object) -> dict:
    row = held_out.iloc[0].to_dict()
    for key, value in changes.items():
        name = key.replace("_", " ")
        if value is _DROP:
            row.pop(name)
        else:
            row[name] = value
    return row


_DROP = object()


def _bad_requests(held_out: pd.DataFrame) -> list[tuple[str, bytes | dict, int, str, str]]:
    good = _row(held_out)
    nan_row = json.dumps({"rows": [good, _row(held_out, mean_radius=math.nan)]}).encode()
    return [
        # (what, body, status, error code, words in the message)
        ("missing field", {"rows": [good, _row(held_out, mean_radius=_DROP)]}, 422,
         "missing-field", "row 1 is missing the field 'mean radius'"),
        ("extra field", {"rows": [_row(held_out, colour="red")]}, 422, "unknown-field",
         "row 0 has the unknown field 'colour'"),
        ("wrong type", {"rows": [_row(held_out, mean_texture=[1, 2])]}, 422, "wrong-type",
         "row 0, field 'mean texture': expected a number, got a list"),
        ("non-numeric string", {"rows": [_row(held_out, worst_area="big")]}, 422, "wrong-type",
         "row 0, field 'worst area': expected a number, got the string 'big'"),
        ("NaN", nan_row, 422, "bad-value", "row 1, field 'mean radius': NaN is not accepted"),
        ("infinity", json.dumps({"rows": [_row(held_out, mean_area=math.inf)]}).encode(), 422,
         "bad-value", "row 0, field 'mean area': infinity is not accepted"),
        ("too many rows", {"rows": [good] * (MAX_ROWS + 1)}, 413, "too-many-rows",
         f"{MAX_ROWS + 1} rows is more than the {MAX_ROWS}"),
        ("body too large", b'{"rows": [' + b" " * MAX_BODY + b"]}", 413, "body-too-large",
         f"more than the {MAX_BODY} this service takes"),
        ("not JSON", b'{"rows": [', 400, "bad-json", "not valid JSON"),
        ("no rows key", {"data": [good]}, 400, "bad-body", 'a JSON object {"rows": [...]}'),
        ("empty rows", {"rows": []}, 400, "no-rows", "send at least one row"),
        ("short list row", {"rows": [list(good.values())[:29]]}, 422, "wrong-length",
         "row 0 has 29 values; the model takes 30"),
    ]  # fmt: skip


def test_every_bad_request_gets_a_4xx_naming_row_and_field(servers, held_out) -> None:
    url = servers["cancer"].url + "/predict"
    for what, body, status, code, words in _bad_requests(held_out):
        got_status, answer = post(url, body)
        assert (got_status, answer["error"]) == (status, code), what
        assert words in answer["message"], (what, answer["message"])
    status, answer = post(url, {"rows": [_row(held_out)]})  # and it keeps serving
    assert status == 200 and len(answer["predictions"]) == 1


def test_the_service_pages_work(servers) -> None:
    url = servers["cancer"].url
    post(url + "/predict", {"rows": []})
    with urllib.request.urlopen(url + "/readyz") as response:
        assert response.status == 200
    with urllib.request.urlopen(url + "/metrics") as response:
        metrics = response.read().decode()
    assert 'endpoint="/predict"' in metrics and "bentoml_service_request_total" in metrics
    with urllib.request.urlopen(url + "/docs.json") as response:
        spec = json.loads(response.read())
    request_body = spec["paths"]["/predict"]["post"]["requestBody"]
    assert "rows" in json.dumps(request_body)
    with urllib.request.urlopen(url + "/") as response:
        assert b"<html" in response.read().lower()
