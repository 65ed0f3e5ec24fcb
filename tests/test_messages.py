"""Messages a user reads: the parameters cell's syntax error, a failing cell's own error name
and message (run, grid, panel, pipeline task), no traceback when piped into ``head``, and how
to tag an untagged notebook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlnb.cli.grid import point_failure
from mlnb.errors import CellRef, ParametersSyntaxError, StageTaskError
from mlnb.panel.state import error_text, run_command
from mlnb.parameters import read_parameters

from .conftest import NOTEBOOKS, code_cell, mlnb

RUNS = NOTEBOOKS / "runs"


def _env() -> dict[str, str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    return env


# --- the parameters cell ---


def test_a_syntax_error_in_the_parameters_cell_names_the_line() -> None:
    source = "alpha = 0.5\nbeta = (3,\nseed = 1"
    with pytest.raises(ParametersSyntaxError) as caught:
        read_parameters(source, cell=CellRef.of(2, source), notebook="nb.ipynb")
    text = str(caught.value)
    assert text.startswith("nb.ipynb: cell 3 ('alpha = 0.5'): line 2 ('beta = (3,')")  # 1-based
    assert "none of its parameters can be read" in text and "Fix:" in text
    assert read_parameters("alpha = 0.5  # choices: 0.5, 1")[0].choices == ("0.5", "1")


def test_run_with_a_broken_parameters_cell_says_so_not_no_parameter(write_notebook) -> None:
    path = write_notebook(
        [code_cell("a = 2\nb = (", ("parameters",)), code_cell("x = a", ("mlnb:data",))]
    )
    for command in (["inspect", str(path)], ["run", str(path), "-p", "a", "3"]):
        result = mlnb(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "line 2 ('b = (') is not valid Python" in result.stderr
        assert "no parameter" not in result.stderr and "no cell defines" not in result.stderr


# --- piping into head ---


@pytest.mark.parametrize(
    "command",
    [["inspect", "--json", str(NOTEBOOKS / "kale_pipeline.ipynb")], ["runs"]],
    ids=["inspect", "runs"],
)
def test_a_closed_pipe_ends_the_command_without_a_traceback(command, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (say `head`) has gone before mlnb writes
    try:
        result = subprocess.run(
            [sys.executable, "-m", "mlnb", *command, "--store", str(tmp_path / "store")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            env=_env(),
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


# --- an untagged notebook ---


def test_an_untagged_notebook_gets_the_two_ways_to_tag_it(write_notebook) -> None:
    path = write_notebook([code_cell("import math"), code_cell("x = math.pi")])
    result = mlnb("inspect", str(path))
    assert result.returncode == 0
    assert ": 0 stage(s)" in result.stdout
    assert "a cell tag mlnb:data, mlnb:train or mlnb:serve" in result.stdout
    assert "a first line %%mlnb data|train|serve" in result.stdout
    assert "the mlnb sidebar" in result.stdout
    payload = json.loads(mlnb("inspect", "--json", str(path)).stdout)
    assert payload["stages"] == [] and "mlnb:data" in payload["hints"][0]


# --- a failing cell's own error name and message ---


@pytest.mark.slow
def test_a_cell_failing_with_a_usage_error_shows_ipythons_message(tmp_path: Path) -> None:
    notebook = tmp_path / "usage_error.ipynb"
    shutil.copyfile(RUNS / "usage_error.ipynb", notebook)
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "run", str(notebook), "--json"],
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    assert result.returncode == 1
    record = json.loads(result.stdout)
    assert record["error"]["ename"] == "UsageError"
    assert record["error"]["evalue"] == "Cell magic `%%no_such_magic` not found."
    assert record["error"]["cell"] == record["error"]["cell_index"] == 3  # 0-based in JSON
    # what the panel shows for that run (it reads the --json record, not stderr)
    shown = error_text(result.stderr, result.stdout)
    assert shown.endswith(
        "failed in stage 'train', cell 4 ('%%no_such_magic'): "  # as JupyterLab counts
        "UsageError: Cell magic `%%no_such_magic` not found."
    )


def test_the_grid_and_the_panel_show_a_points_error() -> None:
    error = {"stage": "fit", "cell": 4, "first_line": "model.fit(X)", "ename": "ValueError"}
    error["evalue"] = "Input contains NaN"
    row = {"parameters": {"C": 0.1}, "status": "failed", "run_id": "r1", "error": error}
    assert point_failure(row) == (
        "point C=0.1: run r1 failed in stage 'fit', cell 5 ('model.fit(X)'): "
        "ValueError: Input contains NaN"
    )
    no_record = {"parameters": {"C": 1}, "status": "error", "error": "no parameter 'D'"}
    assert point_failure(no_record) == "point C=1: no parameter 'D'"
    assert error_text("mlnb: error: something", "") == "mlnb: error: something"
    assert run_command(Path("nb.ipynb"), "r2", [], None, "project-env").argv[-2:] == [
        "--kernel",
        "project-env",
    ]


@pytest.mark.slow
def test_a_pipeline_task_reports_the_cells_error(tmp_path: Path) -> None:
    from mlnb.export.kfp import notebook_text
    from mlnb.export.stage_runtime import run_stage

    magic = notebook_text(RUNS / "magic_cells.ipynb")  # %%mlnb cells, no %load_ext mlnb
    run_stage(magic, "load", {"scale": 1.0}, [], ["numbers"], str(tmp_path / "load"))
    assert (tmp_path / "load" / "values" / "numbers.joblib").exists()
    broken = notebook_text(RUNS / "usage_error.ipynb")
    with pytest.raises(StageTaskError) as caught:
        run_stage(broken, "train", {}, [], [], str(tmp_path / "train"))
    assert str(caught.value).startswith(
        "stage 'train': the cell starting '%%no_such_magic' failed: "
        "UsageError: Cell magic `%%no_such_magic` not found."
    )
    assert "Fix: read the executed notebook" in str(caught.value)
