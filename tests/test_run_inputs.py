"""What a run reads and writes (files, local modules), skipped cells, and Kale notebooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb.store import Store, sha256_file

from .conftest import NOTEBOOKS, code_cell, notebook_json

pytestmark = pytest.mark.slow


def run(notebook: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "run", str(notebook), "--json", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode in (0, 1), result.stderr
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def test_files_read_and_written_are_fingerprinted(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x\n1\n2\n3\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.txt").write_text("2")
    (tmp_path / "helpers.py").write_text(
        "def scale(values, k):\n    return [v * k for v in values]\n"
    )
    notebook = tmp_path / "files.ipynb"
    cells = [
        code_cell("import os\nimport pandas as pd"),
        code_cell("name = 'settings.txt'", ("parameters",)),
        code_cell(
            "frame = pd.read_csv('data.csv')\n"
            "with open(os.path.join('config', name)) as handle:  # a path built at run time\n"
            "    factor = int(handle.read())",
            ("mlnb:data",),
        ),
        code_cell("raise RuntimeError('a skipped cell ran')", ("mlnb:skip",)),
        code_cell(
            "import helpers\n"
            "scaled = helpers.scale(list(frame['x']), factor)\n"
            "pd.DataFrame({'y': scaled}).to_csv('predictions.csv', index=False)\n"
            "metrics = {'total': float(sum(scaled))}",
            ("mlnb:train",),
        ),
    ]
    notebook.write_text(json.dumps(notebook_json(cells)))

    first = run(notebook)
    assert first["status"] == "succeeded", first["error"]
    assert first["metrics"] == {"total": 12.0}
    inputs = {item["path"]: item["sha256"] for item in first["inputs"]}
    for name in ("data.csv", "config/settings.txt", "helpers.py"):
        assert inputs[str(tmp_path / name)] == sha256_file(tmp_path / name), name
    written = [a for a in first["artifacts"] if a["kind"] == "file"]
    assert written == [
        {
            "path": str(tmp_path / "predictions.csv"),
            "sha256": sha256_file(tmp_path / "predictions.csv"),
            "kind": "file",
            "stage": "train",
        }
    ]
    assert not any(".mlnb" in path for path in inputs)

    # A file seen only at run time changes: its stage and the stages after it run again.
    (tmp_path / "config" / "settings.txt").write_text("3")
    second = run(notebook)
    data, train = second["stages"]
    assert data["status"] == train["status"] == "ran"
    assert data["reason"] == f"config/settings.txt changed since run {first['run_id']}"
    assert train["reason"].startswith("stage 'data' runs again (config/settings.txt changed")
    assert second["metrics"] == {"total": 18.0}
    assert Store(tmp_path / ".mlnb").list_runs()[0]["run_id"] == second["run_id"]
    # The file the train stage writes is its output, not an input: nothing changed, no kernel.
    third = run(notebook)
    assert [s["status"] for s in third["stages"]] == ["cached", "cached"]

    # A local module the train stage imports is part of its key (no kernel needed to see it).
    (tmp_path / "helpers.py").write_text(
        "def scale(values, k):\n    return [k * v for v in values]\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    code = (
        "import sys; from mlnb.pipeline import load_pipeline; from mlnb.run.plan import make_plan;"
        "from mlnb.store import Store; p = load_pipeline(sys.argv[1]);"
        "plan = make_plan(p, p.parameter_defaults, {}, Store(sys.argv[2]));"
        "print([(s.name, s.action, s.reason) for s in plan.stages])"
    )
    planned = subprocess.run(
        [sys.executable, "-c", code, str(notebook), str(tmp_path / ".mlnb")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert "('data', 'cached'" in planned and "('train', 'run', 'helpers.py changed')" in planned


def test_a_kale_notebook_runs_its_steps(tmp_path: Path) -> None:
    notebook = tmp_path / "kale.ipynb"
    shutil.copyfile(NOTEBOOKS / "kale_pipeline.ipynb", notebook)
    record = run(notebook, "-p", "n_rows", "300")
    assert record["status"] == "succeeded", record["error"]
    assert [(s["name"], s["kind"], s["status"]) for s in record["stages"]] == [
        ("load_data", "step", "ran"),
        ("prepare", "step", "ran"),
        ("train", "step", "ran"),
    ]
    assert record["stages"][0]["outputs"]["raw"]["format"] == "npy"
    assert set(record["metrics"]) == {"accuracy"}  # from the pipeline-metrics cell
    assert record["parameters"] == {"n_rows": 300, "seed": 7}
    store = Store(tmp_path / ".mlnb")
    executed = json.loads((store.run_dir(record["run_id"]) / "notebook.ipynb").read_text())
    skipped = [c for c in executed["cells"] if "skip" in c["metadata"].get("tags", [])]
    assert skipped[0]["cell_type"] == "raw"
    injected = [
        c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert "n_rows = 300" in "".join(injected[0]["source"])
    again = run(notebook, "-p", "n_rows", "300")
    assert [s["status"] for s in again["stages"]] == ["cached"] * 3
    assert again["metrics"] == record["metrics"]
    forced = run(notebook, "-p", "n_rows", "300", "--no-cache")
    assert [(s["status"], s["reason"]) for s in forced["stages"]] == [("ran", "--no-cache")] * 3
    assert forced["no_cache"] is True and forced["metrics"] == record["metrics"]
