"""What the REST API does, without tornado: inspect, runs, builds and jobs for one server root.

Reading a notebook's pipeline happens here (in a worker thread); runs and builds are handed
to ``python -m mlnb run|build`` subprocesses (see :mod:`mlnb.server.jobs`), runs are listed by
``python -m mlnb runs --json``, and a run's live progress is read from its ``run.json``
through :mod:`mlnb.store`. Every failure is an :class:`~mlnb.errors.MlnbError` with a 4xx
status unless the fault is the server's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb import __version__, child_process, run_arguments
from mlnb.errors import (
    BadRequestError,
    InputLimitError,
    JobNotFoundError,
    MlnbError,
    RunNotFoundError,
    StoreError,
)
from mlnb.inspection import notes_for, pipeline_json
from mlnb.kale import is_kale_notebook, kale_layout
from mlnb.layout import mlnb_layout
from mlnb.notebook import NotebookFile, parse_notebook, read_notebook
from mlnb.pipeline import Pipeline, pipeline_from_notebook
from mlnb.run_arguments import typed_value as typed_value  # re-exported: tests import it here
from mlnb.server.jobs import JobManager
from mlnb.server.paths import file_in_store, lab_path, resolve_notebook
from mlnb.store import RUN_ID_PATTERN, Store, new_run_id

API_VERSION = 1
LIST_TIMEOUT_S = 60.0
FINISH_GRACE_S = 5.0
_JOB_ID = re.compile(r"^[0-9a-f]{1,64}$")
_NOT_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class MlnbService:
    """The API of one Jupyter server: notebook paths are relative to ``root``."""

    def __init__(
        self,
        root: str | Path,
        *,
        store: str | None = None,
        python: str = sys.executable,
        max_jobs: int = 2,
        allow_hidden: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.store = store or None
        self.python = python
        self.jobs = JobManager(max_jobs)
        self.allow_hidden = allow_hidden  # ContentsManager.allow_hidden: may Lab open .mlnb/?

    # --- version and inspect ---

    def version(self) -> dict[str, Any]:
        return {"version": __version__, "api": API_VERSION}

    def resolve(self, api_path: object) -> tuple[Path, str]:
        """The absolute path and the checked name of a notebook the browser names."""
        return resolve_notebook(self.root, api_path), str(api_path)

    async def inspect(self, api_path: object) -> dict[str, Any]:
        """``mlnb inspect --json`` of the notebook on disk."""
        path, name = self.resolve(api_path)
        return await asyncio.to_thread(_inspect_file, path, name)

    async def inspect_content(self, api_path: object, document: object) -> dict[str, Any]:
        """The same for a notebook's unsaved content (the JSON of the open document)."""
        _, name = self.resolve(api_path)
        return await asyncio.to_thread(_inspect_document, document, name)

    # --- runs ---

    async def start_run(
        self, api_path: object, parameters: object, kernel: object = None
    ) -> dict[str, Any]:
        """Start ``mlnb run``; ``kernel`` names a Jupyter kernelspec (default: the notebook's)."""
        path, name = self.resolve(api_path)
        pipeline = await asyncio.to_thread(_load, path, name)
        cli_parameters = parameter_arguments(pipeline, parameters)
        kernel_arguments = await asyncio.to_thread(kernel_argument, kernel, name)
        run_id = new_run_id()
        words = ["run", str(path), "--json", "--run-id", run_id]
        words += cli_parameters + kernel_arguments + self._store_arguments()
        job = await self.jobs.start(
            "run",
            name,
            child_process.command(words, self.python),
            cwd=str(path.parent),
            env=child_process.environment(path.parent),
            run_id=run_id,
        )
        return {"run_id": run_id, "job_id": job.job_id, "status": "starting"}

    async def list_runs(self, api_path: object) -> dict[str, Any]:
        path, name = self.resolve(api_path)
        words = ["runs", "--json", "--notebook", str(path)]
        payload = await self._cli_json(words + self._store_arguments(), cwd=path.parent)
        if not isinstance(payload, list):
            raise StoreError("`mlnb runs --json` did not print a list", notebook=name)
        store = Store.for_notebook(path, self.store).root
        return {"runs": [self._with_lab_paths(r, store) for r in payload if isinstance(r, dict)]}

    async def get_run(self, api_path: object, run_id: str) -> dict[str, Any]:
        """The run's record as it stands (live while it runs), merged with its job's state."""
        if not RUN_ID_PATTERN.match(run_id):
            raise BadRequestError(
                f"{run_id!r} is not a run id", fix="use an id from GET /mlnb/runs"
            )
        path, name = self.resolve(api_path)
        job = self.jobs.find("run", run_id)
        if job is not None and job.path != name:
            job = None  # a run of another notebook
        try:
            record = await asyncio.to_thread(_read_run, path, self.store, run_id)
        except RunNotFoundError as error:
            if job is None:
                error.notebook = name
                raise
            record = {"run_id": run_id, "status": "starting", "stages": [], "metrics": {}}
        if job is not None:
            if job.running and record.get("status") in ("succeeded", "failed"):
                await self.jobs.settle(job.job_id, FINISH_GRACE_S)  # the process is exiting
            if not job.running and record.get("status") in ("starting", "running"):
                record = _failed_by_job(record, job.error, job.returncode, job.log)
            record["job"] = {"status": job.status, "returncode": job.returncode, "log": job.log}
        return self._with_lab_paths(record, Store.for_notebook(path, self.store).root)

    def _with_lab_paths(self, record: dict[str, Any], store: Path) -> dict[str, Any]:
        """The record with ``executed_notebook_path``: the executed notebook as JupyterLab
        names it when the Contents API can open it, else None (download it from
        ``/mlnb/runs/ID/notebook``)."""
        found: str | None = None
        relative = record.get("executed_notebook")
        if isinstance(relative, str):
            try:
                found = lab_path(
                    self.root, file_in_store(store, relative), allow_hidden=self.allow_hidden
                )
            except MlnbError:
                found = None
        return {**record, "executed_notebook_path": found}

    # --- what a run left: its report and its executed notebook ---

    async def run_report(self, api_path: object, run_id: str) -> str:
        """The run's HTML report, rendered by ``mlnb report`` in a subprocess (the model's
        global importance is computed there, never in the server)."""
        path, _ = self._run_path(api_path, run_id)
        if await asyncio.to_thread(_executed_notebook, path, self.store, run_id) is None:
            raise RunNotFoundError(
                f"run {run_id!r} left no executed notebook (its kernel never started), so it "
                "has no report",
                fix=f"read its record with `mlnb runs show {run_id}`; run the notebook again",
            )
        store = Store.for_notebook(path, self.store).root
        with tempfile.TemporaryDirectory(prefix="mlnb-report-") as folder:
            output = Path(folder) / "report.html"
            words = ["report", run_id, "--json", "-o", str(output)]
            await self._cli_json([*words, "--store", str(store)], cwd=path.parent)
            return await asyncio.to_thread(output.read_text, encoding="utf-8")

    async def executed_notebook(self, api_path: object, run_id: str) -> tuple[bytes, str]:
        """The executed notebook's bytes and a file name for the download
        (``NOTEBOOK-RUN_ID.ipynb``)."""
        path, _ = self._run_path(api_path, run_id)
        executed = await asyncio.to_thread(_executed_notebook, path, self.store, run_id)
        if executed is None:
            raise RunNotFoundError(
                f"run {run_id!r} left no executed notebook (its kernel never started)",
                fix="run the notebook again; the run's error says why it stopped",
            )
        stem = _NOT_IN_FILENAME.sub("_", path.stem)
        return await asyncio.to_thread(executed.read_bytes), f"{stem}-{run_id}.ipynb"

    # --- global importance of a run's model ---

    async def get_importance(self, api_path: object, run_id: str) -> dict[str, Any]:
        """The run's global importance when computed before (a JSON read from the store's
        cache), else ``status: "not-computed"``."""
        path, _ = self._run_path(api_path, run_id)
        found = await asyncio.to_thread(_cached_importance, path, self.store, run_id)
        if found is None:
            return {"run_id": run_id, "status": "not-computed", "importance": None}
        return {"run_id": run_id, "status": "computed", "importance": found}

    async def compute_importance(self, api_path: object, run_id: str) -> dict[str, Any]:
        """Compute it (``mlnb report RUN --json --no-html`` in a subprocess: the model is
        loaded and scored there, never in the server) and cache it in the store."""
        path, name = self._run_path(api_path, run_id)
        record = await asyncio.to_thread(_read_run, path, self.store, run_id)
        store = Store.for_notebook(path, self.store).root
        words = ["report", run_id, "--json", "--no-html"]
        payload = await self._cli_json([*words, "--store", str(store)], cwd=path.parent)
        importance = payload.get("importance") if isinstance(payload, dict) else None
        if not isinstance(importance, dict):
            raise StoreError("`mlnb report --json` printed no importance", notebook=name)
        return {"run_id": record["run_id"], "status": "computed", "importance": importance}

    def _run_path(self, api_path: object, run_id: str) -> tuple[Path, str]:
        if not RUN_ID_PATTERN.match(run_id):
            raise BadRequestError(
                f"{run_id!r} is not a run id", fix="use an id from GET /mlnb/runs"
            )
        return self.resolve(api_path)

    # --- builds and jobs ---

    async def start_build(self, api_path: object, run_id: object = None) -> dict[str, Any]:
        path, name = self.resolve(api_path)
        words = ["build", str(path), "--json"]
        if run_id is not None:
            if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
                raise BadRequestError(
                    f"{run_id!r} is not a run id", fix="use an id from GET /mlnb/runs"
                )
            words += ["--run", run_id]
        await asyncio.to_thread(_load, path, name)
        job = await self.jobs.start(
            "build",
            name,
            child_process.command(words + self._store_arguments(), self.python),
            cwd=str(path.parent),
            env=child_process.environment(path.parent),
            run_id=run_id,
        )
        return job.to_json()

    def get_job(self, job_id: str) -> dict[str, Any]:
        if not _JOB_ID.match(job_id):
            raise JobNotFoundError(f"no job {job_id!r}", fix="use the job_id POST returned")
        return self.jobs.get(job_id).to_json()

    async def shutdown(self) -> None:
        await self.jobs.stop_all()

    # --- helpers ---

    def _store_arguments(self) -> list[str]:
        return ["--store", self.store] if self.store else []

    async def _cli_json(self, words: list[str], cwd: Path) -> Any:
        """Run a short ``mlnb WORDS`` command and return the JSON it printed (or raise its
        error)."""
        try:
            finished = await child_process.run_async(
                words, timeout=LIST_TIMEOUT_S, cwd=cwd, python=self.python
            )
        except TimeoutError as error:
            raise StoreError(str(error)) from None
        try:
            payload = finished.json()
        except InputLimitError as error:
            if finished.returncode == 0:
                raise StoreError(error.message, fix=error.fix) from None
            payload = None
        if finished.returncode == 0:
            return payload
        if isinstance(payload, dict) and "message" in payload:
            raise StoreError(str(payload["message"]), fix=payload.get("fix"))
        message = finished.stderr.strip().splitlines()
        raise StoreError(
            f"`{child_process.named(words)}` exited {finished.returncode}"
            + (f": {message[-1]}" if message else ""),
        )


# --- pure helpers (run in worker threads) ---


def _rename(error: MlnbError, api_path: str) -> MlnbError:
    error.notebook = api_path  # never show the server's absolute paths
    return error


def _read(path: Path, api_path: str) -> NotebookFile:
    try:
        return dataclasses.replace(read_notebook(path), path=api_path)
    except MlnbError as error:
        raise _rename(error, api_path) from None


def _load(path: Path, api_path: str) -> Pipeline:
    return _pipeline(_read(path, api_path))


def _pipeline(notebook: NotebookFile) -> Pipeline:
    try:
        return pipeline_from_notebook(notebook)
    except MlnbError as error:
        error.details = {"stages": draft_stages(notebook)}
        raise


def _inspect_file(path: Path, api_path: str) -> dict[str, Any]:
    return _inspect_json(_read(path, api_path))


def _inspect_json(notebook: NotebookFile) -> dict[str, Any]:
    """What ``mlnb inspect --json`` prints: the pipeline, with the hints for people."""
    pipeline = _pipeline(notebook)
    return pipeline_json(pipeline, notes_for(pipeline, notebook))


def _inspect_document(document: object, api_path: str) -> dict[str, Any]:
    try:
        notebook = parse_notebook(document, api_path)
    except MlnbError as error:
        raise _rename(error, api_path) from None
    return _inspect_json(notebook)


def draft_stages(notebook: NotebookFile) -> list[dict[str, Any]]:
    """The stages as grouped before analysis, so the sidebar can place an error beside one."""
    try:
        layout = kale_layout(notebook) if is_kale_notebook(notebook) else mlnb_layout(notebook)
    except MlnbError:
        return []
    return [
        {"name": d.name, "kind": d.kind, "cells": list(d.cells), "cell_indexes": list(d.cells)}
        for d in layout.stages
    ]


def _read_run(path: Path, store: str | None, run_id: str) -> dict[str, Any]:
    runs = Store.for_notebook(path, store)
    try:
        record = runs.get_run(run_id)
    finally:
        runs.close()
    notebook = record.get("notebook")
    if isinstance(notebook, Mapping) and notebook.get("path") not in (None, str(path)):
        raise RunNotFoundError(
            f"run {run_id!r} is a run of another notebook",
            fix="list this notebook's runs with GET /mlnb/runs?path=...",
        )
    return dict(record)  # a JSON object the routes add keys to (``job``, lab paths)


def _executed_notebook(path: Path, store: str | None, run_id: str) -> Path | None:
    """The run's executed notebook, checked to lie inside the store; None when it left none
    (its kernel never started)."""
    record = _read_run(path, store, run_id)
    relative = record.get("executed_notebook")
    if not isinstance(relative, str):
        return None
    executed = file_in_store(Store.for_notebook(path, store).root, relative)
    return executed if executed.is_file() else None


def _cached_importance(path: Path, store: str | None, run_id: str) -> dict[str, Any] | None:
    from mlnb.importance import cached_importance

    record = _read_run(path, store, run_id)
    runs = Store.for_notebook(path, store)
    try:
        found = cached_importance(runs, record)
    finally:
        runs.close()
    return None if found is None else {"available": True, **found}


def _failed_by_job(
    record: dict[str, Any], error: dict[str, Any] | None, returncode: int | None, log: str
) -> dict[str, Any]:
    """A record for a run whose process ended without finishing it (or before starting it)."""
    message = (error or {}).get("message") or f"the mlnb run process exited {returncode}"
    cell = (error or {}).get("cell_index", (error or {}).get("cell"))
    return {
        **record,
        "status": "failed",
        "error": record.get("error")
        or {
            "stage": (error or {}).get("stage"),
            "cell": cell,
            "cell_index": cell,
            "ename": (error or {}).get("error", "RunAborted"),
            "evalue": message,
            "fix": (error or {}).get("fix"),
        },
        "log": log,
    }


def kernel_argument(kernel: object, notebook: str) -> list[str]:
    """``--kernel NAME`` for ``mlnb run``, checked against the installed kernelspecs."""
    if kernel is None or kernel == "":
        return []
    installed = sorted(installed_kernels())
    if not isinstance(kernel, str) or kernel not in installed:
        shown = json.dumps(kernel) if not isinstance(kernel, str) else repr(kernel)
        raise BadRequestError(
            f"no Jupyter kernel named {shown} is installed",
            fix=f"use one of: {', '.join(installed) or '(none)'}, or leave 'kernel' out to use "
            "the notebook's own kernel",
            notebook=notebook,
        )
    return ["--kernel", kernel]


def installed_kernels() -> list[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return list(KernelSpecManager().find_kernel_specs())


def parameter_arguments(pipeline: Pipeline, parameters: object) -> list[str]:
    """``-y YAML`` for ``mlnb run``, the values checked against the parameters cell
    (:func:`mlnb.run_arguments.parameter_arguments`, which the panel uses too)."""
    if parameters is None:
        return []
    if not isinstance(parameters, Mapping):
        raise BadRequestError(
            "'parameters' must be an object of name: value",
            fix='send e.g. {"path": "nb.ipynb", "parameters": {"C": 0.5}}',
            notebook=pipeline.notebook,
        )
    return run_arguments.parameter_arguments(pipeline.parameters, parameters, pipeline.notebook)
