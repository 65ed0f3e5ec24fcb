"""Runs through the REST API with real kernels: start, poll live, list, fail, refuse a second."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import code_cell, notebook_json

from .test_routes import assert_error, call

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 180


async def wait_for_run(jp_fetch: Any, path: str, run_id: str) -> tuple[dict[str, Any], set[str]]:
    """Poll until the run ends; also return every status seen on the way."""
    seen: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status, record = await call(jp_fetch, f"runs/{run_id}", params={"path": path})
        assert status == 200, record
        seen.add(record["status"])
        if record["status"] in ("succeeded", "failed"):
            return record, seen
        await asyncio.sleep(0.3)
    pytest.fail(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")


async def wait_for_job(jp_fetch: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status, job = await call(jp_fetch, f"jobs/{job_id}")
        assert status == 200, job
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.3)
    pytest.fail(f"job {job_id} did not finish in {RUN_TIMEOUT_S} s")


async def test_a_run_polls_live_lands_in_the_history_and_builds(
    jp_fetch: Any, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    body = {"path": "breast_cancer.ipynb", "parameters": {"C": 0.5, "max_iter": 300}}
    status, started = await call(jp_fetch, "runs", method="POST", body=body)
    assert status == 202, started
    run_id = started["run_id"]

    # While it runs, the server answers other requests and refuses a second run of it.
    status, version = await call(jp_fetch, "version")
    assert status == 200 and version["api"] == 1
    status, conflict = await call(jp_fetch, "runs", method="POST", body=body)
    assert status == 409
    assert_error(conflict, 409, "job-conflict")
    assert run_id in conflict["message"]
    status, early = await call(jp_fetch, f"runs/{run_id}", params={"path": "breast_cancer.ipynb"})
    assert status == 200 and early["status"] in ("starting", "running")

    record, seen = await wait_for_run(jp_fetch, "breast_cancer.ipynb", run_id)
    assert record["status"] == "succeeded", record.get("error") or record.get("job")
    assert seen & {"starting", "running"}  # the poller saw it going before it finished
    assert record["parameters"]["C"] == 0.5 and isinstance(record["parameters"]["C"], float)
    assert record["parameters"]["max_iter"] == 300
    assert [(s["name"], s["status"]) for s in record["stages"]] == [
        ("load", "ran"),
        ("fit", "ran"),
        ("serve", "ran"),
    ]
    assert set(record["metrics"]) == {"accuracy", "roc_auc"}
    assert record["job"]["status"] == "succeeded"
    assert (root / ".mlnb" / "runs" / run_id / "run.json").is_file()

    status, listing = await call(jp_fetch, "runs", params={"path": "breast_cancer.ipynb"})
    assert status == 200
    assert listing["runs"][0]["run_id"] == run_id
    assert listing["runs"][0]["status"] == "succeeded"
    # Another notebook beside it shares the store but not the runs.
    status, other = await call(jp_fetch, "runs", params={"path": "diabetes.ipynb"})
    assert status == 200 and other["runs"] == []
    status, payload = await call(jp_fetch, f"runs/{run_id}", params={"path": "diabetes.ipynb"})
    assert status == 404
    assert_error(payload, 404, "run-not-found")

    # Build that run: a job whose result names the Bento, which the run's history then shows.
    body = {"path": "breast_cancer.ipynb", "run_id": run_id}
    status, job = await call(jp_fetch, "builds", method="POST", body=body)
    assert status == 202, job
    assert job["status"] == "running" and job["kind"] == "build"
    status, conflict = await call(jp_fetch, "builds", method="POST", body=body)
    assert status == 409
    assert_error(conflict, 409, "job-conflict")
    job = await wait_for_job(jp_fetch, job["job_id"])
    assert job["status"] == "succeeded", job["error"] or job["log"]
    bento = job["result"]["bento"]
    assert bento.startswith("breast_cancer:")
    assert job["result"]["run_id"] == run_id
    status, listing = await call(jp_fetch, "runs", params={"path": "breast_cancer.ipynb"})
    assert [b["bento"] for b in listing["runs"][0]["builds"]] == [bento]


async def test_a_failing_stage_is_reported_with_its_cell(jp_fetch: Any, root: Path) -> None:
    cells = [
        code_cell("n = 3", tags=("parameters",)),
        code_cell("rows = list(range(n))", tags=("mlnb:data",)),
        code_cell("total = sum(rows)\nraise ValueError('bad rows')", tags=("mlnb:train",)),
    ]
    (root / "fails.ipynb").write_text(json.dumps(notebook_json(cells)))
    status, started = await call(
        jp_fetch, "runs", method="POST", body={"path": "fails.ipynb", "parameters": {"n": 5}}
    )
    assert status == 202, started
    record, _ = await wait_for_run(jp_fetch, "fails.ipynb", started["run_id"])
    assert record["status"] == "failed"
    assert record["error"]["stage"] == "train"
    assert record["error"]["cell"] == 2
    assert record["error"]["ename"] == "ValueError"
    assert "bad rows" in record["error"]["evalue"]
    assert {s["name"]: s["status"] for s in record["stages"]} == {
        "data": "ran",
        "train": "failed",
    }
    assert record["job"]["status"] == "failed" and record["job"]["returncode"] == 1
