"""What the templates are given: the rendering context and the Bento's spec file.

``service_context`` is every name ``service.py.j2``, ``mlnb_serve_code.py.j2`` and
``bentofile.yaml.j2`` may use (a template of the older layout, which loaded the model in
``service.py``, finds the same names);
``service_spec`` is ``mlnb_service.json``, which the generated service reads at start-up;
``serve_contract`` is its ``"contract"``: the soft rules of the run's data contract that the
service counts answered rows against.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from mlnb import __version__
from mlnb.bento import version
from mlnb.bento.inputs import BuildInputs, Progress
from mlnb.bento.localmods import FOLDER
from mlnb.bento.modelfile import MODEL_FILES
from mlnb.bento.servecode import ServeCode
from mlnb.cell_numbers import cell_ranges
from mlnb.serving.schema import RequestSchema

QUOTES = '"' * 3
DEFAULT_TIMEOUT_S = 10


def service_context(
    inputs: BuildInputs,
    serve: ServeCode,
    task: str,
    native: Any,
    name: str,
    bento_version: str,
    model_tag: str,
    model_format: str,
    reason: str | None,
    requirements: list[str],
    python_version: str,
    local_modules: list[str],
    labels: dict[str, str],
) -> dict[str, Any]:
    model_class = str(inputs.model_record.get("class") or type(native).__name__)
    if model_format == "onnx":
        fmt = "by onnxruntime (converted to ONNX, checked against the original)"
        model_description = "an ONNX adapter with the scikit-learn methods the serve code calls"
    elif inputs.model_format == "cloudpickle":
        fmt = "natively, loaded with cloudpickle (it holds code defined in the notebook)"
        model_description = f"the {model_class.rsplit('.', 1)[-1]} itself"
    else:
        fmt = "natively (loaded with joblib)"
        model_description = f"the {model_class.rsplit('.', 1)[-1]} itself"
    return {
        "mlnb_version": __version__,
        "notebook_name": Path(inputs.pipeline.notebook).name,
        "run_id": inputs.run_id,
        "model_stage": inputs.model_record.get("stage") or "train",
        "model_class": model_class,
        "format_description": fmt,
        "model_description": model_description,
        "model_format": model_format,
        "native_reason": reason,
        "native_reason_lines": _docstring_lines(reason),
        "serve_stage": serve.stage,
        "serve_cells": cell_ranges(serve.cells),
        "setup_source": serve.setup_source,
        "parameters": {k: repr(v) for k, v in serve.parameters.items()},
        "serve_source": serve.source,
        "functions": serve.functions,
        "model_variable": serve.model_variable,
        "model_tag": model_tag,
        "bento_name": name,
        "bento_version": bento_version,
        "class_name": version.class_name(name),
        "task": task,
        "timeout": DEFAULT_TIMEOUT_S,
        "description": f"Model service for {Path(inputs.pipeline.notebook).name}, "
        f"run {inputs.run_id} (mlnb)",
        "labels": labels,
        "requirements": requirements,
        "python_version": python_version,
        "local_modules": local_modules,
        "local_folder": FOLDER,
    }


def _docstring_lines(text: str | None, width: int = 92) -> list[str]:
    """Text wrapped for a docstring, with nothing that would end or escape it."""
    if not text:
        return []
    safe = text.replace("\\", "/").replace(QUOTES, "'")
    return textwrap.wrap(safe, width, break_long_words=True, break_on_hyphens=False)


def service_spec(
    inputs: BuildInputs,
    schema: RequestSchema,
    task: str,
    native: Any,
    name: str,
    bento_version: str,
    model_format: str,
    prediction_profile: dict[str, Any] | None,
    *,
    contract: dict[str, Any] | None,
    build: dict[str, str],
    example: dict[str, Any] | None,
) -> dict[str, Any]:
    """mlnb_service.json: what the service reads at start-up (:class:`ServiceSpec`);
    ``contract`` is :func:`serve_contract`'s, ``build`` the Bento's lineage
    (:func:`mlnb.bento.lineage.build_info`), ``example`` a training row as a client sends it
    (the OpenAPI page's example). It names no folder of the build machine: the notebook is
    relative to the project, the monitoring folder relative to the serving process."""
    from mlnb.reporting.paths import relative_monitor_folder

    classes = getattr(native, "classes_", None)
    return {
        "version": 1,
        "bento_name": name,
        "bento_version": bento_version,
        "run_id": inputs.run_id,
        "notebook": build["notebook"],
        "task": task,
        "format": model_format,
        "model_file": None if model_format == "onnx" else MODEL_FILES[inputs.model_format],
        "classes": None if classes is None else [_plain(c) for c in classes],
        "schema": schema.to_json(),
        "monitor_dir": relative_monitor_folder(name, bento_version),
        "profile": inputs.training_data.get("profile"),
        "prediction_profile": prediction_profile,
        "contract": contract,
        "metrics": inputs.run.get("metrics") or {},
        "build": build,
        "example": example,
    }


def serve_contract(inputs: BuildInputs, progress: Progress) -> dict[str, Any] | None:
    """The soft rules (ranges, categories, null share) of the data contract the run was
    checked against, for the model's input columns; None when the run had no contract or
    it covers none of them. The contract is read from the run's own stored copy, checked
    against its sha256: the file beside the notebook may have changed since."""
    reference = inputs.run.get("contract")
    if not isinstance(reference, dict) or not reference.get("object"):
        progress("no data contract in the run: the service counts no contract violations")
        return None
    from mlnb import contract

    name = Path(str(reference.get("file") or "contract")).name
    path = inputs.store.check_object(
        reference["object"], f"the data contract of run {inputs.run_id}"
    )
    columns = [str(c) for c in inputs.training_data["columns"]]
    variable = inputs.training_data.get("variable")
    rules = contract.serve_rules(path.read_text(encoding="utf-8"), columns, variable)
    if not rules or not rules.get("features"):
        progress(f"the data contract {name} covers none of the model's input columns")
        return None
    covered = len(rules["features"])
    progress(
        f"data contract {name}: {covered} of {len(columns)} input columns checked at serve "
        "time (counted, never refused)"
    )
    return {"version": rules.get("version", 1), "contract": name, **rules}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
