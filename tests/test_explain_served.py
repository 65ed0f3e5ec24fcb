"""POST /explain over real HTTP, on the bundled examples: a linear model served by onnxruntime
(breast_cancer) and a random forest served natively (diabetes). Contributions plus the base
value give the model's output to 1e-6 (and agree with what /predict answers); a bad body
gets exactly /predict's 4xx; the time budget is a 413; a damaged background file is refused."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from mlnb.serving.explaining import BACKGROUND_FILE, Explaining

from .build_support import post, project, start_server, wait_ready

pytestmark = pytest.mark.slow
NOTEBOOKS = {"linear": "breast_cancer.ipynb", "tree": "diabetes.ipynb"}


@pytest.fixture(scope="module")
def served() -> Any:
    """Both Bentos served at once (two cores), each with the time of its first /explain."""
    builds = {kind: project().build(name) for kind, name in NOTEBOOKS.items()}
    servers = {kind: start_server(build["bento"]) for kind, build in builds.items()}
    try:
        for server in servers.values():
            wait_ready(server)
        found = {}
        for kind, server in servers.items():
            rows = rows_of(kind, 1, seed=0)
            started = time.perf_counter()
            status, answer = post(server.url + "/explain", {"rows": rows}, timeout=120)
            assert status == 200, answer
            found[kind] = {
                "url": server.url,
                "build": builds[kind],
                "first_call_s": time.perf_counter() - started,
            }
        yield found
    finally:
        for server in servers.values():
            server.stop()


def data_of(kind: str) -> pd.DataFrame:
    return (load_breast_cancer if kind == "linear" else load_diabetes)(as_frame=True).data


def rows_of(kind: str, count: int, seed: int) -> list[dict[str, float]]:
    """Random training rows, a third of them scaled beyond the training ranges."""
    rng = np.random.default_rng(seed)
    data = data_of(kind)
    picked = data.iloc[rng.choice(len(data), count)].reset_index(drop=True)
    scaled = rng.uniform(0.6, 1.6, size=picked.shape)
    picked.iloc[: count // 3] = (picked * scaled).iloc[: count // 3]
    return picked.to_dict(orient="records")


def native_model(build: dict[str, Any]) -> Any:
    """The trained model as the build kept it, loaded here: in the Bento for an ONNX one
    (for /explain), else in the BentoML model."""
    if build["format"] == "onnx":
        return joblib.load(Path(build["build_dir"]) / "explain_model.joblib")
    name, version = build["model"].split(":")
    folder = Path(project().env["BENTOML_HOME"]) / "models" / name / version
    return joblib.load(folder / "model.joblib")


def added_up(answer: dict[str, Any]) -> np.ndarray:
    return np.array(
        [e["base_value"] + math.fsum(e["contributions"].values()) for e in answer["explanations"]]
    )


def test_linear_contributions_add_up_to_the_log_odds(served: dict) -> None:
    linear = served["linear"]
    rows = rows_of("linear", 60, seed=1)
    status, answer = post(linear["url"] + "/explain", {"rows": rows})
    assert status == 200, answer
    assert (answer["method"], answer["exact"]) == ("linear", True)
    assert answer["output"] == "log-odds of class 1"
    assert answer["features"] == list(data_of("linear").columns)
    values = np.array([e["value"] for e in answer["explanations"]])
    np.testing.assert_allclose(added_up(answer), values, rtol=0, atol=1e-6)
    frame = pd.DataFrame(rows)
    log_odds = native_model(linear["build"]).decision_function(frame)
    np.testing.assert_allclose(values, log_odds, rtol=0, atol=1e-6)
    assert {e["class"] for e in answer["explanations"]} == {1}
    # ... and /predict (onnxruntime, through the serve code) says the same probability
    status, predicted = post(linear["url"] + "/predict", {"rows": rows})
    assert status == 200
    probability = [p["benign_probability"] for p in predicted["predictions"]]
    np.testing.assert_allclose(1 / (1 + np.exp(-values)), probability, atol=1e-6)


def test_forest_contributions_add_up_to_the_prediction(served: dict) -> None:
    tree = served["tree"]
    rows = rows_of("tree", 60, seed=2)
    status, answer = post(tree["url"] + "/explain", {"rows": rows})
    assert status == 200, answer
    assert (answer["method"], answer["exact"], answer["output"]) == ("tree", True, "value")
    values = np.array([e["value"] for e in answer["explanations"]])
    np.testing.assert_allclose(added_up(answer), values, rtol=0, atol=1e-6)
    predicted_here = native_model(tree["build"]).predict(pd.DataFrame(rows))
    np.testing.assert_allclose(values, predicted_here, rtol=0, atol=1e-6)
    assert all("class" not in e for e in answer["explanations"])
    status, predicted = post(tree["url"] + "/predict", {"rows": rows})
    assert status == 200
    np.testing.assert_allclose(values, predicted["predictions"], atol=5e-4)  # rounded to 3


def bad_bodies(kind: str) -> list[bytes]:
    good = rows_of(kind, 2, seed=3)
    first = next(iter(good[0]))
    missing = [{k: v for k, v in good[0].items() if k != first}]
    wrong_type = [{**good[0], first: "wide"}]
    extra = [{**good[0], "colour": 1}]
    return [
        b"{not json",
        b"[]",
        json.dumps({"rows": []}).encode(),
        json.dumps({"rows": missing}).encode(),
        json.dumps({"rows": wrong_type}).encode(),
        json.dumps({"rows": extra}).encode(),
        json.dumps({"rows": [list(good[0].values())[:-1]]}).encode(),
        json.dumps({"rows": [[[[[[1]]]]]]}).encode(),
        json.dumps({"rows": good, "more": 1}).encode(),
        b"[" * 500 + b"]" * 500,
    ]


@pytest.mark.parametrize("kind", ["linear", "tree"])
def test_a_bad_body_gets_the_same_answer_as_predict(served: dict, kind: str) -> None:
    url = served[kind]["url"]
    for body in bad_bodies(kind):
        predict = post(url + "/predict", body)
        explain = post(url + "/explain", body)
        assert 400 <= predict[0] < 500, (body[:80], predict)
        assert explain == predict, body[:80]


def test_more_rows_than_the_budget_is_a_413_naming_it(served: dict) -> None:
    url = served["tree"]["url"]
    rows = rows_of("tree", 101, seed=4)
    status, answer = post(url + "/explain", {"rows": rows})
    assert status == 413 and answer["error"] == "too-many-rows", answer
    assert "100" in answer["message"] and "MLNB_EXPLAIN_MAX_ROWS" in answer["fix"]
    assert post(url + "/predict", {"rows": rows})[0] == 200  # /predict's own limit is higher
    assert post(url + "/explain", {"rows": rows[:100]})[0] == 200


def test_other_methods_and_paths_are_json(served: dict) -> None:
    import urllib.error
    import urllib.request

    url = served["linear"]["url"]
    request = urllib.request.Request(url + "/explain", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    answer = json.loads(caught.value.read())
    assert caught.value.code == 405 and answer["message"] == "/explain takes POST, not GET"
    status, answer = post(url + "/explain/more", {"rows": []})
    assert status == 404 and answer["fix"] == "POST to /explain"


def test_first_call_cost_is_bounded(served: dict) -> None:
    """The first /explain of a worker loads the native model, the background and (for the
    forest) shap; later ones are milliseconds."""
    for kind in ("linear", "tree"):
        assert served[kind]["first_call_s"] < 30
        started = time.perf_counter()
        assert post(served[kind]["url"] + "/explain", {"rows": rows_of(kind, 1, 5)})[0] == 200
        assert time.perf_counter() - started < 1.0


def test_a_damaged_background_file_is_refused(served: dict, tmp_path: Path) -> None:
    """The worker checks the background rows against the sha256 of mlnb_service.json."""
    build_dir = Path(served["tree"]["build"]["build_dir"])
    spec = json.loads((build_dir / "mlnb_service.json").read_text())
    damaged = bytearray((build_dir / BACKGROUND_FILE).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / BACKGROUND_FILE).write_bytes(bytes(damaged))
    explaining = Explaining(
        spec["explain"], tmp_path, task="regression", classes=None, native=lambda: None
    )
    with pytest.raises(Exception, match="does not match the sha256"):
        explaining.load()
