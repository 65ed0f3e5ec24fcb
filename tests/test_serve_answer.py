"""What one /predict request answers, through the serve code's contract and the hooks."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlnb.serving.answer import Predictor
from mlnb.serving.http import PredictHandler, encode
from mlnb.serving.schema import RequestSchema

SCHEMA = RequestSchema.from_training_data(
    {"columns": ["a", "b"], "dtypes": {"a": "float64", "b": "float64"}}
)
X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
CLASSIFIER = LogisticRegression().fit(X, ["no", "yes", "no", "yes"])
REGRESSOR = LinearRegression().fit(X, [1.0, 2.0, 3.0, 4.0])
ROWS = [{"a": 0.5, "b": 1.0}, {"a": 2.5, "b": 0.0}]


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail

    def on_answer(self, frame: pd.DataFrame, answer: dict[str, Any]) -> None:
        self.calls.append(("answer", (len(frame), answer)))
        if self.fail:
            raise RuntimeError("the monitoring backend is down")

    def on_reject(self, rejection: Any) -> None:
        self.calls.append(("reject", rejection.reason))


def handle(predictor: Predictor, body: object, hooks: Any = None) -> tuple[int, dict]:
    status, answer = PredictHandler(SCHEMA, predictor, hooks=hooks).handle(
        json.dumps(body).encode()
    )
    return status, json.loads(encode(answer))  # as the client receives it


def test_without_serve_code_a_classifier_answers_labels_and_probabilities() -> None:
    status, answer = handle(Predictor(CLASSIFIER, "classification"), {"rows": ROWS})
    assert status == 200
    assert answer["predictions"] == CLASSIFIER.predict(pd.DataFrame(ROWS)).tolist()
    assert answer["classes"] == ["no", "yes"]
    expected = CLASSIFIER.predict_proba(pd.DataFrame(ROWS))
    assert np.allclose(answer["probabilities"], expected)


def test_preprocess_predict_and_postprocess_run_in_order() -> None:
    def preprocess(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(a=frame["a"] * 2)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return REGRESSOR.predict(frame)

    def postprocess(result: np.ndarray) -> list[dict]:
        return [{"value": round(float(v), 3)} for v in result]

    predictor = Predictor(
        REGRESSOR, "regression", predict=predict, preprocess=preprocess, postprocess=postprocess
    )
    status, answer = handle(predictor, {"rows": ROWS})
    doubled = pd.DataFrame(ROWS).assign(a=lambda f: f["a"] * 2)
    assert status == 200
    assert answer == {"predictions": [{"value": round(v, 3)} for v in REGRESSOR.predict(doubled)]}


def test_a_dict_with_predictions_is_the_whole_answer() -> None:
    def predict(frame: pd.DataFrame) -> dict:
        return {"predictions": np.zeros(len(frame)), "model_version": "v2"}

    status, answer = handle(Predictor(REGRESSOR, "regression", predict=predict), {"rows": ROWS})
    assert (status, answer) == (200, {"predictions": [0.0, 0.0], "model_version": "v2"})


def test_serve_code_answering_the_wrong_count_is_a_500_and_serving_goes_on() -> None:
    def predict(frame: pd.DataFrame) -> list[int]:
        return [1]

    predictor = Predictor(REGRESSOR, "regression", predict=predict)
    status, answer = handle(predictor, {"rows": ROWS})
    assert status == 500 and answer["error"] == "prediction-failed"
    assert "the serve code gave 1 predictions for 2 rows" in answer["message"]
    assert handle(predictor, {"rows": ROWS[:1]})[0] == 200


def test_nan_predictions_become_null() -> None:
    def predict(frame: pd.DataFrame) -> list[float]:
        return [float("nan"), float("inf")]

    status, answer = handle(Predictor(REGRESSOR, "regression", predict=predict), {"rows": ROWS})
    assert (status, answer) == (200, {"predictions": [None, None]})


def test_hooks_see_answers_and_rejections_and_cannot_fail_a_request() -> None:
    hooks = Recorder(fail=True)
    predictor = Predictor(REGRESSOR, "regression")
    assert handle(predictor, {"rows": ROWS}, hooks)[0] == 200
    assert handle(predictor, {"rows": [{"a": 1.0}]}, hooks)[0] == 422
    assert handle(predictor, {"rows": []}, hooks)[0] == 400
    assert [name for name, _ in hooks.calls] == ["answer", "reject", "reject"]
    rows, answer = hooks.calls[0][1]
    assert rows == 2 and len(answer["predictions"]) == 2
    assert [detail for name, detail in hooks.calls[1:]] == ["missing-field", "no-rows"]


def test_monitoring_off_skips_the_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLNB_MONITORING", "off")
    hooks = Recorder()
    assert handle(Predictor(REGRESSOR, "regression"), {"rows": ROWS}, hooks)[0] == 200
    assert hooks.calls == []
