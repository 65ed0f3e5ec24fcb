"""Stage values in the store and the training data profile, as the kernel side makes them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlnb.errors import UnsaveableOutputError
from mlnb.run import profile
from mlnb.run.outputs import load_value, save_value
from mlnb.store import Store, sha256_file


def _round_trip(value: object, store: Path) -> tuple[dict, object]:
    ref = save_value(value, "v", "stage", store)
    return ref, load_value(ref, store)


def test_each_kind_of_value_in_its_format(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.5, 2.5, None], "b": ["x", "y", "z"]}, index=[10, 11, 12])
    ref, back = _round_trip(frame, tmp_path)
    assert ref["format"] == "parquet"
    pd.testing.assert_frame_equal(back, frame)

    series = pd.Series([1, 2, 3], name="target", index=[5, 6, 7])
    ref, back = _round_trip(series, tmp_path)
    assert ref["format"] == "parquet-series"
    pd.testing.assert_series_equal(back, series)

    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref, back = _round_trip(array, tmp_path)
    assert ref["format"] == "npy" and back.dtype == np.float32
    np.testing.assert_array_equal(back, array)

    ref, back = _round_trip(math, tmp_path)
    assert ref["format"] == "module" and back is math and ref["path"] is None

    ref, back = _round_trip({"k": [1, 2]}, tmp_path)
    assert ref["format"] == "joblib" and back == {"k": [1, 2]}

    # Column names parquet cannot hold fall back to pickling, losing nothing.
    odd = pd.DataFrame({0: [1], 1: [2]})
    ref, back = _round_trip(odd, tmp_path)
    assert ref["format"] == "joblib"
    pd.testing.assert_frame_equal(back, odd)


def test_objects_are_content_addressed_and_never_half_written(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = save_value(np.arange(5), "a", "s", tmp_path)
    again = save_value(np.arange(5), "b", "s", tmp_path)
    assert first == again
    path = store.object_path(first["sha256"])
    assert store.relative(path) == first["path"]
    assert sha256_file(path) == first["sha256"]
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_a_value_that_cannot_be_saved_names_the_variable_and_stage(tmp_path: Path) -> None:
    generator = (i for i in range(3))
    with pytest.raises(UnsaveableOutputError) as caught:
        save_value(generator, "rows", "load", tmp_path, users=["fit"])
    message = str(caught.value)
    assert "'rows' (generator) cannot be saved" in message
    assert "stage 'load'" in message and "'fit'" in message and "Fix:" in message
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_training_data_is_what_the_model_was_fitted_on() -> None:
    rng = np.random.default_rng(0)
    columns = ["a", "b", "c"]
    train = pd.DataFrame(rng.normal(size=(80, 3)), columns=columns)
    test = pd.DataFrame(rng.normal(size=(20, 3)), columns=columns)
    other = pd.DataFrame(rng.normal(size=(200, 2)), columns=["p", "q"])
    y = (train["a"] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train, y)
    inputs = {"X_test": test, "X_train": train, "other": other, "y_train": y}
    name, frame = profile.find_training_data(model, inputs)
    assert name == "X_train" and frame is train
    assert profile.find_holdout(name, frame, inputs)[0] == "X_test"

    # Without feature names: the width, then the most rows.
    bare = LogisticRegression().fit(train.to_numpy(), y)
    arrays = {"small": test.to_numpy(), "big": train.to_numpy(), "wide": other.to_numpy()}
    name, frame = profile.find_training_data(bare, arrays)
    assert name == "big" and list(frame.columns) == ["x0", "x1", "x2"]
    assert profile.find_training_data(bare, {"wide": other.to_numpy()}) is None


def test_the_reference_profile_of_each_column() -> None:
    frame = pd.DataFrame(
        {
            "x": [float(i) for i in range(99)] + [float("nan")],
            "colour": ["red"] * 50 + ["blue"] * 30 + [None] * 20,
            "flag": [True, False] * 50,
        }
    )
    result = profile.profile(frame)
    x = result["x"]
    assert x["kind"] == "numeric" and x["dtype"] == "float64"
    assert x["quantiles"][0] == 0.0 and x["quantiles"][-1] == 98.0 and len(x["quantiles"]) == 11
    assert len(x["histogram"]["edges"]) == 11 and sum(x["histogram"]["counts"]) == 99
    assert x["nan_fraction"] == pytest.approx(0.01)
    assert x["mean"] == pytest.approx(49.0)
    colour = result["colour"]
    assert colour["kind"] == "categorical"
    assert colour["frequencies"] == {"red": 0.625, "blue": 0.375}
    assert colour["nan_fraction"] == pytest.approx(0.2)
    assert result["flag"]["kind"] == "categorical"
    assert profile.sample(pd.concat([frame] * 20)).shape[0] == profile.SAMPLE_ROWS
