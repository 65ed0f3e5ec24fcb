"""Request validation against the training schema: what a client sending bad rows is told."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlnb.errors import RequestRejected
from mlnb.serving.schema import RequestSchema

TRAINING = {
    "columns": ["mean radius", "count", "flag", "city", "income"],
    "dtypes": {
        "mean radius": "float64",
        "count": "int64",
        "flag": "bool",
        "city": "str",
        "income": "float32",
    },
    "profile": {"income": {"nan_fraction": 0.1}, "city": {"nan_fraction": 0.0}},
}
GOOD = {"mean radius": 12.5, "count": 3, "flag": True, "city": "Lyon", "income": 41.5}


@pytest.fixture(scope="module")
def schema() -> RequestSchema:
    return RequestSchema.from_training_data(TRAINING, max_rows=5)


def rejected(schema: RequestSchema, body: object) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        schema.frame(body)
    return info.value


def with_value(field: str, value: object) -> dict:
    return {**GOOD, field: value}


def test_valid_rows_become_a_frame_with_the_training_dtypes(schema: RequestSchema) -> None:
    frame = schema.frame({"rows": [GOOD, with_value("income", None)]})
    assert list(frame.columns) == TRAINING["columns"]
    assert frame.dtypes.astype(str).to_dict() == TRAINING["dtypes"]
    assert frame["count"].tolist() == [3, 3]
    assert np.isnan(frame["income"].iloc[1])  # the training data had missing incomes


def test_rows_as_lists_in_training_order_and_in_any_key_order(schema: RequestSchema) -> None:
    as_list = schema.frame({"rows": [list(GOOD.values())]})
    reordered = schema.frame({"rows": [dict(reversed(list(GOOD.items())))]})
    expected = schema.frame({"rows": [GOOD]})
    pd.testing.assert_frame_equal(as_list, expected)
    pd.testing.assert_frame_equal(reordered, expected)


def test_an_all_float_schema_makes_one_float_block() -> None:
    names = [f"f{i}" for i in range(30)]
    schema = RequestSchema.from_training_data(
        {"columns": names, "dtypes": dict.fromkeys(names, "float64")}
    )
    frame = schema.frame({"rows": [dict.fromkeys(names, 1), dict.fromkeys(names, 2.5)]})
    assert frame.to_numpy().dtype == np.float64
    assert frame.to_numpy().tolist()[1] == [2.5] * 30


@pytest.mark.parametrize(
    ("row", "reason", "field", "words"),
    [
        (with_value("mean radius", "abc"), "wrong-type", "mean radius", "got the string 'abc'"),
        (with_value("mean radius", "12.5"), "wrong-type", "mean radius", "expected a number"),
        (with_value("mean radius", True), "wrong-type", "mean radius", "got a boolean"),
        (with_value("mean radius", None), "bad-value", "mean radius", "null is not accepted"),
        (with_value("mean radius", float("nan")), "bad-value", "mean radius", "NaN"),
        (with_value("mean radius", float("inf")), "bad-value", "mean radius", "infinity"),
        (with_value("count", 2.5), "wrong-type", "count", "expected an integer"),
        (with_value("count", 2**70), "bad-value", "count", "out of range"),
        (with_value("flag", 1), "wrong-type", "flag", "true or false"),
        (with_value("city", 7), "wrong-type", "city", "expected a string"),
        (with_value("income", [1]), "wrong-type", "income", "got a list"),
    ],
)
def test_a_bad_value_names_the_row_and_field(
    schema: RequestSchema, row: dict, reason: str, field: str, words: str
) -> None:
    error = rejected(schema, {"rows": [GOOD, row]})
    assert (error.status, error.reason, error.row, error.field) == (422, reason, 1, field)
    assert f"row 1, field {field!r}" in error.message
    assert words in error.message


def test_missing_and_unknown_fields_are_named_with_a_hint(schema: RequestSchema) -> None:
    row = {k: v for k, v in GOOD.items() if k != "mean radius"} | {"mean radios": 1.0}
    error = rejected(schema, {"rows": [row]})
    assert error.reason == "missing-field" and error.field == "mean radius"
    assert [e["error"] for e in error.errors] == ["missing-field", "unknown-field"]
    assert "did you mean 'mean radius'?" in error.errors[1]["message"]
    body = error.to_json()
    assert body["row"] == 0 and len(body["errors"]) == 2
    json.dumps(body)  # the answer is plain JSON


def test_a_list_row_of_the_wrong_length_lists_the_columns(schema: RequestSchema) -> None:
    error = rejected(schema, {"rows": [list(GOOD.values())[:-1]]})
    assert error.reason == "wrong-length" and error.row == 0
    assert "row 0 has 4 values; the model takes 5" in error.message
    assert "'mean radius'" in error.message


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ([GOOD], 400, "bad-body"),
        ({"row": [GOOD]}, 400, "bad-body"),
        ({"rows": [GOOD], "extra": 1}, 400, "bad-body"),
        ({"rows": GOOD}, 400, "bad-body"),
        ({"rows": []}, 400, "no-rows"),
        ({"rows": ["text"]}, 422, "bad-row"),
        ({"rows": [GOOD] * 6}, 413, "too-many-rows"),
    ],
)
def test_a_malformed_body_gets_a_4xx_reason(
    schema: RequestSchema, body: object, status: int, reason: str
) -> None:
    error = rejected(schema, body)
    assert (error.status, error.reason) == (status, reason)
    assert error.message


def test_the_schema_survives_its_json_form(schema: RequestSchema) -> None:
    again = RequestSchema.from_json(json.loads(json.dumps(schema.to_json())))
    assert again == schema
    assert [f.nullable for f in again.fields] == [False, False, False, False, True]
