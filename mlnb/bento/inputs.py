"""What a build needs from a run, read through :mod:`mlnb.store` only.

The run record (model, training schema, parameters, environment), the pipeline as it was when
the run executed (the source notebook when unchanged, else the user cells kept in the
executed copy), the source of every cell the Bento carries (its report shows them all), and
the paths of the model, the training sample and the held-out rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlnb import child_process
from mlnb.errors import BuildInputError, MlnbError
from mlnb.notebook import NotebookFile, RawCell, read_notebook
from mlnb.pipeline import Pipeline, pipeline_from_notebook
from mlnb.store import NOTEBOOK_FILE, Store, sha256_file

INJECTED_TAG = "mlnb-injected"
MODEL_FORMATS = ("joblib", "cloudpickle")  # how a run saves a model (mlnb.run.outputs)
RUN_META = "mlnb_run"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildInputs:
    store: Store
    run: Mapping[str, Any]  # the run record (mlnb.record_types.RunRecord), read only
    pipeline: Pipeline
    notebook_changed: bool  # the source notebook differs from the one the run executed
    # index -> source of each code cell of that notebook (skipped ones too: the report shows
    # them), for the credential scan
    sources: Mapping[int, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])

    @property
    def model_record(self) -> dict[str, Any]:
        return dict(self.run["model"])

    @property
    def model_format(self) -> str:
        """How the run saved the model: "joblib", or "cloudpickle" for notebook code."""
        return str(self.run["model"].get("format") or "joblib")

    @property
    def model_path(self) -> Path:
        return self.store.resolve(self.run["model"]["path"])

    @property
    def training_data(self) -> dict[str, Any]:
        return dict(self.run["training_data"])

    def data_path(self, which: str) -> Path | None:
        """The parquet file of ``sample`` or ``holdout`` rows, when the run kept one."""
        entry = self.run["training_data"].get(which)
        if not entry or not entry.get("path"):
            return None
        path = self.store.resolve(entry["path"])
        return path if path.is_file() else None

    @property
    def packages(self) -> dict[str, str]:
        return dict((self.run.get("environment") or {}).get("packages") or {})

    @property
    def python_version(self) -> str:
        return str((self.run.get("environment") or {}).get("python") or "")


def collect(
    notebook: str,
    *,
    run_id: str | None = None,
    store: str | None = None,
    progress: Progress = lambda message: None,
    current: Pipeline | None = None,
) -> BuildInputs:
    """The inputs of a build: the named run, else the newest successful one, else a new run.

    ``current``: the notebook's pipeline as the build read it already; it is the run's
    pipeline when the run executed this very file (its cells are not parsed again)."""
    the_store = Store.for_notebook(notebook, store)
    run: Mapping[str, Any]
    if run_id:
        run = the_store.get_run(run_id)
        recorded = run.get("notebook", {}).get("path")
        if recorded and os.path.abspath(recorded) != os.path.abspath(notebook):
            raise BuildInputError(
                f"run {run_id} is a run of {recorded}, not of {notebook}",
                fix=f"build it as: mlnb build {recorded} --run {run_id}",
                notebook=notebook,
            )
    else:
        latest = the_store.latest_successful(notebook)
        if latest is None:
            progress(f"no successful run of {notebook} yet: running it (mlnb run)")
        run = _run_notebook(notebook, the_store, progress) if latest is None else latest
    _check_run(run, notebook)
    _check_objects(run, the_store)
    pipeline, changed, sources = _pipeline_of(run, the_store, current)
    if changed:
        progress(
            f"note: {notebook} changed since run {run['run_id']}; building that run's code "
            "(run the notebook again to build the current one)"
        )
    return BuildInputs(the_store, run, pipeline, changed, sources)


def _run_notebook(notebook: str, store: Store, progress: Progress) -> dict[str, Any]:
    """``mlnb run NOTEBOOK --json`` in a child, its progress shown on this process's stderr."""
    words = ["run", notebook, "--json", "--store", str(store.root)]
    finished = child_process.run(words, show_progress=True)
    record = finished.run_record()
    if record is None:
        raise BuildInputError(
            f"mlnb run could not run {notebook} (exit code {finished.returncode})",
            fix=f"run it yourself to see why: mlnb run {notebook}",
            notebook=notebook,
        )
    progress(f"run {record['run_id']}: {record.get('status')}")
    return record


def _check_objects(run: Mapping[str, Any], store: Store) -> None:
    """The model and the training rows the build reads must be the bytes the run saved:
    a damaged pickle can load and then loop or answer wrongly."""
    run_id = run["run_id"]
    store.check_object(run["model"], f"the model of run {run_id}")
    training = run.get("training_data") or {}
    for which in ("sample", "holdout"):
        if training.get(which):
            store.check_object(training[which], f"the training {which} of run {run_id}")


def _check_run(run: Mapping[str, Any], notebook: str) -> None:
    run_id = run.get("run_id")
    if run.get("status") != "succeeded":
        error = run.get("error") or {}
        where = f" in stage {error['stage']!r}" if error.get("stage") else ""
        raise BuildInputError(
            f"run {run_id} did not succeed ({run.get('status')}{where}); only a successful "
            "run can be built",
            fix=f"fix the notebook and run it again (mlnb run {notebook}), or pass "
            "--run with a successful run's id (mlnb runs lists them)",
            notebook=notebook,
        )
    model = run.get("model")
    if not model or not model.get("path"):
        raise BuildInputError(
            f"run {run_id} recorded no model",
            fix="name the model variable of the train stage (cell metadata "
            '{"mlnb": {"model": "model"}} or %%mlnb train --model model) and run again',
            notebook=notebook,
        )
    if model.get("format") not in MODEL_FORMATS:
        raise BuildInputError(
            f"run {run_id} saved its model as {model.get('format')!r}; a build takes a "
            "model saved with joblib or cloudpickle",
            fix=f"run the notebook again with this version of mlnb (mlnb run {notebook})",
            notebook=notebook,
        )
    data = run.get("training_data") or {}
    if not data.get("columns") or not data.get("dtypes"):
        raise BuildInputError(
            f"run {run_id} recorded no training data schema (columns and dtypes), so requests "
            "cannot be validated",
            fix="fit the model on a pandas DataFrame (or a 2-D array) defined in the data or "
            "train stage, and run again",
            notebook=notebook,
        )


def _pipeline_of(
    run: Mapping[str, Any], store: Store, current: Pipeline | None = None
) -> tuple[Pipeline, bool, dict[int, str]]:
    """The pipeline the run executed, whether the source notebook changed since, and the
    source of each of its code cells; ``current`` when it was read from the file the run
    executed (the same bytes), named as the run names the notebook.

    When the notebook changed, the cells come from the run's executed copy; a stage the run
    took from the cache did not execute there, so its cells come from the executed copy of
    the run that computed it (same cache key: the same code).
    """
    source = Path(run["notebook"]["path"])
    expected = run["notebook"].get("sha256")
    if source.is_file() and sha256_file(source) == expected:
        notebook = read_notebook(source)
        if current is not None and current.notebook_sha256 == notebook.sha256:
            return replace(current, notebook=notebook.path), False, _sources(notebook.cells)
        return pipeline_from_notebook(notebook), False, _sources(notebook.cells)
    executed = store.run_dir(run["run_id"]) / NOTEBOOK_FILE
    if not executed.is_file():
        raise BuildInputError(
            f"the notebook of run {run['run_id']} changed or moved since, and the run kept "
            "no executed copy",
            fix=f"run the notebook again: mlnb run {source}",
        )
    cached = {s.get("kind") for s in run.get("stages", []) if s.get("status") == "cached"}
    if "serve" in cached:
        raise BuildInputError(
            f"{source} changed since run {run['run_id']}, and that run took its serve stage "
            "from the cache, so its serve code is not recorded",
            fix=f"run the notebook again (mlnb run {source}) and build the new run",
        )
    executed_notebook = read_notebook(executed)
    cells = {cell.index: cell for cell in _user_cells(executed_notebook)}
    for stage in run.get("stages", []):
        if stage.get("status") == "cached":
            for cell in _cells_of_cached_stage(stage, run, store, source):
                cells.setdefault(cell.index, cell)
    ordered = tuple(cells[index] for index in sorted(cells))
    kept = tuple(c for c in ordered if not (c.metadata.get(RUN_META) or {}).get("skipped"))
    recovered = NotebookFile(str(source), kept, expected or "", executed_notebook.kernel_name)
    return pipeline_from_notebook(recovered), True, _sources(ordered)


def _cells_of_cached_stage(
    stage: dict[str, Any], run: Mapping[str, Any], store: Store, source: Path
) -> list[RawCell]:
    """The code cells of a stage the run took from the cache, from the run that computed it."""
    wanted = set(stage.get("cells") or [])
    origin = stage.get("from_run")
    seen = {run["run_id"]}
    while origin and origin not in seen:  # a cached stage of a cached stage: follow it back
        seen.add(origin)
        executed = store.run_dir(origin) / NOTEBOOK_FILE
        if not executed.is_file():
            break
        found = [c for c in _user_cells(read_notebook(executed)) if c.index in wanted]
        if found:
            return found
        try:
            record = store.get_run(origin)
        except MlnbError:  # the earlier run's record is gone
            break
        same = [s for s in record.get("stages", []) if s.get("name") == stage.get("name")]
        origin = same[0].get("from_run") if same else None
    raise BuildInputError(
        f"{source} changed since run {run['run_id']}, which took stage "
        f"{stage.get('name')!r} from the cache of run {stage.get('from_run')}, whose executed "
        "notebook is gone, so that stage's code is not recorded",
        fix=f"run the notebook again (mlnb run {source}) and build the new run",
    )


def _sources(cells: tuple[RawCell, ...]) -> dict[int, str]:
    return {cell.index: cell.source for cell in cells if cell.cell_type in ("code", "raw")}


def _user_cells(executed: NotebookFile) -> list[RawCell]:
    """The executed notebook's own cells (skipped ones too), at their indices in the source."""
    cells = []
    for cell in executed.cells:
        meta = cell.metadata.get(RUN_META) or {}
        if INJECTED_TAG in cell.tags or "cell" not in meta:
            continue
        cells.append(
            RawCell(int(meta["cell"]), cell.cell_type, cell.source, cell.tags, cell.metadata)
        )
    return cells
