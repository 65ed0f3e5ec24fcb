"""Data contracts without a kernel: learning, every single mutation of a frame, the file's
shape, the serve-time rules and the JUnit cases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlnb import contract
from mlnb.check import contract_cases
from mlnb.errors import ContractFileError


def frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "size": rng.normal(10, 2, rows),
            "count": rng.integers(0, 50, rows),
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], rows)),
            "note": rng.choice(["a", "b", "c"], rows),
            "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "ok": rng.random(rows) > 0.5,
            "maybe": np.where(rng.random(rows) > 0.9, np.nan, rng.random(rows)),
        }
    )
    return data


def learned(values: dict[str, Any]) -> dict[str, Any]:
    """The stage section as the file holds it (rendered, then read back)."""
    section, skipped = contract.learn_stage(values)
    assert not skipped
    text = contract.render(contract.new_document({"data": section}), "nb.ipynb", "RUN")
    return contract.parse(text, "nb.contract.yaml")["stages"]["data"]


def found(section: dict[str, Any], values: dict[str, Any]) -> set[tuple[str | None, str, str]]:
    verdict = contract.check_stage("data", section, values, "nb.contract.yaml", "sha")
    return {(v.column, v.rule, v.severity) for v in verdict.violations}


def test_a_learned_contract_passes_its_values_and_other_splits_of_the_same_data() -> None:
    data = frame(600)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(data))
        train, test = data.iloc[order[:450]], data.iloc[order[450:]]
        if seed == 0:
            section = learned({"train": train, "test": test, "y": train["ok"]})
        values = {"train": train, "test": test, "y": train["ok"]}
        assert found(section, values) == set(), seed


def _set(column: str, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(data: pd.DataFrame) -> pd.DataFrame:
        data = data.copy()
        if isinstance(data[column].dtype, pd.CategoricalDtype):
            data[column] = data[column].cat.add_categories([value])
        data.loc[data.index[3], column] = value
        return data

    return change


# (what, mutation, the one violation expected: column, rule, severity by default)
MUTATIONS: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], tuple[Any, str, str]]] = [
    *[
        (f"drop {c}", lambda d, c=c: d.drop(columns=c), (c, "column_in_dataframe", "error"))
        for c in ("size", "count", "colour", "note", "when", "ok", "maybe")
    ],
    ("add a column", lambda d: d.assign(extra=1), ("extra", "column_in_schema", "error")),
    ("size above", _set("size", 1e6), ("size", "less_than_or_equal_to", "warn")),
    ("size below", _set("size", -1e6), ("size", "greater_than_or_equal_to", "warn")),
    ("count above", _set("count", 10_000), ("count", "less_than_or_equal_to", "warn")),
    ("maybe above", _set("maybe", 7.0), ("maybe", "less_than_or_equal_to", "warn")),
    ("size missing", _set("size", np.nan), ("size", "not_nullable", "error")),
    ("new colour", _set("colour", "purple"), ("colour", "isin", "error")),
    ("new note", _set("note", "zzz"), ("note", "isin", "error")),
    (
        "when later",
        _set("when", pd.Timestamp("2030-01-01")),
        ("when", "less_than_or_equal_to", "warn"),
    ),
    (
        "size as float32",
        lambda d: d.assign(size=d["size"].astype("float32")),
        ("size", "dtype", "error"),
    ),
    (
        "count as float",
        lambda d: d.assign(count=d["count"].astype(float)),
        ("count", "dtype", "error"),
    ),
    (
        "maybe mostly missing",
        lambda d: d.assign(maybe=np.where(np.arange(len(d)) % 2 == 0, np.nan, 0.5)),
        ("maybe", "null_share", "warn"),
    ),
    ("three times the rows", lambda d: pd.concat([d, d, d]), (None, "rows", "warn")),
]


@pytest.mark.parametrize(("what", "mutate", "expected"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_single_mutation_gives_exactly_its_violation(
    what: str, mutate: Callable[[pd.DataFrame], pd.DataFrame], expected: tuple[Any, str, str]
) -> None:
    section = learned({"X": frame()})
    assert found(section, {"X": mutate(frame())}) == {expected}


def test_the_warn_list_decides_the_severity() -> None:
    section = learned({"X": frame()})
    shifted = {"X": _set("size", 1e6)(frame())}
    assert found(section, shifted) == {("size", "less_than_or_equal_to", "warn")}
    section["X"]["warn"] = ["rows"]  # the owner made ranges hard rules
    assert found(section, shifted) == {("size", "less_than_or_equal_to", "error")}
    section["X"]["warn"] = [{"size": "less_than_or_equal_to"}]  # one column only
    assert found(section, shifted) == {("size", "less_than_or_equal_to", "warn")}
    moved = {"X": _set("count", 10_000)(frame())}
    assert found(section, moved) == {("count", "less_than_or_equal_to", "error")}


def test_a_violation_names_rows_examples_and_the_fix() -> None:
    section = learned({"X": frame()})
    data = frame()
    data["colour"] = data["colour"].cat.add_categories(["purple"])
    data.loc[data.index[:4], "colour"] = "purple"
    verdict = contract.check_stage("load", section, {"X": data}, "nb.contract.yaml", "sha")
    (violation,) = verdict.violations
    assert (violation.rows, violation.examples) == (4, ["purple"])
    assert verdict.status == "failed"
    text = str(verdict.error())
    assert "stage 'load'" in text and "'colour' has 4 rows outside the allowed" in text
    assert "mlnb contract nb.ipynb" in text and "warn:" in text


def test_values_it_cannot_cover_are_left_out_and_arrays_are_covered() -> None:
    array = np.arange(12.0).reshape(6, 2)
    section = learned({"A": array, "v": np.arange(6), "model": object(), "names": ["x"]})
    assert set(section) == {"A", "v"}
    assert section["A"]["type"] == "ndarray"
    assert found(section, {"A": array, "v": np.arange(6)}) == set()
    assert found(section, {"A": array[:, :1], "v": np.arange(6)}) == {
        ("1", "column_in_dataframe", "error")
    }
    verdict = contract.check_stage("data", section, {"A": pd.DataFrame(array)}, "f", "s")
    assert [(v.rule, v.value) for v in verdict.violations] == [("type", "A")]
    assert verdict.absent == ["v"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("stages: [", "not valid YAML (line"),
        ("- 1\n", "the top level"),
        ("mlnb_contract: 2\nstages: {}\n", "the top level"),
        ("mlnb_contract: 1\nstages: 3\n", "`stages`"),
        ("mlnb_contract: 1\nstages: {data: {X: {type: Frame}}}\n", "stages.data.X.type"),
        ("mlnb_contract: 1\nstages: {data: {X: {type: DataFrame}}}\n", "stages.data.X.schema"),
        (
            "mlnb_contract: 1\nstages: {data: {X: {type: DataFrame, schema: {columns: {}}, "
            "rows: [5, 1]}}}\n",
            "stages.data.X.rows",
        ),
        (
            "mlnb_contract: 1\nstages: {data: {X: {type: DataFrame, schema: {columns: {}}, "
            "null_share: {a: 2}}}}\n",
            "stages.data.X.null_share",
        ),
        (
            "mlnb_contract: 1\nstages: {data: {X: {type: DataFrame, schema: {columns: {}}, "
            "warn: [3]}}}\n",
            "stages.data.X.warn",
        ),
        ("[" * 20_000, "not valid YAML"),
    ],
)
def test_a_broken_file_names_the_field_and_the_fix(text: str, names: str) -> None:
    with pytest.raises(ContractFileError) as caught:
        contract.parse(text, "nb.contract.yaml")
    assert names in str(caught.value) and "Fix:" in str(caught.value)


def test_a_schema_pandera_cannot_read_names_stage_and_value() -> None:
    section = learned({"X": frame()})
    section["X"]["schema"]["columns"]["size"]["dtype"] = "no-such-type"
    with pytest.raises(ContractFileError, match="stage 'data', value 'X'"):
        found(section, {"X": frame()})


def test_relearning_keeps_the_owners_warn_lists() -> None:
    old = contract.new_document({"data": learned({"X": frame(), "y": frame()["ok"]})})
    old["stages"]["data"]["X"]["warn"] = [{"size": "isin"}]
    new_section, _ = contract.learn_stage({"X": frame(seed=1), "y": frame(seed=1)["ok"]})
    document = contract.refreshed(old, {"data": new_section})
    assert document["stages"]["data"]["X"]["warn"] == [{"size": "isin"}]
    assert document["stages"]["data"]["y"]["warn"] == list(contract.DEFAULT_WARN)


def test_serve_rules_cover_the_models_columns_from_the_training_value() -> None:
    data = frame()
    section, _ = contract.learn_stage({"X_train": data, "X_other": data[["size"]] * 3})
    text = contract.render(contract.new_document({"data": section}), "nb.ipynb", "RUN")
    rules = contract.serve_rules(text, ["size", "colour", "when", "maybe", "absent"], "X_train")
    assert rules is not None and rules["value"] == "X_train"
    features = rules["features"]
    assert set(features) == {"size", "colour", "when", "maybe"}
    # widened over the stage's values that share the column
    assert features["size"]["max"] == pytest.approx(3 * data["size"].max())
    assert features["colour"]["categories"] == ["blue", "green", "red"]
    assert features["when"]["min"] == "2024-01-01T00:00:00"
    assert features["size"]["null_share"] == 0.0 and 0 < features["maybe"]["null_share"] < 1
    assert contract.serve_rules(text, ["nothing", "here"], None) is None


def test_junit_cases_follow_the_stage_reports() -> None:
    def stage(name: str, report: dict[str, Any] | None) -> dict[str, Any]:
        return {"name": name, "kind": "data", "contract": report}

    violation = {"value": "X", "column": "a", "rule": "isin", "rows": 1, "examples": ["z"]}
    record = {
        "stages": [
            stage("ok", {"status": "passed", "file": "f", "values": {"X": 3}, "violations": []}),
            stage(
                "warned",
                {
                    "status": "warned",
                    "file": "f",
                    "values": {"X": 3},
                    "violations": [{**violation, "severity": "warn", "message": "soft"}],
                },
            ),
            stage(
                "bad",
                {
                    "status": "failed",
                    "file": "f",
                    "values": {"X": 3},
                    "violations": [{**violation, "severity": "error", "message": "hard"}],
                },
            ),
            stage("none", {"status": "unchecked", "file": "f", "values": {}, "violations": []}),
            stage("old", None),
        ]
    }
    cases = {c.name: c for c in contract_cases("nb.ipynb", record)}
    assert set(cases) == {"contract ok", "contract warned", "contract bad", "contract none"}
    assert (
        cases["contract warned"].outcome == "passed"
        and "warn: X: soft" in cases["contract warned"].message
    )
    assert (cases["contract bad"].outcome, cases["contract bad"].message) == (
        "failed",
        "f: X: hard",
    )
    assert cases["contract none"].outcome == "skipped"
