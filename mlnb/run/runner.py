"""One ``mlnb run``: plan, then either record a fully cached run or execute the notebook.

The cached path needs the notebook's hash, the stage keys and one lookup in the store's
index: it starts no kernel and imports neither papermill nor nbformat. The executing path
creates the run record first (``status: running``), so pollers see it at once, then hands
the assembled notebook to :mod:`mlnb.run.executor` and records each stage as it reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlnb.errors import CellRef, NotebookReadError
from mlnb.pipeline import Pipeline, load_pipeline
from mlnb.record_types import Environment, ErrorInfo, GitInfo, RunRecord
from mlnb.run.contracts import kernel_config, record_contract, settle, start_checker
from mlnb.run.lineage import environment, git_info, imported_modules_in, project_root
from mlnb.run.params import RunParameters, run_parameters
from mlnb.run.plan import RunPlan, make_plan
from mlnb.run.progress import Quiet
from mlnb.run.record import Recorder, cached_run_record, new_record
from mlnb.store import NOTEBOOK_FILE, Store, check_run_id, new_run_id

_MLNB_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_notebook(
    notebook: str | Path,
    *,
    store: str | Path | None = None,
    parameters: Sequence[tuple[str, str]] = (),
    raw_parameters: Sequence[tuple[str, str]] = (),
    parameter_sources: Mapping[str, str] | None = None,
    no_cache: bool = False,
    run_id: str | None = None,
    progress: Any = None,
    kernel: str | None = None,
) -> RunRecord:
    """Run (or reuse) the notebook's stages; return the final run record.

    ``kernel`` names the Jupyter kernel to run in (papermill's ``-k``); by default the
    notebook's own kernelspec, else ``python3``. It is part of every stage's cache key.
    """
    started = time.monotonic()
    progress = progress or Quiet()
    pipeline = load_pipeline(notebook)
    if kernel:
        pipeline = dataclasses.replace(pipeline, kernel_name=kernel)
    values = run_parameters(pipeline, parameters, raw_parameters, parameter_sources)
    run_id = check_run_id(run_id) if run_id else new_run_id()
    with Store.for_notebook(notebook, store) as the_store:
        return _run(pipeline, values, the_store, run_id, progress, started, no_cache)


def _run(
    pipeline: Pipeline,
    values: RunParameters,
    the_store: Store,
    run_id: str,
    progress: Any,
    started: float,
    no_cache: bool,
) -> RunRecord:
    """Plan, then record a fully cached run or execute the notebook (again, when the run
    found a change the plan had not foreseen)."""
    notice = notice_of(progress)
    for text in pipeline.notices:
        notice(text)
    plan = make_plan(pipeline, values.values, values.given, the_store, no_cache=no_cache)
    for text in plan.warnings:
        notice(f"{text}; running the stage again")
    if plan.stages and all(s.action == "cached" for s in plan.stages):
        return _record_cached(plan, the_store, run_id, progress, started)
    record = _execute(plan, the_store, run_id, progress, started)
    if record["status"] != "succeeded" or not record.get("unforeseen_changes"):
        return record
    # The run saw a stage change a value in place that the plan had not foreseen, so stages
    # after it ran on (or reused) results made without that change. It is recorded now: a
    # new plan has it, and the stages it affects run again.
    for text in record["unforeseen_changes"]:
        notice(f"{text}; running the stages that read it again")
    plan = make_plan(pipeline, values.values, values.given, the_store, no_cache=False)
    again = new_run_id()
    record["superseded_by"] = again
    the_store.save_run(record)
    if plan.stages and all(s.action == "cached" for s in plan.stages):
        return _record_cached(plan, the_store, again, progress, time.monotonic())
    return _execute(plan, the_store, again, progress, time.monotonic())


def notice_of(progress: Any) -> Any:
    """The progress display's one-line notices (nothing when it has none)."""
    return getattr(progress, "notice", None) or (lambda text: None)


def _record_cached(
    plan: RunPlan, store: Store, run_id: str, progress: Any, started: float
) -> RunRecord:
    record = cached_run_record(plan, run_id, store)
    source = plan.stages[-1].entry["run_id"] if plan.stages[-1].entry else None
    source_dir = None
    if source:
        with contextlib.suppress(Exception):
            record["environment"] = store.get_run(source).get("environment")
            source_dir = store.run_dir(source)
    record["git"] = git_info(plan.notebook)
    record["contract"] = record_contract(plan, store)
    executed = source_dir / NOTEBOOK_FILE if source_dir is not None else None
    if source and executed is not None and executed.exists():
        record["executed_notebook_from"] = source  # its cells ran there, not here
    record["seconds"] = round(time.monotonic() - started, 3)
    run_dir = store.create_run(record)
    if executed is not None and executed.exists():
        tmp = run_dir / f".{NOTEBOOK_FILE}.partial"
        shutil.copyfile(executed, tmp)
        os.replace(tmp, run_dir / NOTEBOOK_FILE)
    progress.run_started(record)
    progress.run_finished(record)
    return record


class _Lineage(threading.Thread):
    """Package versions and git state, gathered while the kernel starts.

    The imports are read (from the pipeline's parse) before the thread starts.
    """

    def __init__(self, plan: RunPlan) -> None:
        super().__init__(name="mlnb-lineage", daemon=True)
        self.plan = plan
        self.modules = imported_modules_in(p.tree for p in plan.pipeline.trees())
        self.environment: Environment | None = None
        self.git: GitInfo | None = None

    def run(self) -> None:
        with contextlib.suppress(Exception):
            self.git = git_info(self.plan.notebook)
        with contextlib.suppress(Exception):
            self.environment = environment(self.modules)


def _execute(plan: RunPlan, store: Store, run_id: str, progress: Any, started: float) -> RunRecord:
    from mlnb.run.assemble import assemble
    from mlnb.run.executor import Execution, Failure

    document = _read_document(plan)
    contract = kernel_config(plan, store)  # a broken contract file stops the run here
    checker = start_checker(contract)  # imports pandera while the kernel boots
    record = new_record(plan, run_id, store)
    lineage = _Lineage(plan)
    reader: _EventReader | None = None
    recorder = Recorder(plan, record, store, progress)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

    def on_cell_done() -> None:
        if reader is not None:
            recorder.apply(reader.read())

    run_dir = store.run_dir(run_id)
    execution = Execution(run_dir / "kernel.log", on_cell_done)
    failure: Failure | None = None
    with execution.signals_handled():
        store.create_run(record)
        progress.run_started(record)
        lineage.start()
        reader = _EventReader(run_dir / "events.jsonl")
        config = {
            "store": str(store.root),
            "kernel": plan.pipeline.kernel_name or "python3",
            "events": str(reader.path),
            "roots": sorted({str(plan.base_dir), str(project_root(plan.base_dir))}),
            "ignore": [_MLNB_PACKAGE, str(plan.base_dir / ".ipynb_checkpoints")],
            "contract": contract,
        }
        try:
            failure = execution.execute(
                assemble(document, plan, config),
                run_dir / NOTEBOOK_FILE,
                plan.given,
                plan.pipeline.kernel_name or "python3",
                plan.base_dir,
            )
        except Exception as exc:  # mlnb's own failure: still record the run
            failure = Failure(type(exc).__name__, str(exc), None)
        finally:
            if checker is not None:
                checker.stop()
        recorder.apply(reader.read())
        if not (run_dir / NOTEBOOK_FILE).exists():
            record["executed_notebook"] = None  # the kernel never started
        lineage.join(timeout=60)
        record["environment"] = _kernel_environment(lineage.environment, recorder.kernel)
        record["git"] = lineage.git
        recorder.finish(_error(failure, plan, document))
        settle(plan, store, record, contract, recorder.learned, notice_of(progress))
        record["seconds"] = round(time.monotonic() - started, 3)
        store.save_run(record)
    progress.run_finished(record)
    return record


def _read_document(plan: RunPlan) -> dict[str, Any]:
    data = Path(plan.notebook).read_bytes()
    if hashlib.sha256(data).hexdigest() != plan.pipeline.notebook_sha256:
        raise NotebookReadError(
            "the notebook changed while mlnb was reading it",
            fix="save it in Jupyter, then run again",
            notebook=plan.notebook,
        )
    document: dict[str, Any] = json.loads(data)
    return document


def _error(failure: Any, plan: RunPlan, document: dict[str, Any]) -> ErrorInfo | None:
    if failure is None:
        return None
    cell_meta = failure.cell or {}
    index = cell_meta.get("cell")
    stage = cell_meta.get("stage")
    if stage is None and index is not None:
        stage = next((s.name for s in plan.stages if index in s.stage.cells), None)
    error: ErrorInfo = {
        "stage": stage,
        "cell": index,
        "cell_index": index,
        "ename": failure.ename,
        "evalue": failure.evalue,
    }
    if index is not None:
        source = document["cells"][index].get("source", "")
        error["first_line"] = CellRef.of(index, "".join(source)).first_line
    elif cell_meta.get("injected"):
        error["injected"] = cell_meta["injected"]
    return error


def _kernel_environment(
    env: Environment | None, kernel: dict[str, Any] | None
) -> Environment | None:
    if env is None or kernel is None:
        return env
    env = env.copy()
    if kernel.get("prefix") != sys.prefix:
        env["packages_note"] = "versions read from mlnb's Python; the kernel runs another one"
    env["python"] = kernel.get("python", env.get("python"))
    env["executable"] = kernel.get("executable", env.get("executable"))
    return env


class _EventReader:
    """Reads the complete lines the kernel appended to the event log since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        events = []
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events
