"""The pure parts behind building real notebooks' models, in process and fast.

What the served tests in ``test_build_real_models.py`` cover end to end, here case by case:
the wire values of datetime, duration, categorical, bool and ``Int64`` columns, mixed row
shapes, the pins a model's pickle asks for, and a LightGBM model without onnxmltools.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys

import numpy as np
import pandas as pd
import pytest

from mlnb.bento import onnx_convert, pins
from mlnb.bento.modelfile import referenced_modules
from mlnb.errors import RequestRejected
from mlnb.serving.schema import RequestSchema


def _training_data(frame: pd.DataFrame) -> dict:
    from mlnb.run.profile import profile

    return {
        "columns": list(frame.columns),
        "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
        "profile": profile(frame),
    }


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "when": pd.to_datetime(["2024-01-01 00:00", "2024-02-03 10:00", None]),
        "utc": pd.to_datetime(["2024-01-01 00:00", "2024-02-03 10:00", "2024-03-01 00:00"])
        .tz_localize("UTC"),
        "wait": pd.to_timedelta(["1 day", "2h", None]),
        "color": pd.Categorical(["red", "blue", None], categories=["red", "blue", "green"]),
        "member": [True, False, True],
        "paid": pd.array([True, None, False], dtype="boolean"),
        "visits": pd.array([1, None, 3], dtype="Int64"),
        "amount": [1.0, np.nan, 2.0],
    })  # fmt: skip


@pytest.fixture
def schema(frame: pd.DataFrame) -> RequestSchema:
    categories = {"color": frame["color"].cat.categories.tolist()}
    return RequestSchema.from_training_data(_training_data(frame), categories=categories)


def test_rows_sent_as_json_come_back_with_the_training_dtypes(frame, schema) -> None:
    rows = json.loads(json.dumps(schema.wire_rows(frame)))
    assert rows[0]["when"] == "2024-01-01T00:00:00"
    assert rows[0]["utc"] == "2024-01-01T00:00:00+00:00"
    assert rows[0]["wait"] == "P1DT0H0M0S"
    assert (rows[1]["paid"], rows[1]["visits"], rows[2]["when"]) == (None, None, None)
    back = schema.frame({"rows": rows})
    pd.testing.assert_frame_equal(back, frame)
    assert back["color"].cat.categories.tolist() == ["red", "blue", "green"]  # unused kept
    again = RequestSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema


def test_durations_take_seconds_and_aware_times_take_offsets(frame, schema) -> None:
    row = schema.wire_rows(frame)[0]
    got = schema.frame({"rows": [dict(row, wait=5400, utc="2024-01-01T05:00:00+02:00")]})
    assert got["wait"][0] == pd.Timedelta(minutes=90)
    assert got["utc"][0] == pd.Timestamp("2024-01-01 03:00", tz="UTC")
    naive = schema.frame({"rows": [dict(row, utc="2024-01-01T05:00:00")]})
    assert naive["utc"][0] == pd.Timestamp("2024-01-01 05:00", tz="UTC")  # in the column's zone


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"when": "yesterday"}, "when", "is not an ISO 8601 date-time string"),
        ({"when": "2024-01-01T00:00Z"}, "when", "has a time-zone offset"),
        ({"when": 1704067200}, "when", "got a number"),
        ({"wait": "soon"}, "wait", "is not an ISO 8601 duration"),
        ({"color": "pink"}, "color", "'pink' is not one of the training categories ('red'"),
        ({"visits": 1.5}, "visits", "expected an integer, got 1.5"),
        ({"member": None}, "member", "null is not accepted"),
    ],
)
def test_a_bad_value_names_its_row_and_field(frame, schema, change, field, words) -> None:
    rows = schema.wire_rows(frame)
    with pytest.raises(RequestRejected) as caught:
        schema.frame({"rows": [rows[0], dict(rows[0], **change)]})
    assert (caught.value.row, caught.value.field, caught.value.status) == (1, field, 422)
    assert words in caught.value.message


def test_rows_of_both_shapes_name_the_first_row_of_the_other_shape(frame, schema) -> None:
    row = schema.wire_rows(frame)[0]
    for rows, index, says in (
        ([row, list(row.values()), row], 1, "row 1 is a list of values, but row 0 is an object"),
        ([list(row.values()), row], 1, "row 1 is an object keyed by the feature names, but"),
    ):
        with pytest.raises(RequestRejected) as caught:
            schema.frame({"rows": rows})
        assert (caught.value.row, caught.value.reason) == (index, "mixed-rows")
        assert caught.value.message.startswith(says)


def test_the_openapi_row_lists_types_and_categories(schema) -> None:
    from mlnb.serving.row_model import row_model

    described = row_model(schema).model_json_schema()["properties"]
    assert described["when"]["anyOf"][0]["format"] == "date-time"  # nullable: or null
    assert described["utc"]["format"] == "date-time"
    assert described["wait"]["anyOf"][0]["format"] == "duration"
    assert described["color"]["anyOf"][0]["enum"] == ["red", "blue", "green"]
    assert described["visits"]["anyOf"][0]["type"] == "integer"


def test_a_native_model_pins_the_libraries_its_pickle_names() -> None:
    from lightgbm import LGBMClassifier

    X = np.arange(80, dtype=float).reshape(40, 2)
    model = LGBMClassifier(n_estimators=2, min_child_samples=2, verbose=-1)
    model.fit(X, np.arange(40) % 2)
    modules = referenced_modules(model)
    assert "lightgbm.sklearn" in modules and "__main__" not in modules
    found = pins.requirements("native", {"features"}, {}, model_modules=modules,
                              local_modules={"features"})  # fmt: skip
    assert f"lightgbm=={importlib.metadata.version('lightgbm')}" in found
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in found
    assert not any(pin.startswith("features") for pin in found)
    run_recorded = pins.requirements("native", set(), {"lightgbm": "4.0.0"}, model_modules=modules)
    assert "lightgbm==4.0.0" in run_recorded  # the run's version wins over the installed one


def test_an_svc_is_a_classifier() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    assert onnx_convert.task_of(SVC()) == "classification"
    assert onnx_convert.task_of(make_pipeline(StandardScaler(), SVC())) == "classification"
    assert onnx_convert.task_of(SVR()) == "regression"


def test_without_onnxmltools_a_lightgbm_model_is_native_with_the_reason(monkeypatch) -> None:
    from lightgbm import LGBMClassifier

    X = pd.DataFrame(np.arange(80, dtype="float32").reshape(40, 2), columns=["a", "b"])
    model = LGBMClassifier(n_estimators=2, min_child_samples=2, verbose=-1)
    model.fit(X, np.arange(40) % 2)
    schema = RequestSchema.from_training_data(_training_data(X))
    for name in [m for m in sys.modules if m.startswith("onnxmltools")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxmltools", None)  # as if not installed
    with pytest.raises(onnx_convert.NotConvertible, match=r"pip install 'mlnb\[boost\]'"):
        onnx_convert.convert(model, schema)


def test_an_xgboost_classifier_converts_with_onnxmltools() -> None:
    xgboost = pytest.importorskip("xgboost")
    X = pd.DataFrame(np.arange(80, dtype="float32").reshape(40, 2), columns=["a", "b"])
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2).fit(X, np.arange(40) % 2)
    schema = RequestSchema.from_training_data(_training_data(X))
    assert onnx_convert.booster_of(model) == "XGBoost"
    conversion = onnx_convert.convert(model, schema)
    assert conversion.spec["task"] == "classification"


def test_nullable_integer_columns_are_not_fed_to_onnx() -> None:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"visits": pd.array([1, 2, None, 4] * 5, dtype="Int64"), "x": [0.5] * 20})
    model = LogisticRegression().fit(X.fillna(0), [0, 1] * 10)
    schema = RequestSchema.from_training_data(_training_data(X))
    with pytest.raises(onnx_convert.NotConvertible, match="column 'visits', Int64"):
        onnx_convert.convert(model, schema)
