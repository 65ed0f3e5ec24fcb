"""``mlnb check`` for CI and ``mlnb run --grid``: real runs of a tiny notebook."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from .conftest import NOTEBOOKS, mlnb

TINY = NOTEBOOKS / "tiny.ipynb"
FAILS = NOTEBOOKS / "tiny_fails.ipynb"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("check-store")


def cases(junit: Path) -> dict[str, ET.Element]:
    root = ET.parse(junit).getroot()
    return {f"{c.get('classname')}::{c.get('name')}": c for c in root.iter("testcase")}


def test_check_passes_and_writes_junit(store: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = mlnb(
        "check", str(TINY), "--store", str(store), "--min", "score=0.1", "--junit", str(junit)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
    found = cases(junit)
    assert found[f"{TINY}::run"].find("failure") is None
    assert found[f"{TINY}::metric score >= 0.1"].find("failure") is None


def test_check_fails_below_a_floor_from_the_cache(store: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    args = ["check", str(TINY), "--store", str(store), "--min", "score=0.5", "--junit", str(junit)]
    result = mlnb(*args)
    assert result.returncode == 1
    assert "score = 0.2 is below 0.5" in result.stdout
    failure = cases(junit)[f"{TINY}::metric score >= 0.5"].find("failure")
    assert failure is not None and "below 0.5" in (failure.get("message") or "")
    assert "2 stage(s) from cache" in junit.read_text()  # the second check reran nothing


def test_check_reports_a_failing_notebook(store: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = mlnb("check", str(TINY), str(FAILS), "--store", str(store), "--junit", str(junit))
    assert result.returncode == 1
    assert "1 passed, 1 failed" in result.stdout
    failure = cases(junit)[f"{FAILS}::run"].find("failure")
    assert failure is not None
    assert "stage 'train'" in (failure.text or "") and "ValueError" in (failure.text or "")


def test_check_refuses_a_metric_no_run_records(store: Path) -> None:
    result = mlnb("check", str(TINY), "--store", str(store), "--min", "acuracy=0.9")
    assert result.returncode == 2
    assert "no run records the metric(s) acuracy" in result.stderr


def test_grid_runs_every_point_as_a_recorded_run(store: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("scale: [1.0, 3.0]\nlabel: [small, large]\n")
    result = mlnb(
        "run", str(TINY), "--store", str(store), "--grid", str(grid), "--jobs", "2", "--json"
    )
    assert result.returncode == 0, result.stderr
    points = json.loads(result.stdout)
    assert len(points) == 4
    assert {(p["parameters"]["scale"], p["parameters"]["label"]) for p in points} == {
        (1.0, "small"),
        (1.0, "large"),
        (3.0, "small"),
        (3.0, "large"),
    }
    assert {p["status"] for p in points} == {"succeeded"}
    assert sorted(p["metrics"]["score"] for p in points) == [0.1, 0.1, 0.3, 0.3]
    # the data stage reads scale only: points that differ in label alone reuse it
    runs = json.loads(mlnb("runs", "--store", str(store), "--json").stdout)
    recorded = {r["run_id"] for r in runs}
    assert {p["run_id"] for p in points} <= recorded


def test_grid_table_and_bad_grid(store: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("scale: [1.0, 3.0]\n")
    table = mlnb("run", str(TINY), "--store", str(store), "--grid", str(grid))
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:3] == ["scale", "mean", "score"] and "status" in header
    grid.write_text("scael: [1.0]\n")
    bad = mlnb("run", str(TINY), "--store", str(store), "--grid", str(grid))
    assert bad.returncode == 2
    assert "scael is not a parameter of the notebook" in bad.stderr


def test_check_passes_parameters_to_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlnb check NB -p NAME VALUE` judges the run with that parameter (as retraining does)."""
    from mlnb.cli import check as check_cli
    from mlnb.cli import main

    seen: list[list[str]] = []

    def fake_run(notebook: str, options: list[str], store: object, no_cache: bool) -> tuple:
        seen.append(options)
        return {"run_id": "r", "status": "succeeded", "metrics": {"accuracy": 0.95}}, None

    monkeypatch.setattr(check_cli, "run_in_child", fake_run)
    code = main(["check", "a.ipynb", "b.ipynb", "-p", "data_path", "new.csv", "-p", "C", "0.5"])
    assert seen == [["-p", "data_path", "new.csv", "-p", "C", "0.5"]] * 2
    assert code == 0
