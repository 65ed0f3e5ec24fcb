"""``mlnb build``: from a run to a versioned Bento, in the order a reader would check it.

1. Collect the run (:mod:`mlnb.build.inputs`) and the serve code (:mod:`.servecode`); refuse
   serve code that holds a credential (:mod:`.secrets`).
2. Run the serve code on held-out rows with the original model: it must answer one
   prediction per row before anything is built.
3. Convert to ONNX (:mod:`.onnx_convert`) and keep it only if it agrees through the serve
   code (:mod:`.agreement`); else serve the native model and say why.
4. Render the service and bentofile (:mod:`.render`) into a build folder in the store,
   store the model and build the Bento (:mod:`.bento`) under a content-derived version
   (:mod:`.version`), and record the build in the run.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlnb import __version__
from mlnb.build import bento, folder, onnx_convert, pins, render, version
from mlnb.build.agreement import check_agreement
from mlnb.build.inputs import BuildInputs, collect
from mlnb.build.onnx_convert import NotConvertible, task_of
from mlnb.build.secrets import check_no_credentials
from mlnb.build.servecode import ServeCode, extract_serve_code
from mlnb.errors import CellRef, RequestRejected, ServeCodeError
from mlnb.pipeline import Pipeline, load_pipeline
from mlnb.serving.answer import Predictor, ServeOutputError
from mlnb.serving.onnx_model import CLASSIFIER_MEMBERS, REGRESSOR_MEMBERS, OnnxModel
from mlnb.serving.schema import DEFAULT_MAX_ROWS, RequestSchema
from mlnb.store import utc_now

Progress = Callable[[str], None]
QUOTES = '"' * 3
AGREEMENT_ROWS = 1000
DEFAULT_TIMEOUT_S = 10


@dataclass
class BuildResult:
    bento: str
    model: str
    format: str  # "onnx" or "native"
    run_id: str
    build_dir: Path
    created: bool  # False when this version existed already
    reason: str | None = None  # why the native model is served
    agreement: str | None = None
    left_out: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "bento": self.bento,
            "model": self.model,
            "format": self.format,
            "run_id": self.run_id,
            "created": self.created,
            "reason": self.reason,
            "agreement": self.agreement,
            "build_dir": str(self.build_dir),
        }


@dataclass(frozen=True)
class ModelChoice:
    format: str
    files: dict[str, bytes | Path]  # what goes into the BentoML model store
    reason: str | None  # why not ONNX
    agreement: str | None  # how well ONNX agreed


def build(
    notebook: str,
    *,
    run_id: str | None = None,
    store: str | None = None,
    templates: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    progress: Progress = lambda message: None,
) -> BuildResult:
    """Build the run's Bento; see the module docstring for the steps."""
    bento.quiet_bentoml()
    if Path(notebook).is_file():
        precheck(notebook)
    inputs = collect(notebook, run_id=run_id, store=store, progress=progress)
    progress(f"building run {inputs.run_id} of {inputs.pipeline.notebook}")
    model_variable = str(inputs.model_record.get("variable") or "model")
    serve = extract_serve_code(inputs.pipeline, model_variable, inputs.run.get("parameters", {}))
    _scan(inputs.pipeline, serve)
    _describe_serve_code(serve, progress)

    import joblib

    native = joblib.load(inputs.model_path)
    task = task_of(native)
    schema = RequestSchema.from_training_data(inputs.training_data, max_rows)
    rows, rows_kind = _agreement_rows(inputs, schema)
    make_predictor = _predictor_factory(serve, task)
    _check_serve_code(make_predictor, native, rows, serve, inputs)

    choice = _choose_format(
        native, inputs.model_path, schema, make_predictor, rows, rows_kind, serve, task, progress
    )
    model_format, files, reason = choice.format, choice.files, choice.reason
    name = version.bento_name(inputs.pipeline.notebook)
    model_tag = f"{name}_model:{version.digest(files)}"
    requirements = pins.requirements(model_format, _imported_modules(serve), inputs.packages)
    python_version = pins.python_minor(inputs.python_version)
    bento_version = version.content_version(
        serve=serve.fingerprint(),
        model=model_tag,
        model_format=model_format,
        schema=schema.to_json(),
        requirements=requirements,
        python=python_version,
        templates=render.template_sources(templates),
        runtime=version.runtime_digest(),
    )
    tag = f"{name}:{bento_version}"
    build_dir = inputs.store.root / "builds" / f"{name}-{bento_version}"
    context = _context(
        inputs, serve, task, native, name, bento_version, model_tag, model_format, reason,
        requirements, python_version,
    )  # fmt: skip
    service_spec = _service_spec(inputs, schema, task, native, name, bento_version, model_format)
    folder.write_build_dir(
        build_dir,
        {
            "service.py": render.render(render.SERVICE_TEMPLATE, context, templates),
            "bentofile.yaml": render.render(render.BENTOFILE_TEMPLATE, context, templates),
            "mlnb_service.json": json.dumps(service_spec, indent=2, allow_nan=False) + "\n",
        },
    )
    labels = _labels(inputs, model_format)
    metadata = {
        "run_id": inputs.run_id,
        "notebook_sha256": inputs.run["notebook"].get("sha256"),
        "parameters": inputs.run.get("parameters", {}),
        "metrics": inputs.run.get("metrics", {}),
        "format": model_format,
        "class": inputs.model_record.get("class"),
        "native_reason": reason,
    }
    metadata = {key: value for key, value in metadata.items() if value is not None}
    if bento.store_model(model_tag, files, labels=labels, metadata=metadata):
        progress(f"model {model_tag} stored")
    else:
        progress(f"model {model_tag} exists already")
    created = bento.build_bento(build_dir, name, bento_version)
    progress(f"bento {tag} {'built' if created else 'exists already (same content): reused'}")
    if not any(b.get("bento") == tag for b in inputs.run.get("builds") or []):
        inputs.store.add_build(
            inputs.run_id,
            {"bento": tag, "model": model_tag, "format": model_format, "built_at": utc_now()},
        )
    return BuildResult(
        tag, model_tag, model_format, inputs.run_id, build_dir, created, reason,
        choice.agreement, serve.left_out,
    )  # fmt: skip


def precheck(notebook: str) -> ServeCode:
    """The serve code of the notebook as it is now: refused early, before any run."""
    pipeline = load_pipeline(notebook)
    trains = pipeline.stages_of_kind("train")
    variable = next((s.options.model for s in trains if s.options.model), None) or "model"
    serve = extract_serve_code(pipeline, variable, pipeline.parameter_defaults)
    _scan(pipeline, serve)
    return serve


def _scan(pipeline: Pipeline, serve: ServeCode) -> None:
    cells = [
        (cell, source)
        for stage in pipeline.stages_of_kind("serve")
        for cell, source in zip(stage.cells, stage.sources, strict=True)
    ]
    setup_cells = sorted({block.cell for block in serve.setup})
    sources = dict(zip(pipeline.setup_cells, pipeline.setup_sources, strict=True))
    cells += [(cell, sources[cell]) for cell in setup_cells]
    check_no_credentials(cells, pipeline.notebook, serve.stage or "setup")


def _describe_serve_code(serve: ServeCode, progress: Progress) -> None:
    if serve.stage is None:
        progress("no serve stage: the service answers with the model's own predict")
        return
    defined = [name for name, present in serve.functions.items() if present]
    what = ", ".join(defined) or "no predict (the model's own predict answers)"
    progress(f"serve code of stage {serve.stage!r}: {what}")
    for line in serve.left_out:
        progress(f"  left out {line}")


def _agreement_rows(inputs: BuildInputs, schema: RequestSchema) -> tuple[pd.DataFrame, str]:
    """Up to 1,000 held-out rows (else training rows), as the service would validate them."""
    path, kind = inputs.data_path("holdout"), "held-out"
    if path is None:
        path, kind = inputs.data_path("sample"), "training"
    if path is None:
        raise ServeCodeError(
            f"run {inputs.run_id} kept neither held-out nor training rows to check the "
            "service against",
            fix="run the notebook again with this version of mlnb",
        )
    frame = pd.read_parquet(path).head(AGREEMENT_ROWS)
    records = frame[schema.names].to_dict(orient="records")
    try:
        return schema.frame({"rows": records}), kind
    except RequestRejected:
        valid = []
        for record in records:
            try:
                schema.frame({"rows": [record]})
            except RequestRejected:
                continue
            valid.append(record)
        if not valid:
            raise
        return schema.frame({"rows": valid}), kind


def _predictor_factory(serve: ServeCode, task: str) -> Callable[[Any], Predictor]:
    """Run the serve code afresh around a model, as the service module would."""
    code = "\n\n".join(
        part
        for part in (
            serve.setup_source,
            "\n".join(f"{name} = {value!r}" for name, value in serve.parameters.items()),
            serve.source,
        )
        if part
    )
    compiled = compile(code or "pass", "<serve code>", "exec")

    def make(model: Any) -> Predictor:
        namespace: dict[str, Any] = {"__name__": "mlnb_serve_code", serve.model_variable: model}
        exec(compiled, namespace)
        return Predictor(
            model,
            task,
            predict=namespace.get("predict") if serve.functions["predict"] else None,
            preprocess=namespace.get("preprocess") if serve.functions["preprocess"] else None,
            postprocess=namespace.get("postprocess") if serve.functions["postprocess"] else None,
        )

    return make


def _check_serve_code(
    make_predictor: Callable[[Any], Predictor],
    native: Any,
    rows: pd.DataFrame,
    serve: ServeCode,
    inputs: BuildInputs,
) -> None:
    try:
        answer = make_predictor(native).answer(rows.copy())
        json.dumps(answer, allow_nan=True)
    except (ServeOutputError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        pipeline = inputs.pipeline
        cell = serve.cells[0] if serve.cells else None
        source = dict(
            (c, s)
            for stage in pipeline.stages_of_kind("serve")
            for c, s in zip(stage.cells, stage.sources, strict=True)
        ).get(cell or -1, "")
        raise ServeCodeError(
            f"the serve code fails on {len(rows)} rows of run {inputs.run_id} with the "
            f"trained model: {type(exc).__name__}: {exc}",
            fix="call predict on a few rows in the notebook (predict(X_test.head())) and "
            "make it return one JSON-able prediction per row",
            notebook=pipeline.notebook,
            cell=CellRef.of(cell, source) if cell is not None else None,
            stage=serve.stage,
        ) from None


def _choose_format(
    native: Any,
    model_path: Path,
    schema: RequestSchema,
    make_predictor: Callable[[Any], Predictor],
    rows: pd.DataFrame,
    rows_kind: str,
    serve: ServeCode,
    task: str,
    progress: Progress,
) -> ModelChoice:
    """ONNX when a conversion agrees through the serve code, else native with the reason."""
    members = CLASSIFIER_MEMBERS if task == "classification" else REGRESSOR_MEMBERS
    unsupported = sorted(serve.model_members - members)
    reasons = []
    if unsupported:
        reasons.append(
            f"the serve code uses {serve.model_variable}.{unsupported[0]}, which the ONNX "
            f"adapter does not provide (it has {', '.join(sorted(members))})"
        )
    else:
        attempts = [False, True] if onnx_convert.can_narrow(schema) else [False]
        for narrow in attempts:
            prefix = "fed float32 instead of float64, " if narrow else ""
            try:
                conversion = onnx_convert.convert(native, schema, narrow=narrow)
            except NotConvertible as exc:
                reasons.append(prefix + str(exc).rstrip("."))
                continue
            converted = OnnxModel.from_spec(conversion.onnx, conversion.spec)
            agreement = check_agreement(make_predictor, native, converted, rows)
            text = agreement.describe().replace("held-out rows", f"{rows_kind} rows")
            if agreement.agrees:
                if narrow:
                    text += f"; float64 features go in as float32 ({reasons[-1]})"
                progress(f"ONNX: {text}")
                files: dict[str, bytes | Path] = {
                    "model.onnx": conversion.onnx,
                    "onnx_model.json": json.dumps(conversion.spec, indent=2).encode(),
                }
                return ModelChoice("onnx", files, None, text)
            reasons.append(prefix + text)
    reason = "; ".join(reasons)
    progress(f"ONNX not used: {reason}. Serving the native model.")
    return ModelChoice("native", {"model.joblib": model_path}, reason, None)


def _imported_modules(serve: ServeCode) -> set[str]:
    import ast

    modules = set()
    for block in [*serve.setup, *serve.blocks]:
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
    return modules


def _labels(inputs: BuildInputs, model_format: str) -> dict[str, str]:
    return {
        "mlnb.run": inputs.run_id,
        "mlnb.notebook": Path(inputs.pipeline.notebook).name,
        "mlnb.notebook-sha256": str(inputs.run["notebook"].get("sha256", ""))[:16],
        "mlnb.format": model_format,
    }


def _context(
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
) -> dict[str, Any]:
    model_class = str(inputs.model_record.get("class") or type(native).__name__)
    if model_format == "onnx":
        fmt = "by onnxruntime (converted to ONNX, checked against the original)"
        model_description = "an ONNX adapter with the scikit-learn methods the serve code calls"
    else:
        fmt = "natively (scikit-learn, loaded with joblib)"
        model_description = f"the {model_class.rsplit('.', 1)[-1]} itself"
    from mlnb.cli.inspect import cell_ranges

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
        "labels": _labels(inputs, model_format),
        "requirements": requirements,
        "python_version": python_version,
    }


def _docstring_lines(text: str | None, width: int = 92) -> list[str]:
    """Text wrapped for a docstring, with nothing that would end or escape it."""
    if not text:
        return []
    safe = text.replace("\\", "/").replace(QUOTES, "'")
    return textwrap.wrap(safe, width, break_long_words=True, break_on_hyphens=False)


def _service_spec(
    inputs: BuildInputs,
    schema: RequestSchema,
    task: str,
    native: Any,
    name: str,
    bento_version: str,
    model_format: str,
) -> dict[str, Any]:
    from mlnb.monitoring.paths import default_monitor_folder

    classes = getattr(native, "classes_", None)
    return {
        "version": 1,
        "bento_name": name,
        "bento_version": bento_version,
        "run_id": inputs.run_id,
        "notebook": inputs.run["notebook"].get("path"),
        "task": task,
        "format": model_format,
        "classes": None if classes is None else [_plain(c) for c in classes],
        "schema": schema.to_json(),
        "monitor_dir": str(default_monitor_folder(inputs.store.root, name, bento_version)),
        "profile": inputs.training_data.get("profile"),
    }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
