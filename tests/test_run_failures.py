"""Runs that fail: a cell raises, the kernel dies or is killed, Ctrl-C, an output that cannot
be saved. Each is recorded ``failed`` with the stage and cell, keeps the executed notebook,
exits non-zero without a traceback, and the next run reuses the stages that succeeded."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlnb.store import Store

from .conftest import NOTEBOOKS

pytestmark = pytest.mark.slow
RUNS = NOTEBOOKS / "runs"


def _env() -> dict[str, str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    return env


def mlnb_run(notebook: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mlnb", "run", str(notebook), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=_env())


def copy(name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copyfile(RUNS / name, target)
    return target


def wait_for(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def no_partial_files(store: Store) -> None:
    tmp = store.root / "objects" / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    assert [
        p for p in (store.root / "runs").rglob("*") if "partial" in p.name or p.suffix == ".tmp"
    ] == []


def cell_errors(store: Store, run_id: str, cell: int) -> list[dict[str, Any]]:
    executed = json.loads((store.run_dir(run_id) / "notebook.ipynb").read_text())
    found = [c for c in executed["cells"] if c["metadata"].get("mlnb_run", {}).get("cell") == cell]
    return [o for o in found[0]["outputs"] if o["output_type"] == "error"]


def test_a_cell_that_raises_then_a_fixed_rerun(tmp_path: Path) -> None:
    notebook = copy("raises.ipynb", tmp_path)
    store = Store(tmp_path / ".mlnb")
    result = mlnb_run(notebook)  # for people: progress and the error on stderr
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    # cells[5]: "cell 6", as JupyterLab's status bar counts it
    assert "failed in stage 'train', cell 6 ('if fail:'): ValueError: boom at 45" in result.stderr
    lines = [line.split()[:4] for line in result.stderr.splitlines() if line.startswith("  ")]
    assert lines == [
        ["✓", "data", "data", "ran"],
        ["✗", "train", "train", "failed"],
        ["·", "serve", "serve", "not"],
    ]
    (failed,) = store.list_runs()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "stage": "train",
        "cell": 5,
        "cell_index": 5,  # the explicit 0-based name beside the old key
        "ename": "ValueError",
        "evalue": "boom at 45",
        "first_line": "if fail:",
    }
    assert [s["status"] for s in failed["stages"]] == ["ran", "failed", "not-run"]
    assert cell_errors(store, failed["run_id"], 5)[0]["ename"] == "ValueError"
    no_partial_files(store)

    fixed = mlnb_run(notebook, "-p", "fail", "False", "--json")
    record = json.loads(fixed.stdout)
    assert fixed.returncode == 0 and record["status"] == "succeeded"
    assert [s["status"] for s in record["stages"]] == ["cached", "ran", "ran"]
    assert record["stages"][0]["from_run"] == failed["run_id"]
    assert record["metrics"] == {"total": 45.0}


def test_a_kernel_that_exits(tmp_path: Path) -> None:
    notebook = copy("dies.ipynb", tmp_path)
    result = mlnb_run(notebook, "--json")
    record = json.loads(result.stdout)
    assert result.returncode == 1 and record["status"] == "failed"
    error = record["error"]
    assert (error["stage"], error["cell"], error["ename"]) == ("train", 2, "DeadKernelError")
    assert "exited with code 3" in error["evalue"]
    assert [s["status"] for s in record["stages"]] == ["ran", "failed"]
    store = Store(tmp_path / ".mlnb")
    assert (store.run_dir(record["run_id"]) / "notebook.ipynb").exists()
    assert store.get_run(record["run_id"]) == record
    no_partial_files(store)


def test_an_output_that_cannot_be_saved_fails_its_stage(tmp_path: Path) -> None:
    notebook = copy("unsaveable.ipynb", tmp_path)
    result = mlnb_run(notebook)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "failed in stage 'data': UnsaveableOutputError" in result.stderr
    assert "'rows' (generator) cannot be saved (stage 'train' uses it)" in result.stderr
    (record,) = Store(tmp_path / ".mlnb").list_runs()
    assert record["error"]["stage"] == "data" and record["error"]["cell"] is None
    assert [s["status"] for s in record["stages"]] == ["failed", "not-run"]
    no_partial_files(Store(tmp_path / ".mlnb"))


def _start_sleeper(tmp_path: Path, run_id: str) -> tuple[subprocess.Popen[str], Store, int]:
    """Start a run whose train stage sleeps; return it once that stage shows as running."""
    notebook = copy("sleeps.ipynb", tmp_path)
    store = Store(tmp_path / ".mlnb")
    command = [sys.executable, "-m", "mlnb", "run", str(notebook), "--json", "--run-id", run_id]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    run_json = store.run_dir(run_id) / "run.json"

    def running() -> bool:
        if not run_json.exists():
            return False
        record = json.loads(run_json.read_text())  # written atomically: always whole
        assert record["status"] == "running"
        return any(s["name"] == "train" and s["status"] == "running" for s in record["stages"])

    wait_for(running)
    events = (store.run_dir(run_id) / "events.jsonl").read_text().splitlines()
    kernel_pid = json.loads(events[0])["pid"]
    return proc, store, kernel_pid


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_ctrl_c_interrupts_the_kernel_and_records_the_cell(tmp_path: Path) -> None:
    proc, store, kernel_pid = _start_sleeper(tmp_path, "interrupted")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err
    record = json.loads(out)
    assert record["status"] == "failed"
    error = record["error"]
    assert (error["stage"], error["cell"], error["ename"]) == ("train", 3, "KeyboardInterrupt")
    assert "SIGINT" in error["evalue"]
    assert [s["status"] for s in record["stages"]] == ["ran", "failed"]
    assert cell_errors(store, "interrupted", 3)[0]["ename"] == "KeyboardInterrupt"
    wait_for(lambda: _gone(kernel_pid), timeout=30)
    no_partial_files(store)


def test_a_killed_kernel(tmp_path: Path) -> None:
    proc, store, kernel_pid = _start_sleeper(tmp_path, "killed")
    os.kill(kernel_pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    record = json.loads(out)
    error = record["error"]
    assert (error["stage"], error["cell"], error["ename"]) == ("train", 3, "DeadKernelError")
    assert "killed by SIGKILL" in error["evalue"]
    assert (store.run_dir("killed") / "notebook.ipynb").exists()
    assert store.get_run("killed")["status"] == "failed"


def test_a_kernel_that_is_not_installed(tmp_path: Path) -> None:
    notebook = copy("dies.ipynb", tmp_path)
    document = json.loads(notebook.read_text())
    document["metadata"]["kernelspec"]["name"] = "no-such-kernel"
    notebook.write_text(json.dumps(document))
    result = mlnb_run(notebook)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "NoSuchKernel: no Jupyter kernel named 'no-such-kernel' is installed" in result.stderr
    assert "(installed: " in result.stderr and "python3" in result.stderr.split("(installed: ")[1]
