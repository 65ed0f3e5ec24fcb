"""``mlnb export kfp``: a KFP v2 spec of the stage DAG, read back and run by kfp's local runner."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

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
    assert "mlnb==" in " ".join(executor["command"])  # tasks install this mlnb release


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
