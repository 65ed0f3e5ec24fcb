"""``mlnb run`` and ``mlnb runs`` as users run them, with real kernels, on the examples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb.store import Store

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow


def mlnb(*args: str, cwd: Path | None = None, extra: list[str] | None = None):
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    return subprocess.run(
        [sys.executable, *(extra or []), "-m", "mlnb", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
    )


def run_json(*args: str, extra: list[str] | None = None) -> tuple[dict[str, Any], Any]:
    result = mlnb("run", *args, "--json", extra=extra)
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr  # one JSON object
    return json.loads(result.stdout), result


@pytest.fixture(scope="module")
def breast(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One cold run, one run with nothing changed, one with a new train parameter."""
    folder = tmp_path_factory.mktemp("breast")
    notebook = folder / "breast_cancer.ipynb"
    shutil.copyfile(EXAMPLES / "breast_cancer.ipynb", notebook)
    contract = "breast_cancer.contract.yaml"  # committed beside the notebook, as users do
    shutil.copyfile(EXAMPLES / contract, folder / contract)
    source = notebook.read_bytes()
    cold, cold_result = run_json(str(notebook))
    again, again_result = run_json(str(notebook), extra=["-X", "importtime"])
    changed, _ = run_json(str(notebook), "-p", "C", "2.0", "--run-id", "with-C-2")
    return {
        "notebook": notebook,
        "store": Store(folder / ".mlnb"),
        "source": source,
        "cold": cold,
        "cold_result": cold_result,
        "again": again,
        "again_result": again_result,
        "changed": changed,
    }


def test_cold_run_records_everything(breast: dict[str, Any]) -> None:
    record, result = breast["cold"], breast["cold_result"]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --json: nothing but the JSON
    assert breast["notebook"].read_bytes() == breast["source"]  # the source is never written
    assert record["status"] == "succeeded" and record["error"] is None
    assert record["notebook"]["path"] == str(breast["notebook"])
    assert [(s["name"], s["kind"], s["status"]) for s in record["stages"]] == [
        ("load", "data", "ran"),
        ("fit", "train", "ran"),
        ("serve", "serve", "ran"),
    ]
    assert all(s["reason"] == "no cached result" and s["cache_key"] for s in record["stages"])
    assert set(record["stages"][0]["outputs"]) == {"X_train", "X_test", "y_train", "y_test"}
    assert record["stages"][0]["outputs"]["X_train"]["format"] == "parquet"
    assert record["parameters"] == {"test_size": 0.25, "seed": 42, "C": 1.0, "max_iter": 500}
    assert set(record["metrics"]) == {"accuracy", "roc_auc"} and record["metrics"]["roc_auc"] > 0.9
    model = record["model"]
    assert model["variable"] == "model" and model["stage"] == "fit"
    assert model["class"] == "sklearn.pipeline.Pipeline" and model["format"] == "joblib"
    store: Store = breast["store"]
    assert store.object_path(model["sha256"]) == store.resolve(model["path"])
    import joblib

    fitted = joblib.load(store.resolve(model["path"]))
    training = record["training_data"]
    assert training["variable"] == "X_train" and training["holdout"]["variable"] == "X_test"
    assert training["columns"] == list(fitted.feature_names_in_)
    assert set(training["dtypes"].values()) == {"float64"}
    spec = training["profile"]["mean radius"]
    assert spec["kind"] == "numeric" and len(spec["quantiles"]) == 11
    assert sum(spec["histogram"]["counts"]) == training["rows"] == 426
    import pandas as pd

    sample = pd.read_parquet(store.resolve(training["sample"]["path"]))
    assert list(sample.columns) == training["columns"] and len(sample) == 426
    env = record["environment"]
    assert {"numpy", "pandas", "scikit-learn"} <= set(env["packages"])
    assert (
        env["python"]
        == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    )
    assert record["git"] is None  # a temporary folder is no repository
    kinds = {a["kind"] for a in record["artifacts"]}
    assert {"model", "training sample", "training holdout"} <= kinds
    assert record["started_at"] < record["finished_at"]


def test_executed_notebook_and_index(breast: dict[str, Any]) -> None:
    store: Store = breast["store"]
    record = breast["cold"]
    on_disk = json.loads((store.run_dir(record["run_id"]) / "run.json").read_text())
    assert on_disk == record
    executed = json.loads((store.run_dir(record["run_id"]) / "notebook.ipynb").read_text())
    injected = [c for c in executed["cells"] if "mlnb-injected" in c["metadata"].get("tags", [])]
    roles = [
        (c["metadata"]["mlnb_run"]["injected"], c["metadata"]["mlnb_run"]["stage"])
        for c in injected
    ]
    assert roles == [
        ("start", None),
        *[(role, stage) for stage in ("load", "fit", "serve") for role in ("begin", "end")],
        ("finish", None),
    ]
    assert all(o["output_type"] != "error" for c in injected for o in c["outputs"])
    outputs = [c for c in executed["cells"] if c["metadata"].get("mlnb_run", {}).get("cell") == 11]
    assert "benign_probability" in json.dumps(outputs[0]["outputs"])
    assert store.latest_successful(breast["notebook"])["run_id"] == breast["changed"]["run_id"]


def test_no_change_rerun_starts_no_kernel(breast: dict[str, Any]) -> None:
    record, result = breast["again"], breast["again_result"]
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert not imported & {"papermill", "nbformat", "jupyter_client", "nbclient", "pandas"}
    assert [s["status"] for s in record["stages"]] == ["cached"] * 3
    assert {s["from_run"] for s in record["stages"]} == {breast["cold"]["run_id"]}
    assert record["metrics"] == breast["cold"]["metrics"]
    assert record["model"] == breast["cold"]["model"]
    assert record["training_data"] == breast["cold"]["training_data"]
    assert record["environment"] == breast["cold"]["environment"]
    run_dir = breast["store"].run_dir(record["run_id"])
    assert (run_dir / "notebook.ipynb").read_bytes() == (
        breast["store"].run_dir(breast["cold"]["run_id"]) / "notebook.ipynb"
    ).read_bytes()


def test_progress_on_a_terminal(breast: dict[str, Any], tmp_path: Path) -> None:
    import pty

    store = tmp_path / "store"  # a copy, so the other tests see their runs only
    shutil.copytree(breast["store"].root, store)

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("NO_COLOR", None)
    command = [sys.executable, "-m", "mlnb", "run", str(breast["notebook"]), "--store", str(store)]
    chunks: list[bytes] = []

    def read(fd: int) -> bytes:
        data = os.read(fd, 4096)
        chunks.append(data)
        return data

    old = os.environ.copy()
    try:
        os.environ.update(env)
        status = pty.spawn(command, read)
    finally:
        os.environ.clear()
        os.environ.update(old)
    text = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert "\x1b[2m  ○ load" in text  # a coloured line per stage
    assert "3 cached" in text and "metrics: accuracy=" in text


def test_a_train_parameter_reruns_train_and_its_dependents_only(breast: dict[str, Any]) -> None:
    record = breast["changed"]
    assert record["run_id"] == "with-C-2"
    assert record["given_parameters"] == {"C": 2.0} and record["parameters"]["C"] == 2.0
    status = {s["name"]: s for s in record["stages"]}
    assert status["load"]["status"] == "cached"
    assert status["load"]["cache_key"] == breast["cold"]["stages"][0]["cache_key"]
    assert status["fit"]["status"] == "ran" and status["serve"]["status"] == "ran"
    assert status["fit"]["reason"] == "parameter C changed (1.0 -> 2.0)"
    assert status["serve"]["reason"] == "stage 'fit' changed"
    assert status["load"]["loaded"] == ["X_test", "X_train", "y_test", "y_train"]
    assert record["model"]["sha256"] != breast["cold"]["model"]["sha256"]
    assert record["training_data"]["columns"] == breast["cold"]["training_data"]["columns"]


def test_runs_list_show_and_diff(breast: dict[str, Any]) -> None:
    store = str(breast["store"].root)
    listed = mlnb("runs", "--json", "--store", store)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    ids = [breast[k]["run_id"] for k in ("changed", "again", "cold")]
    assert [r["run_id"] for r in runs] == ids  # newest first
    for run in runs:
        assert {
            "run_id",
            "status",
            "notebook",
            "parameters",
            "stages",
            "metrics",
            "started_at",
            "builds",
        } <= set(run)
        assert "profile" not in (run["training_data"] or {})
    by_notebook = mlnb("runs", "--json", "--notebook", str(breast["notebook"]))
    assert [r["run_id"] for r in json.loads(by_notebook.stdout)] == ids

    table = mlnb("runs", "--store", store)
    assert "with-C-2" in table.stdout and "load:cached fit:ran serve:ran" in table.stdout

    shown = mlnb("runs", "show", "with-C-2", "--store", store)
    assert shown.returncode == 0 and "parameter C changed (1.0 -> 2.0)" in shown.stdout
    shown_json = json.loads(mlnb("runs", "--store", store, "show", "with-C-2", "--json").stdout)
    assert shown_json == breast["store"].get_run("with-C-2")

    diff = mlnb("runs", "diff", breast["cold"]["run_id"], "with-C-2", "--store", store, "--json")
    payload = json.loads(diff.stdout)
    assert payload["parameters"] == {"C": {"a": 1.0, "b": 2.0}}
    assert set(payload["stages"]) == {"load", "fit", "serve"}
    assert not payload["stages"]["load"]["key_changed"] and payload["stages"]["fit"]["key_changed"]
    assert set(payload["metrics"]) == {"accuracy", "roc_auc"}
    text = mlnb("runs", "diff", breast["cold"]["run_id"], "with-C-2", "--store", store).stdout
    assert "parameter C: 1.0 -> 2.0" in text

    missing = mlnb("runs", "show", "no-such-run", "--store", store)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no run 'no-such-run'" in missing.stderr


def test_usage_errors_exit_2_before_any_run(breast: dict[str, Any], tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    bad = mlnb("run", str(breast["notebook"]), "-p", "nope", "1", "--store", store)
    assert bad.returncode == 2 and "no parameter 'nope'" in bad.stderr
    taken = mlnb("run", str(breast["notebook"]), "--run-id", "with-C-2", "--json")
    assert taken.returncode == 2 and json.loads(taken.stdout)["error"] == "bad-run-id"
    assert not Path(store).exists()


def test_two_runs_at_once_on_one_store(tmp_path: Path) -> None:
    """The magics example, twice at the same time on one store: both recorded, nothing lost."""
    notebook = tmp_path / "diabetes.ipynb"
    shutil.copyfile(EXAMPLES / "diabetes.ipynb", notebook)
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    command = [sys.executable, "-m", "mlnb", "run", str(notebook), "--json"]
    procs = [
        subprocess.Popen([*command, "-p", "n_estimators", n], stdout=subprocess.PIPE, env=env)
        for n in ("20", "30")
    ]
    records = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(r["status"] == "succeeded" for r in records)
    assert {r["metrics"]["r2"] for r in records} != {records[0]["metrics"]["r2"]}
    store = Store(tmp_path / ".mlnb")
    assert {r["run_id"] for r in store.list_runs()} == {r["run_id"] for r in records}
    for record in records:
        assert store.get_run(record["run_id"]) == record
        model = store.resolve(record["model"]["path"])
        assert model.exists() and record["model"]["class"].endswith("RandomForestRegressor")
    again = run_json(str(notebook), "-p", "n_estimators", "30")[0]
    assert [s["status"] for s in again["stages"]] == ["cached"] * 3
    assert list((store.root / "objects" / "tmp").iterdir()) == []
