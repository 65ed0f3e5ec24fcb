"""Data contracts on real kernels: learned by the first run, then failing or warning a run
whose data stage drops a column, adds a category or shifts a range, and an edited contract
changing the verdict. The notebook is in the style of real work: a function defined in a
cell, ``display``, a magic, in-place pandas, datetime and categorical columns."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import code_cell, mlnb, notebook_json

pytestmark = pytest.mark.slow

SETUP = """\
import numpy as np
import pandas as pd
from IPython.display import display
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
"""

PARAMETERS = 'mode = "ok"\nrows = 400'

DATA = """\
def make_frame(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=n, freq="h"),
        "colour": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
        "size": rng.normal(10, 2, n),
        "count": rng.integers(0, 50, n),
        "scratch": 1,
    })

df = make_frame(rows, 0)
df.drop(columns="scratch", inplace=True)
if mode == "broken":
    df.drop(columns="count", inplace=True)
    df["colour"] = df["colour"].cat.add_categories(["purple"])
    df.loc[df.index[:3], "colour"] = "purple"
if mode == "shifted":
    df["size"] = df["size"] * 100
display(df.head(3))
"""

SPLIT = """\
%time features = df[["size"]].assign(hour=df["when"].dt.hour)
target = (df["colour"] == "red").astype(int)
X_train, X_test, y_train, y_test = train_test_split(features, target, random_state=0)
"""

TRAIN = """\
model = LogisticRegression().fit(X_train, y_train)
by_colour = df.groupby("colour", observed=True)["size"].mean()
metrics = {"accuracy": float(model.score(X_test, y_test))}
"""


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("contract")
    cells = [
        code_cell(SETUP),
        code_cell(PARAMETERS, tags=("parameters",)),
        code_cell(DATA, tags=("mlnb:data",)),
        code_cell(SPLIT),
        code_cell(TRAIN, tags=("mlnb:train",)),
    ]
    path = folder / "sales.ipynb"
    path.write_text(json.dumps(notebook_json(cells)))
    return path


def run(notebook: Path, *args: str) -> tuple[dict[str, Any], str]:
    result = mlnb("run", str(notebook), "--json", *args)
    record = json.loads(result.stdout.splitlines()[-1])
    return record, result.stderr


def stage(record: dict[str, Any], name: str = "data") -> dict[str, Any]:
    return next(s for s in record["stages"] if s["name"] == name)


def test_learn_then_fail_warn_and_an_edited_contract(notebook: Path) -> None:
    contract_file = notebook.with_name("sales.contract.yaml")
    source = hashlib.sha256(notebook.read_bytes()).hexdigest()

    # 1. The first run learns the contract and writes it beside the notebook.
    record, stderr = run(notebook)
    assert record["status"] == "succeeded", stderr
    assert stage(record)["contract"]["status"] == "learned"
    assert "wrote the data contract sales.contract.yaml" in stderr
    document = yaml.safe_load(contract_file.read_text())
    df = document["stages"]["data"]["df"]
    assert df["schema"]["columns"]["colour"]["isin"] == ["blue", "green", "red"]
    assert df["schema"]["columns"]["when"]["dtype"].startswith("datetime64")
    assert record["contract"]["sha256"] == hashlib.sha256(contract_file.read_bytes()).hexdigest()

    # 2. Nothing changed: fully cached, and the cached record says the contract was met.
    record, _ = run(notebook)
    assert [s["status"] for s in record["stages"]] == ["cached", "cached"]
    assert stage(record)["contract"]["status"] == "passed"

    # 3. A dropped column and a new category fail the data stage, naming both; nothing trains.
    record, stderr = run(notebook, "-p", "mode", "broken")
    assert record["status"] == "failed"
    assert record["error"]["stage"] == "data" and record["error"]["ename"] == (
        "ContractViolationError"
    )
    report = stage(record)["contract"]
    broken = {(v["value"], v["column"], v["rule"]) for v in report["violations"]}
    assert broken == {("df", "count", "column_in_dataframe"), ("df", "colour", "isin")}
    purple = next(v for v in report["violations"] if v["rule"] == "isin")
    assert (purple["rows"], purple["examples"]) == (3, ["purple"])
    assert "'count' is missing" in record["error"]["evalue"]
    assert stage(record, "train")["status"] == "not-run"
    check = mlnb("contract", str(notebook), "--check")
    added = [line.split() for line in check.stdout.splitlines() if line.startswith("+")]
    assert check.returncode == 1 and ["+", "-", "purple"] in added, check.stdout

    # 4. A shifted range only warns (ranges are `warn` rules of a learned contract).
    record, stderr = run(notebook, "-p", "mode", "shifted")
    assert record["status"] == "succeeded", stderr
    assert stage(record)["contract"]["status"] == "warned"
    assert "'size' has 400 rows above" in stderr and "a `warn` rule" in stderr

    # 5. The owner makes ranges hard rules for df: the same run now fails, and says why the
    # data stage ran again.
    document["stages"]["data"]["df"]["warn"] = ["rows"]
    contract_file.write_text(yaml.safe_dump(document, sort_keys=False))
    record, _ = run(notebook, "-p", "mode", "shifted")
    assert record["status"] == "failed"
    assert "data contract sales.contract.yaml changed" in stage(record)["reason"]
    errors = [v for v in stage(record)["contract"]["violations"] if v["severity"] == "error"]
    (violation,) = errors
    assert (violation["column"], violation["rule"], violation["severity"]) == (
        "size",
        "less_than_or_equal_to",
        "error",
    )
    assert violation["value"] == "df"
    assert hashlib.sha256(notebook.read_bytes()).hexdigest() == source  # never written

    # 6. mlnb check reports the contract in its JUnit file.
    junit = notebook.with_name("junit.xml")
    checked = mlnb("check", str(notebook), "--junit", str(junit))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'name="contract data"' in junit.read_text()


def test_a_broken_contract_file_stops_the_run_before_the_kernel(
    notebook: Path, tmp_path: Path
) -> None:
    copy = tmp_path / notebook.name
    copy.write_bytes(notebook.read_bytes())
    copy.with_name("sales.contract.yaml").write_text("mlnb_contract: 1\nstages: [\n")
    result = mlnb("run", str(copy))
    assert result.returncode == 2
    assert "sales.contract.yaml is not valid YAML (line 3)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".mlnb" / "runs").exists() or not any(
        (tmp_path / ".mlnb" / "runs").iterdir()
    )
