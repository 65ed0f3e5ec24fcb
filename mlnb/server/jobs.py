"""Background jobs: ``python -m mlnb run|build ...`` in asyncio subprocesses.

The server never runs a notebook or a build itself: a job is a child process whose stdout is
the CLI's ``--json`` answer and whose stderr is its progress. The event loop only awaits pipes,
so the server keeps answering while jobs go. No tornado here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlnb import bounded_json
from mlnb.errors import (
    InputLimitError,
    JobConflictError,
    JobFailedError,
    JobNotFoundError,
    error_response,
)
from mlnb.store import utc_now

LOG_LINES = 40
KEEP_FINISHED = 100
STOP_GRACE_S = 5.0


@dataclass
class Job:
    """One ``mlnb`` subprocess and what is known about it."""

    job_id: str
    kind: str  # "run" or "build"
    path: str  # the notebook, as the browser names it
    argv: list[str]
    run_id: str | None = None
    status: str = "running"  # running | succeeded | failed
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    returncode: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    log_lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "path": self.path,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "returncode": self.returncode,
            "result": self.result,
            "error": self.error,
            "log": self.log,
        }

    def finish(self, returncode: int, stdout: bytes) -> None:
        """Record the exit: the JSON the CLI printed is the result, or its error."""
        self.returncode = returncode
        self.finished_at = utc_now()
        payload = _json_object(stdout)
        if returncode == 0:
            self.status = "succeeded"
            self.result = payload
            return
        self.status = "failed"
        if payload is not None and "error" in payload and "message" in payload:
            self.error = payload  # an MlnbError's to_json(): exit code 2
            return
        self.result = payload  # e.g. the record of a failed run: exit code 1
        if payload is None:
            failed = JobFailedError(
                _exit_message(self.kind, returncode, self.log_lines),
                fix="read the log below; run the same command in a terminal to see more",
                notebook=self.path,
            )
            _, self.error = error_response(failed)


# What a run or build prints: its record (parameters and metrics included), within limits.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
MAX_OUTPUT_DEPTH = 200


def _json_object(stdout: bytes) -> dict[str, Any] | None:
    try:
        value = bounded_json.loads(
            stdout.decode("utf-8", "replace"),
            max_bytes=MAX_OUTPUT_BYTES,
            max_depth=MAX_OUTPUT_DEPTH,
            what="the output of the job",
        )
    except InputLimitError:
        return None
    return value if isinstance(value, dict) else None


def _exit_message(kind: str, returncode: int, log: Sequence[str]) -> str:
    how = f"was stopped by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    last = next((line for line in reversed(log) if line.strip()), "")
    return f"`mlnb {kind}` {how}" + (f": {last.strip()}" if last else "")


class JobManager:
    """Starts, watches and stops jobs; at most ``max_jobs`` at once, one per notebook and kind."""

    def __init__(self, max_jobs: int = 2) -> None:
        self.max_jobs = max_jobs
        self._jobs: dict[str, Job] = {}

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(
                f"no job {job_id!r}",
                fix="jobs are kept while the server runs; list runs with GET /mlnb/runs",
            )
        return job

    def find(self, kind: str, run_id: str) -> Job | None:
        return next((j for j in self._jobs.values() if j.kind == kind and j.run_id == run_id), None)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.running]

    def check_can_start(self, kind: str, path: str) -> None:
        for job in self.running():
            if job.kind == kind and job.path == path:
                what = f"run {job.run_id}" if kind == "run" else f"build job {job.job_id}"
                raise JobConflictError(
                    f"a {kind} of this notebook is already going ({what})",
                    fix=f"wait for it to finish, then start another {kind}",
                    notebook=path,
                )
        if len(self.running()) >= self.max_jobs:
            raise JobConflictError(
                f"{self.max_jobs} mlnb jobs are already going on this server",
                fix="wait for one to finish (or raise MlnbExtension.max_jobs)",
                notebook=path,
            )

    async def start(
        self,
        kind: str,
        path: str,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        run_id: str | None = None,
    ) -> Job:
        self.check_can_start(kind, path)
        job = Job(secrets.token_hex(8), kind, path, list(argv), run_id=run_id)
        self._jobs[job.job_id] = job  # before the first await, so a second request sees it
        try:
            job.process = await asyncio.create_subprocess_exec(
                *job.argv,
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: stop_all() ends kernels too
            )
        except BaseException:
            del self._jobs[job.job_id]
            raise
        job.task = asyncio.create_task(self._watch(job))
        self._prune()
        return job

    async def _watch(self, job: Job) -> None:
        process = job.process
        assert process is not None and process.stdout is not None and process.stderr is not None

        async def read_log() -> None:
            assert process.stderr is not None
            async for raw in process.stderr:
                job.log_lines.append(raw.decode("utf-8", "replace").rstrip())

        stdout, _ = await asyncio.gather(process.stdout.read(), read_log())
        job.finish(await process.wait(), stdout)

    async def wait(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.task is not None:
            await asyncio.shield(job.task)
        return job

    async def settle(self, job_id: str, timeout: float) -> Job:
        """Wait up to ``timeout`` seconds for a job to end; return it either way."""
        job = self.get(job_id)
        if job.task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.task), timeout)
        return job

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if not j.running]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.job_id]

    async def stop_all(self) -> None:
        """End every running job's process group: SIGTERM, then SIGKILL after a grace period."""
        running = [j for j in self.running() if j.process is not None]
        for job in running:
            _signal_group(job, signal.SIGTERM)
        for job in running:
            assert job.task is not None
            try:
                await asyncio.wait_for(asyncio.shield(job.task), STOP_GRACE_S)
            except asyncio.TimeoutError:
                _signal_group(job, signal.SIGKILL)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(job.task, STOP_GRACE_S)


def _signal_group(job: Job, sig: signal.Signals) -> None:
    assert job.process is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.process.pid, sig)
