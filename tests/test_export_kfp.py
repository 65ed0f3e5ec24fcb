"""``mlnb export kfp``: a KFP v2 spec of the stage DAG, read back and run by kfp's local runner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import mlnb

from .conftest import EXAMPLES, NOTEBOOKS

pytest.importorskip("kfp")


def export(notebook: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", "export", "kfp", str(notebook), "-o", str(output), *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def dag_tasks(spec: dict) -> dict[str, dict]:
    return spec["root"]["dag"]["tasks"]


def test_example_exports_one_task_per_stage_with_dependencies(tmp_path: Path) -> None:
    from kfp import components

    output = tmp_path / "pipeline.yaml"
    result = export(EXAMPLES / "breast_cancer.ipynb", output)
    assert result.returncode == 0, result.stderr
    component = components.load_component_from_file(str(output))  # the kfp SDK reads it back
    assert component.name == "breast-cancer"
    spec = yaml.safe_load(output.read_text())
    tasks = dag_tasks(spec)
    assert set(tasks) == {"stage-load", "stage-fit", "stage-serve"}
    assert tasks["stage-fit"]["dependentTasks"] == ["stage-load"]
    assert sorted(tasks["stage-serve"]["dependentTasks"]) == ["stage-fit", "stage-load"]
    # stage outputs travel as artifacts, parameters as pipeline parameters
    fit_inputs = tasks["stage-fit"]["inputs"]
    assert (
        fit_inputs["artifacts"]["from_load"]["taskOutputArtifact"]["producerTask"] == "stage-load"
    )
    assert fit_inputs["parameters"]["C"]["componentInputParameter"] == "C"
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["C"]["defaultValue"] == 1.0 and defaults["seed"]["defaultValue"] == 42
    assert set(defaults) == {"test_size", "seed", "C", "max_iter"}
    executor = spec["deploymentSpec"]["executors"]["exec-stage-fit"]["container"]
    assert executor["image"] == "python:3.11"


def installed_by(spec: dict, task: str) -> list[str]:
    """The requirements a task's container pip-installs before it runs (before kfp's own)."""
    command = " ".join(spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]["command"])
    first = command.split("pip install", 1)[1].split("&&", 1)[0]
    return re.findall(r"'([^']+)'", first)


def test_the_train_task_outputs_metrics_and_a_model_kfp_shows(tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    assert export(EXAMPLES / "breast_cancer.ipynb", output).returncode == 0
    spec = yaml.safe_load(output.read_text())
    artifacts = {
        name: {k: v["artifactType"]["schemaTitle"] for k, v in artifacts.items()}
        for name, component in spec["components"].items()
        for artifacts in [component.get("outputDefinitions", {}).get("artifacts", {})]
    }
    assert artifacts["comp-stage-fit"] == {
        "outputs": "system.Artifact",
        "metrics": "system.Metrics",
        "model": "system.Model",
    }
    assert artifacts["comp-stage-load"] == {"outputs": "system.Artifact"}
    assert artifacts["comp-stage-serve"] == {"outputs": "system.Artifact"}


def test_tasks_install_mlnb_and_the_notebooks_packages_pinned(tmp_path: Path) -> None:
    output = tmp_path / "pipeline.yaml"
    assert export(EXAMPLES / "breast_cancer.ipynb", output).returncode == 0
    spec = yaml.safe_load(output.read_text())
    for task in ("stage-load", "stage-fit", "stage-serve"):
        pins = installed_by(spec, task)
        assert pins[0] == f"mlnb=={mlnb.__version__}", pins
        assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=]+", pin) for pin in pins), pins
        names = {pin.split("==")[0].lower() for pin in pins}
        # the notebook imports sklearn, pandas and numpy; stages run in papermill's kernel
        assert {"scikit-learn", "pandas", "numpy", "papermill", "ipykernel", "joblib"} <= names
    assert installed_by(spec, "stage-fit")[1:] == installed_by(spec, "stage-load")[1:]


def test_pins_prefer_the_versions_a_run_recorded() -> None:
    from mlnb.export.kfp import task_packages
    from mlnb.pipeline import load_pipeline

    pipeline = load_pipeline(EXAMPLES / "breast_cancer.ipynb")
    recorded = task_packages(pipeline, {"scikit_learn": "1.0.1", "polars": "9.9"})
    assert "scikit-learn==1.0.1" in recorded  # names compared as pip does
    assert not any(pin.startswith("polars") for pin in recorded)  # not imported: not pinned
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in task_packages(pipeline, {})


def test_pins_come_from_the_notebooks_last_successful_run(tmp_path: Path) -> None:
    """A store beside the notebook with a successful run (its record written through the
    store, versions other than the installed ones): the recorded versions are pinned."""
    from mlnb.store import Store

    notebook = tmp_path / "breast_cancer.ipynb"
    notebook.write_text((EXAMPLES / "breast_cancer.ipynb").read_text())
    with Store.for_notebook(notebook) as store:
        record = {
            "run_id": "20261202-000000-abcdef",
            "notebook": {"path": str(notebook), "sha256": "0" * 64},
            "status": "succeeded",
            "started_at": "2026-12-02T00:00:00Z",
            "environment": {"packages": {"scikit-learn": "1.3.2", "pandas": "2.1.0"}},
        }
        store.create_run(record)
    output = tmp_path / "pipeline.yaml"
    assert export(notebook, output).returncode == 0
    pins = installed_by(yaml.safe_load(output.read_text()), "stage-fit")
    assert "scikit-learn==1.3.2" in pins and "pandas==2.1.0" in pins, pins


def test_a_parameter_named_like_a_task_argument_is_refused(tmp_path: Path, write_notebook) -> None:
    from .conftest import code_cell

    notebook = write_notebook(
        [
            code_cell("model = 'forest'", tags=("parameters",)),
            code_cell("rows = [1, 2, 3]", tags=("mlnb:data",)),
            code_cell("fitted = sum(rows)", tags=("mlnb:train",)),
        ]
    )
    output = tmp_path / "p.yaml"
    result = export(notebook, output)
    assert result.returncode == 2, result.stderr
    assert "parameter 'model'" in result.stderr and "rename the parameter" in result.stderr
    assert not output.exists()


def test_kale_notebook_exports_its_steps(tmp_path: Path) -> None:
    output = tmp_path / "kale.yaml"
    assert export(NOTEBOOKS / "kale_pipeline.ipynb", output).returncode == 0
    tasks = dag_tasks(yaml.safe_load(output.read_text()))
    assert set(tasks) == {"stage-load-data", "stage-prepare", "stage-train"}
    assert tasks["stage-train"]["dependentTasks"] == ["stage-prepare"]


def test_a_broken_notebook_is_refused_and_nothing_written(tmp_path: Path) -> None:
    output = tmp_path / "p.yaml"
    result = export(NOTEBOOKS / "broken" / "stage-cycle.ipynb", output)
    assert result.returncode == 2 and "first -> second -> first" in result.stderr
    assert not output.exists()


@pytest.mark.slow
def test_exported_pipeline_runs_with_the_kfp_local_runner(tmp_path: Path) -> None:
    output = tmp_path / "kale.yaml"
    assert export(NOTEBOOKS / "kale_pipeline.ipynb", output, "--no-install").returncode == 0
    root = tmp_path / "root"
    script = textwrap.dedent(
        f"""
        from kfp import components, local
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(root)!r})
        components.load_component_from_file({str(output)!r})(n_rows=120)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = root.iterdir()
    load = run_dir / "stage-load-data" / "outputs" / "executed.ipynb"
    cells = json.loads(load.read_text())["cells"]
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert "n_rows = 120" in "".join(injected["source"])
    prepared = sorted(p.name for p in (run_dir / "stage-prepare" / "outputs" / "values").iterdir())
    assert prepared == ["features.joblib", "target.joblib"]
    trained = json.loads((run_dir / "stage-train" / "outputs" / "executed.ipynb").read_text())
    assert not any(o.get("output_type") == "error" for c in trained["cells"] for o in c["outputs"])
    # Kale's pipeline-metrics cell names accuracy: the step that defines it logs it to KFP
    executor = json.loads((run_dir / "stage-train" / "executor_output.json").read_text())
    (metrics,) = executor["artifacts"]["metrics"]["artifacts"]
    assert set(metrics["metadata"]) == {"accuracy"} and 0 <= metrics["metadata"]["accuracy"] <= 1
    assert "model" not in executor["artifacts"]  # a Kale step is not a train stage


@pytest.mark.slow
def test_the_local_runner_logs_the_train_metrics_and_publishes_the_model(tmp_path: Path) -> None:
    """What KFP's UI shows, as kfp's local runner records it: the train task's Metrics
    artifact holds the run's metrics, its Model artifact the fitted model and its metadata."""
    import joblib
    from sklearn.datasets import load_breast_cancer

    output = tmp_path / "pipeline.yaml"
    assert export(EXAMPLES / "breast_cancer.ipynb", output, "--no-install").returncode == 0
    root = tmp_path / "root"
    script = textwrap.dedent(
        f"""
        from kfp import components, local
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root={str(root)!r})
        components.load_component_from_file({str(output)!r})(C=0.5)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = root.iterdir()
    executor = json.loads((run_dir / "stage-fit" / "executor_output.json").read_text())
    (metrics,) = executor["artifacts"]["metrics"]["artifacts"]
    assert set(metrics["metadata"]) == {"accuracy", "roc_auc"}
    assert 0.9 < metrics["metadata"]["accuracy"] <= 1.0
    (model,) = executor["artifacts"]["model"]["artifacts"]
    import sklearn

    assert model["metadata"] == {
        "framework": "scikit-learn",
        "framework_version": sklearn.__version__,
        "class": "sklearn.pipeline.Pipeline",
        "variable": "model",
        "format": "joblib",
        "metrics": metrics["metadata"],
    }
    fitted = joblib.load(model["uri"])
    data = load_breast_cancer(as_frame=True).data
    assert len(fitted.predict(data.head(5))) == 5
    assert fitted.get_params()["logisticregression__C"] == 0.5  # the pipeline parameter
