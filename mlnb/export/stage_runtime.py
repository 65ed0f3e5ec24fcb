"""Running one stage of a notebook inside a pipeline task (Kubeflow), through papermill.

The task gets the notebook, its stage name, the parameter values, the folders of the upstream
tasks' outputs and a folder for its own. It executes the setup cells, the parameters, a cell
that loads the upstream values, the stage's cells, and a cell that saves the names later
stages read; the executed notebook is kept beside the outputs.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from mlnb.errors import StageTaskError

VALUES_DIR = "values"
EXECUTED = "executed.ipynb"

_LOAD = """\
import joblib as _mlnb_joblib, pathlib as _mlnb_pathlib
for _mlnb_dir in {inputs!r}:
    for _mlnb_file in sorted(_mlnb_pathlib.Path(_mlnb_dir, {values!r}).glob("*.joblib")):
        globals()[_mlnb_file.stem] = _mlnb_joblib.load(_mlnb_file)
"""

_SAVE = """\
import joblib as _mlnb_joblib, pathlib as _mlnb_pathlib
_mlnb_out = _mlnb_pathlib.Path({output!r}, {values!r})
_mlnb_out.mkdir(parents=True, exist_ok=True)
for _mlnb_name in {keep!r}:
    _mlnb_tmp = _mlnb_out / (_mlnb_name + ".joblib.tmp")
    _mlnb_joblib.dump(globals()[_mlnb_name], _mlnb_tmp)
    _mlnb_tmp.replace(_mlnb_out / (_mlnb_name + ".joblib"))
"""


def stage_notebook(
    notebook_json: str,
    stage: str,
    inputs: list[str],
    keep: list[str],
    output_dir: str,
) -> dict[str, Any]:
    """The notebook a task executes for one stage (nbformat 4 JSON)."""
    from mlnb.notebook import parse_notebook
    from mlnb.pipeline import pipeline_from_notebook

    pipeline = pipeline_from_notebook(parse_notebook(json.loads(notebook_json), f"{stage}.ipynb"))
    chosen = pipeline.stage(stage)
    parameters_source = next(
        (text for index, text in _cells(notebook_json) if index == pipeline.parameters_cell), ""
    )
    cells = [_code(source) for source in pipeline.setup_sources]
    cells.append(_code(parameters_source, tags=["parameters"]))
    cells.append(_code(_LOAD.format(inputs=inputs, values=VALUES_DIR), tags=["mlnb-injected"]))
    cells += [_code(source) for source in chosen.sources]
    cells.append(
        _code(_SAVE.format(output=output_dir, keep=keep, values=VALUES_DIR), tags=["mlnb-injected"])
    )
    document = json.loads(notebook_json)
    return {
        "cells": cells,
        "metadata": document.get("metadata", {}),
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def run_stage(
    notebook_json: str,
    stage: str,
    parameters: dict[str, Any],
    inputs: list[str],
    keep: list[str],
    output_dir: str,
) -> None:
    import papermill  # type: ignore[import-untyped]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = out / f".{stage}.input.ipynb"
    source.write_text(json.dumps(stage_notebook(notebook_json, stage, inputs, keep, output_dir)))
    from papermill.exceptions import PapermillExecutionError  # type: ignore[import-untyped]

    try:
        papermill.execute_notebook(
            str(source),
            str(out / EXECUTED),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
        )
    except PapermillExecutionError as exc:
        raise _task_error(exc, stage, out / EXECUTED) from None
    finally:
        source.unlink()


def _task_error(exc: Any, stage: str, executed: Path) -> StageTaskError:
    """The failing cell with IPython's error name and message (not papermill's traceback)."""
    from mlnb.run.executor import _stderr_error

    ename, evalue = exc.ename, exc.evalue
    cell: dict[str, Any] | None = None
    with contextlib.suppress(OSError, ValueError):
        cells = json.loads(executed.read_text()).get("cells", [])
        code = [c for c in cells if c.get("cell_type") == "code"]
        cell = next((c for c in code if c.get("execution_count") == exc.exec_count), None)
    if ename == "CellExecutionError" and not evalue:
        ename, evalue = _stderr_error(cell) or (ename, evalue)
    source = exc.source if isinstance(exc.source, str) else "".join(exc.source or [])
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return StageTaskError(
        f"the cell starting {first[:60]!r} failed: {ename}" + (f": {evalue}" if evalue else ""),
        fix=f"read the executed notebook {executed}; run the notebook with `mlnb run` to "
        "reproduce it locally",
        stage=stage,
    )


def _cells(notebook_json: str) -> list[tuple[int, str]]:
    document = json.loads(notebook_json)
    result = []
    for index, cell in enumerate(document.get("cells", [])):
        source = cell.get("source", "")
        result.append((index, "".join(source) if isinstance(source, list) else source))
    return result


def _code(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": tags or []},
        "outputs": [],
        "source": source,
    }
