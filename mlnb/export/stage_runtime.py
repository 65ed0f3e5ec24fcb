"""Running one stage of a notebook inside a pipeline task (Kubeflow), through papermill.

The task gets the notebook, its stage name, the parameter values, the folders of the upstream
tasks' outputs and a folder for its own. It executes the setup cells, the parameters, a cell
that loads the upstream values, the stage's cells, and a cell that saves the names later
stages read; the executed notebook is kept beside the outputs.

A train stage also hands KFP its results as the artifacts KFP's UI shows: the run's metrics
(a ``system.Metrics``, one ``log_metric`` each, found as ``mlnb run`` finds them: the stage's
named metrics, else the numbers of its ``metrics`` dict) and the fitted model (a
``system.Model``: the model pickled with joblib, its metadata the framework, its version, the
class and the metrics).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.errors import StageTaskError

VALUES_DIR = "values"
EXECUTED = "executed.ipynb"
TRAIN_RESULTS = "train.json"  # the train stage's metrics and model, beside its outputs

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


# What the kernel writes at the end of a train stage: its metrics and its model (joblib).
_TRAIN = """\
import json as _mlnb_json, joblib as _mlnb_joblib, numbers as _mlnb_numbers
_mlnb_table = globals().get("metrics") if {has_table!r} else None
_mlnb_table = _mlnb_table if isinstance(_mlnb_table, dict) else {{}}
_mlnb_metrics = {{}}
for _mlnb_name in {named!r} or list(_mlnb_table):
    _mlnb_value = _mlnb_table.get(_mlnb_name, globals().get(_mlnb_name))
    if isinstance(_mlnb_value, _mlnb_numbers.Real) and not isinstance(_mlnb_value, bool):
        _mlnb_metrics[str(_mlnb_name)] = float(_mlnb_value)
_mlnb_model = {model!r}
if _mlnb_model is None:
    _mlnb_found = [
        _n for _n in {defines!r}
        if hasattr(globals().get(_n), "fit") and hasattr(globals().get(_n), "predict")
        and not isinstance(globals().get(_n), type)
    ]
    _mlnb_model = "model" if "model" in _mlnb_found else (
        _mlnb_found[0] if len(_mlnb_found) == 1 else None
    )
_mlnb_class = None
if {model_path!r} and _mlnb_model in globals():
    _mlnb_joblib.dump(globals()[_mlnb_model], {model_path!r})
    _mlnb_kind = type(globals()[_mlnb_model])
    _mlnb_class = _mlnb_kind.__module__ + "." + _mlnb_kind.__qualname__
with open({results!r}, "w") as _mlnb_file:
    _mlnb_json.dump(
        {{"metrics": _mlnb_metrics, "variable": _mlnb_model, "class": _mlnb_class}}, _mlnb_file
    )
"""


@dataclass(frozen=True)
class TrainOutputs:
    """Where a train stage's results go: KFP's ``Output[Metrics]`` and ``Output[Model]``
    (anything with ``log_metric``, and a ``path`` and a ``metadata`` dict)."""

    metrics: Any = None
    model: Any = None


def stage_notebook(
    notebook_json: str,
    stage: str,
    inputs: list[str],
    keep: list[str],
    output_dir: str,
    model_path: str | None = None,
    train: bool = False,
) -> dict[str, Any]:
    """The notebook a task executes for one stage (nbformat 4 JSON); a ``train`` stage ends
    with a cell that writes its metrics to ``train.json`` and its model to ``model_path``."""
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
    if train:
        named = list(chosen.options.metrics) or [
            n for n in pipeline.metric_names if n in chosen.defines
        ]
        results = str(Path(output_dir) / TRAIN_RESULTS)
        source = _TRAIN.format(
            has_table="metrics" in chosen.defines,
            named=named,
            model=chosen.options.model,
            defines=list(chosen.defines),
            model_path=model_path,
            results=results,
        )
        cells.append(_code(source, tags=["mlnb-injected"]))
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
    metrics: Any = None,
    model: Any = None,
) -> dict[str, Any] | None:
    """Execute one stage; for a train stage (``metrics`` or ``model`` given: KFP's output
    artifacts) log its metrics and publish its model, and return what ``train.json`` holds."""
    import papermill  # type: ignore[import-untyped]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = out / f".{stage}.input.ipynb"
    train = metrics is not None or model is not None
    model_path = getattr(model, "path", None)
    if model_path:
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    document = stage_notebook(
        notebook_json, stage, inputs, keep, output_dir, model_path=model_path, train=train
    )
    source.write_text(json.dumps(document))
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
    if not train:
        return None
    results: dict[str, Any] = json.loads((out / TRAIN_RESULTS).read_text())
    publish_train_results(results, stage, TrainOutputs(metrics, model))
    return results


def publish_train_results(results: dict[str, Any], stage: str, outputs: TrainOutputs) -> None:
    """The metrics into ``Output[Metrics]``; the model's metadata onto ``Output[Model]``."""
    found: dict[str, float] = results.get("metrics") or {}
    if outputs.metrics is not None:
        for name, value in found.items():
            outputs.metrics.log_metric(name, value)
    if outputs.model is None:
        return
    if not results.get("class"):
        variable = results.get("variable")
        missing = f": no variable {variable!r} exists after it ran" if variable else ""
        raise StageTaskError(
            f"train stage {stage!r} left no fitted model for the task's Model artifact{missing}",
            fix="assign the fitted model to a variable and name it: `%%mlnb train --model VAR` "
            "or cell.metadata.mlnb.model",
            stage=stage,
        )
    outputs.model.metadata.update(model_metadata(results))


def model_metadata(results: dict[str, Any]) -> dict[str, Any]:
    """``framework`` (the distribution of the model's class, e.g. scikit-learn), its version,
    the class, the variable, the file format and the stage's metrics."""
    import importlib.metadata

    top = str(results["class"]).split(".")[0]
    framework = (importlib.metadata.packages_distributions().get(top) or [top])[0]
    try:
        version = importlib.metadata.version(framework)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "framework": framework,
        "framework_version": version,
        "class": results["class"],
        "variable": results["variable"],
        "format": "joblib",
        "metrics": dict(results.get("metrics") or {}),
    }


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
