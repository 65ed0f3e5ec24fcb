"""The ``mlnb`` command as users run it: a subprocess."""

from __future__ import annotations

import json

import pytest

from .conftest import EXAMPLES, NOTEBOOKS, mlnb


def test_inspect_json_shape() -> None:
    result = mlnb("inspect", str(EXAMPLES / "breast_cancer.ipynb"), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["parameters"] == {"test_size": 0.25, "seed": 42, "C": 1.0, "max_iter": 500}
    assert [s["name"] for s in payload["stages"]] == ["load", "fit", "serve"]
    for stage in payload["stages"]:
        assert {"name", "kind", "cells", "defines", "uses", "depends_on"} <= set(stage)
    assert payload["stages"][1]["depends_on"] == ["load"]
    # 0-based indexes under explicit names, beside the old keys
    assert [s["cell_indexes"] for s in payload["stages"]] == [[4, 5], [7, 8], [10, 11]]
    assert all(s["cells"] == s["cell_indexes"] for s in payload["stages"])
    assert payload["parameters_cell_index"] == payload["parameters_cell"] == 2
    assert payload["setup_cell_indexes"] == payload["setup_cells"] == [1]
    assert payload["skipped_cell_indexes"] == payload["skipped_cells"] == []


def test_inspect_table_for_people() -> None:
    result = mlnb("inspect", str(EXAMPLES / "diabetes.ipynb"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "parameters (cell 3): n_estimators=60, max_depth=6, seed=0, test_size=0.2"
    assert lines[2].split() == ["#", "stage", "kind", "cells", "depends", "on", "defines"]
    # cells[4] is "cell 5", as JupyterLab's status bar counts (markdown cells included)
    assert lines[4].split()[:5] == ["2", "fit", "train", "5", "load"]


def test_kale_steps_have_kind_step() -> None:
    result = mlnb("inspect", str(NOTEBOOKS / "kale_pipeline.ipynb"), "--json")
    assert {s["kind"] for s in json.loads(result.stdout)["stages"]} == {"step"}


@pytest.mark.parametrize("json_flag", [False, True])
def test_errors_exit_2_without_traceback(json_flag: bool) -> None:
    path = NOTEBOOKS / "broken" / "unknown-tag.ipynb"
    result = mlnb("inspect", str(path), *(["--json"] if json_flag else []))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown tag 'mlnb:trian'" in result.stderr
    assert "Fix: use mlnb:data" in result.stderr
    if json_flag:
        assert json.loads(result.stdout)["error"] == "unknown-tag"


def test_debug_shows_the_traceback() -> None:
    result = mlnb("inspect", str(NOTEBOOKS / "broken" / "unknown-tag.ipynb"), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UnknownTagError" in result.stderr
