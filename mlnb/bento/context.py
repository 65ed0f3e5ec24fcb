"""What the templates are given: the rendering context and the Bento's spec file.

``service_context`` is every name ``service.py.j2``, ``mlnb_serve_code.py.j2`` and
``bentofile.yaml.j2`` may use (a template of the older layout, which loaded the model in
``service.py``, finds the same names);
``service_spec`` is ``mlnb_service.json``, which the generated service reads at start-up
(both read the build's :class:`~mlnb.bento.plan.BentoPlan` by name);
``serve_contract`` is the spec's ``"contract"``: the soft rules of the run's data contract that
the service counts answered rows against.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb import __version__
from mlnb.bento import version
from mlnb.bento.inputs import BuildInputs, Progress
from mlnb.bento.localmods import FOLDER
from mlnb.bento.modelfile import MODEL_FILES
from mlnb.bento.plan import BentoPlan
from mlnb.cell_numbers import cell_ranges

QUOTES = '"' * 3
DEFAULT_TIMEOUT_S = 10


def service_context(plan: BentoPlan) -> dict[str, Any]:
    """The names the templates may use, from the build's plan."""
    model_class = plan.model_class
    if plan.model_format == "onnx":
        fmt = "by onnxruntime (converted to ONNX, checked against the original)"
        model_description = "an ONNX adapter with the scikit-learn methods the serve code calls"
    elif plan.loader == "cloudpickle":
        fmt = "natively, loaded with cloudpickle (it holds code defined in the notebook)"
        model_description = f"the {model_class.rsplit('.', 1)[-1]} itself"
    else:
        fmt = "natively (loaded with joblib)"
        model_description = f"the {model_class.rsplit('.', 1)[-1]} itself"
    serve = plan.serve
    return {
        "mlnb_version": __version__,
        "notebook_name": Path(plan.notebook).name,
        "run_id": plan.run_id,
        "model_stage": plan.model_stage,
        "model_class": model_class,
        "format_description": fmt,
        "model_description": model_description,
        "model_format": plan.model_format,
        "native_reason": plan.native_reason,
        "native_reason_lines": _docstring_lines(plan.native_reason),
        "serve_stage": serve.stage,
        "serve_cells": cell_ranges(serve.cells),
        "setup_source": serve.setup_source,
        "parameters": {k: repr(v) for k, v in serve.parameters.items()},
        "serve_source": serve.source,
        "functions": serve.functions,
        "model_variable": serve.model_variable,
        "model_tag": plan.model_tag,
        "bento_name": plan.name,
        "bento_version": plan.version,
        "class_name": version.class_name(plan.name),
        "task": plan.task,
        "timeout": DEFAULT_TIMEOUT_S,
        "description": f"Model service for {Path(plan.notebook).name}, run {plan.run_id} (mlnb)",
        "labels": dict(plan.labels),
        "requirements": list(plan.requirements),
        "python_version": plan.python_version,
        "local_modules": list(plan.local_modules),
        "local_folder": FOLDER,
    }


def _docstring_lines(text: str | None, width: int = 92) -> list[str]:
    """Text wrapped for a docstring, with nothing that would end or escape it."""
    if not text:
        return []
    safe = text.replace("\\", "/").replace(QUOTES, "'")
    return textwrap.wrap(safe, width, break_long_words=True, break_on_hyphens=False)


def service_spec(plan: BentoPlan) -> dict[str, Any]:
    """mlnb_service.json: what the service reads at start-up (:class:`ServiceSpec`). It names
    no folder of the build machine: the notebook is relative to the project (the lineage's,
    ``plan.build``), the monitoring folder relative to the serving process."""
    return {
        "version": 1,
        "bento_name": plan.name,
        "bento_version": plan.version,
        "run_id": plan.run_id,
        "notebook": plan.build["notebook"],
        "task": plan.task,
        "format": plan.model_format,
        "model_file": None if plan.model_format == "onnx" else MODEL_FILES[plan.loader],
        "classes": None if plan.classes is None else list(plan.classes),
        "schema": plan.schema.to_json(),
        "monitor_dir": plan.monitor_dir,
        "profile": _plain_dict(plan.training_profile),
        "prediction_profile": _plain_dict(plan.prediction_profile),
        "contract": _plain_dict(plan.contract),
        "metrics": dict(plan.metrics),
        "build": dict(plan.build),
        "example": _plain_dict(plan.example),
        "explain": dict(plan.explain),  # what /explain loads, each file with its sha256
    }


def _plain_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


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


def plain_classes(model: Any) -> tuple[Any, ...] | None:
    """The model's ``classes_`` as plain values (None for a model without: a regressor)."""
    classes = getattr(model, "classes_", None)
    return None if classes is None else tuple(_plain(c) for c in classes)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
