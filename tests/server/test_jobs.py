"""The job runner with real child processes: results, errors, signals and shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import pytest

from mlnb.errors import JobConflictError, JobNotFoundError
from mlnb.server.jobs import JobManager

ERROR = {"error": "unknown-parameter", "message": "no parameter 'x'", "fix": "use seed"}


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run(coro):  # these tests need no server, only an event loop
    return asyncio.run(coro)


def test_a_job_keeps_the_json_result_and_the_log() -> None:
    async def go():
        jobs = JobManager()
        code = (
            "import sys, json; print('stage 1', file=sys.stderr); "
            "print(json.dumps({'bento': 'b:1'}))"
        )
        job = await jobs.start("build", "nb.ipynb", python(code), cwd=".", env=os.environ)
        assert job.running
        return (await jobs.wait(job.job_id)).to_json()

    job = run(go())
    assert job["status"] == "succeeded"
    assert job["result"] == {"bento": "b:1"}
    assert job["log"] == "stage 1"
    assert job["returncode"] == 0 and job["finished_at"]


def test_an_mlnb_error_printed_as_json_is_the_jobs_error() -> None:
    async def go():
        jobs = JobManager()
        code = f"import json, sys; print(json.dumps({ERROR!r})); sys.exit(2)"
        job = await jobs.start("run", "nb.ipynb", python(code), cwd=".", env=os.environ)
        return await jobs.wait(job.job_id)

    job = run(go())
    assert job.status == "failed"
    assert job.error == ERROR
    assert job.result is None


def test_a_crash_without_json_names_the_exit_and_the_last_log_line() -> None:
    async def go():
        jobs = JobManager()
        code = (
            "import os, sys; print('boom happened', file=sys.stderr); "
            "sys.stderr.flush(); os._exit(3)"
        )
        job = await jobs.start("build", "nb.ipynb", python(code), cwd=".", env=os.environ)
        return await jobs.wait(job.job_id)

    job = run(go())
    assert job.status == "failed"
    assert job.error is not None
    assert job.error["message"] == "`mlnb build` exited 3: boom happened"
    assert job.error["notebook"] == "nb.ipynb"


def test_one_job_per_notebook_and_kind_and_a_cap_on_all() -> None:
    async def go():
        jobs = JobManager(max_jobs=2)
        sleep = python("import time; time.sleep(30)")
        first = await jobs.start("run", "a.ipynb", sleep, cwd=".", env=os.environ, run_id="r1")
        with pytest.raises(JobConflictError, match="already going"):
            await jobs.start("run", "a.ipynb", sleep, cwd=".", env=os.environ)
        await jobs.start("build", "a.ipynb", sleep, cwd=".", env=os.environ)
        with pytest.raises(JobConflictError, match="2 mlnb jobs"):
            await jobs.start("run", "b.ipynb", sleep, cwd=".", env=os.environ)
        assert jobs.find("run", "r1") is first
        with pytest.raises(JobNotFoundError):
            jobs.get("nope")
        started = time.monotonic()
        await jobs.stop_all()
        return jobs, time.monotonic() - started

    jobs, seconds = run(go())
    assert jobs.running() == []
    assert seconds < 5  # SIGTERM was enough; no SIGKILL grace period spent


def test_stop_all_ends_the_whole_process_group(tmp_path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )

    async def go():
        jobs = JobManager()
        job = await jobs.start("run", "nb.ipynb", python(code), cwd=".", env=os.environ)
        for _ in range(100):
            if pid_file.exists() and pid_file.read_text():
                break
            await asyncio.sleep(0.05)
        await jobs.stop_all()
        return job

    job = run(go())
    assert job.status == "failed"
    assert job.error is not None and "signal 15" in job.error["message"]
    child = int(pid_file.read_text())
    for _ in range(100):  # the grandchild (a kernel, in real runs) is gone too
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"process {child} survived stop_all()")
    assert json.dumps(job.to_json())
