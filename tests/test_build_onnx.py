"""ONNX conversion and the agreement check that decides between onnxruntime and the original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlnb.bento.agreement import check_agreement, compare
from mlnb.bento.format import choose_format
from mlnb.bento.onnx_convert import NotConvertible, convert, task_of
from mlnb.bento.servecode import ServeCode
from mlnb.serving.answer import Predictor
from mlnb.serving.onnx_model import OnnxModel
from mlnb.serving.schema import RequestSchema


def schema_of(frame: pd.DataFrame) -> RequestSchema:
    dtypes = {c: str(t) for c, t in frame.dtypes.items()}
    return RequestSchema.from_training_data({"columns": list(frame.columns), "dtypes": dtypes})


def plain(model: object) -> Predictor:
    return Predictor(model, task_of(model))


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data, bunch.target


def test_a_pipeline_converts_exactly_and_the_adapter_answers_like_it(cancer) -> None:
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    conversion = convert(model, schema_of(X))
    assert conversion.spec["inputs"] == "tensor" and conversion.spec["tensor_dtype"] == "float64"
    adapter = OnnxModel.from_spec(conversion.onnx, conversion.spec)
    rows = X.tail(50)
    assert adapter.predict(rows).tolist() == model.predict(rows).tolist()
    assert np.abs(adapter.predict_proba(rows) - model.predict_proba(rows)).max() < 1e-12
    assert adapter.classes_.tolist() == [0, 1] and adapter.n_features_in_ == 30
    assert adapter.predict(rows.to_numpy()).tolist() == model.predict(rows).tolist()
    assert adapter.predict(rows[list(reversed(X.columns))]).tolist() == model.predict(rows).tolist()
    with pytest.raises(ValueError, match="lacks the feature names"):
        adapter.predict(rows.drop(columns="mean radius"))

    def through_serve_code(m: object) -> Predictor:
        def predict(frame: pd.DataFrame) -> list[dict]:
            return [{"p": round(float(p), 6)} for p in m.predict_proba(frame)[:, 1]]  # type: ignore[attr-defined]

        return Predictor(m, "classification", predict=predict)

    agreement = check_agreement(through_serve_code, model, adapter, rows)
    assert agreement.agrees and agreement.rows == 50
    assert "agrees with the original on 50 held-out rows" in agreement.describe()


def test_float64_trees_fail_in_onnxruntime_and_agree_as_float32(cancer) -> None:
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    with pytest.raises(NotConvertible, match=r"onnxruntime cannot load .*tensor\(double\)"):
        convert(model, schema_of(X))
    conversion = convert(model, schema_of(X), narrow=True)
    assert conversion.spec["narrowed"] and conversion.spec["tensor_dtype"] == "float32"
    adapter = OnnxModel.from_spec(conversion.onnx, conversion.spec)
    agreement = check_agreement(plain, model, adapter, X.tail(100))
    assert agreement.agrees, agreement.reason


def test_a_step_without_a_converter_does_not_convert(cancer) -> None:
    X, y = cancer
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500))
    model.fit(X, y)
    with pytest.raises(NotConvertible, match=r"cannot convert sklearn\.pipeline\.Pipeline"):
        convert(model, schema_of(X))


def test_narrowing_that_changes_the_answers_is_caught() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"big": 1e9 + rng.normal(size=200), "small": rng.normal(size=200)})
    y = 3.0 * (X["big"] - 1e9) + X["small"]
    model = LinearRegression().fit(X, y)
    adapter = OnnxModel.from_spec(**_as_kwargs(convert(model, schema_of(X), narrow=True)))
    agreement = check_agreement(plain, model, adapter, X)
    assert not agreement.agrees
    assert agreement.reason and agreement.reason.startswith("predict differs at [")


def test_a_column_transformer_with_mixed_types_converts_by_column() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 300),
            "income k": rng.normal(50, 10, 300),
            "city": rng.choice(["Lyon", "Oslo", "Pune"], 300),
        }
    )
    y = ((X["income k"] > 50) | (X["city"] == "Oslo")).astype(int)
    columns = make_column_transformer(
        (StandardScaler(), ["age", "income k"]), (OneHotEncoder(handle_unknown="ignore"), ["city"])
    )
    model = make_pipeline(columns, LogisticRegression()).fit(X, y)
    schema = schema_of(X)
    with pytest.raises(NotConvertible):
        convert(model, schema)  # float64 and float32 branches meet in one Concat
    conversion = convert(model, schema, narrow=True)
    assert conversion.spec["inputs"] == "columns"
    adapter = OnnxModel.from_spec(conversion.onnx, conversion.spec)
    rows = schema.frame({"rows": X.head(60).to_dict(orient="records")})
    assert check_agreement(plain, model, adapter, rows).agrees


def test_serve_code_calling_what_the_adapter_lacks_is_served_natively(cancer, tmp_path) -> None:
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    serve = ServeCode("model", model_members=frozenset({"decision_function"}))
    messages: list[str] = []
    choice = choose_format(
        model, tmp_path / "model.joblib", schema_of(X), plain, X.head(), "held-out",
        serve, "classification", messages.append,
    )  # fmt: skip
    assert choice.format == "native" and set(choice.files) == {"model.joblib"}
    assert "model.decision_function, which the ONNX adapter does not provide" in str(choice.reason)
    assert messages[-1].startswith("ONNX not used: the serve code uses model.decision_function")


def test_compare_wants_equal_labels_and_close_numbers() -> None:
    assert compare([{"label": "a", "p": 0.5}], [{"label": "a", "p": 0.5 + 1e-7}])[1] is None
    assert compare([1, 2], np.array([1, 2]))[1] is None
    assert compare(["a"], ["b"])[1] == "[0]: 'a' != 'b'"
    assert compare([0.5], [0.51])[1] == "[0]: 0.5 != 0.51"
    assert compare([1500.0], [1500.01])[1] is None  # relative above 1
    assert compare({"a": 1}, {"b": 1})[1] is not None
    assert compare([1, 2], [1])[1] == "the output: 2 items != 1"


def _as_kwargs(conversion: object) -> dict:
    return {"model": conversion.onnx, "spec": conversion.spec}  # type: ignore[attr-defined]


def test_the_adapter_loads_from_a_model_folder_without_pickles(cancer, tmp_path: Path) -> None:
    import json

    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    conversion = convert(model, schema_of(X))
    (tmp_path / "model.onnx").write_bytes(conversion.onnx)
    (tmp_path / "onnx_model.json").write_text(json.dumps(conversion.spec))
    adapter = OnnxModel.load(tmp_path)
    assert adapter.predict(X.head(5)).tolist() == model.predict(X.head(5)).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "onnx_model.json"]
