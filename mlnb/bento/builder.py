"""``mlnb build``: from a run to a versioned Bento, in the order a reader would check it.

1. Collect the run (:mod:`mlnb.bento.inputs`) and the serve code (:mod:`.servecode`); refuse
   a notebook whose cells hold a credential (:mod:`.secrets`: the Bento carries them all,
   in its code or its report) and serve code with side effects (:mod:`.sideeffects`, unless
   ``allow_side_effects``), before any run when possible.
2. Run the serve code on held-out rows with the original model: it must answer one
   prediction per row before anything is built.
3. Choose ONNX or native (:mod:`.format`): a conversion (:mod:`.onnx_convert`) is kept only
   if it agrees with the original through the serve code (:mod:`.agreement`).
4. Render the service, its serve-code module (the notebook's code and the model load, which
   only the workers import) and the bentofile (:mod:`.context`, :mod:`.render`), scan them
   for credentials too, write them into a build folder in the store (:mod:`.folder`), store
   the model and build the Bento (:mod:`.bento`) under a content-derived version
   (:mod:`.version`), and record the build in the run.

The serve code is executed once around the original model (that one predictor answers the
serve-code check, the prediction profile and the original's side of the ONNX agreement
check) and once around each ONNX conversion tried: never more than once per check.
``bentoml build`` imports service.py, which does not import the serve code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from mlnb.bento import (
    bentoml_store,
    explaining,
    folder,
    lineage,
    localmods,
    modelfile,
    pins,
    render,
    secrets,
    version,
)
from mlnb.bento.context import plain_classes, serve_contract, service_context, service_spec
from mlnb.bento.format import choose_format
from mlnb.bento.inputs import BuildInputs, collect
from mlnb.bento.onnx_convert import task_of
from mlnb.bento.plan import BentoPlan
from mlnb.bento.reference import prediction_profile
from mlnb.bento.servecode import ServeCode, extract_serve_code
from mlnb.bento.sideeffects import check_no_side_effects
from mlnb.cell_numbers import cell_label
from mlnb.errors import CellRef, RequestRejected, ServeCodeError
from mlnb.notebook import read_notebook
from mlnb.pipeline import Pipeline, load_pipeline
from mlnb.record_types import BuildEntry
from mlnb.serving.answer import Predictor, ServeOutputError
from mlnb.serving.runtime import SERVE_CODE_MODULE
from mlnb.serving.schema import DEFAULT_MAX_ROWS, RequestSchema
from mlnb.store import sha256_file, utc_now

Progress = Callable[[str], None]
AGREEMENT_ROWS = 1000
PROFILE_ROWS = 1000  # training rows answered for the prediction reference
EXAMPLE_CANDIDATES = 50  # training rows looked at for the OpenAPI page's example


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
    reused_from_run: str | None = None  # the run an existing Bento of this version names
    build: dict[str, str] = field(default_factory=dict)  # the Bento's lineage (its labels)

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
            "reused": not self.created,
            "reused_from_run": self.reused_from_run,
            "build": self.build,
        }


def build(
    notebook: str,
    *,
    run_id: str | None = None,
    store: str | None = None,
    templates: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    allow_side_effects: bool = False,
    progress: Progress = lambda message: None,
) -> BuildResult:
    """Build the run's Bento; see the module docstring for the steps."""
    from mlnb.reporting.paths import relative_monitor_folder

    bentoml_store.quiet_bentoml()
    current = None  # the notebook as it is now: the run's pipeline too when it is unchanged
    if Path(notebook).is_file():
        current = load_pipeline(notebook)
        _precheck(current, allow_side_effects)
    inputs = collect(notebook, run_id=run_id, store=store, progress=progress, current=current)
    progress(f"building run {inputs.run_id} of {inputs.pipeline.notebook}")
    model_variable = str(inputs.model_record.get("variable") or "model")
    serve = extract_serve_code(inputs.pipeline, model_variable, inputs.run.get("parameters", {}))
    _scan(inputs.pipeline, serve, inputs.sources)
    _check_side_effects(inputs.pipeline, serve, inputs.sources, allow_side_effects, progress)
    _describe_serve_code(serve, progress)

    base_dir = localmods.notebook_folder(inputs.pipeline)
    loader = inputs.model_format
    schema = RequestSchema.from_training_data(
        inputs.training_data, max_rows, categories=_categories(inputs)
    )
    with modelfile.importable(base_dir):  # the notebook's own modules, as in its kernel
        native = modelfile.load_model(inputs.model_path, loader)
        task = task_of(native)
        if loader == "cloudpickle":
            progress("the model holds code defined in the notebook: it is saved by value")
        rows, rows_kind = _agreement_rows(inputs, schema)
        make_predictor = _predictor_factory(serve, task, native)
        _check_serve_code(make_predictor, native, rows, serve, inputs)
        predictions_reference = _prediction_profile(make_predictor(native), inputs, schema)
        choice = choose_format(
            native, inputs.model_path, schema, make_predictor, rows, rows_kind, serve, task,
            progress, native_name=modelfile.MODEL_FILES[loader],
        )  # fmt: skip
        explain = explaining.plan(
            native, _background_rows(inputs, schema), task=task, classes=None,
            preprocess=make_predictor(native).preprocess, model_format=choice.format,
            model_path=inputs.model_path, loader=loader, progress=progress,
        )  # fmt: skip
    model_format, files, reason = choice.format, choice.files, choice.reason
    # /explain loads an ONNX Bento's native model: its libraries are the Bento's too
    loads_native = model_format == "native" or bool(explain.section.get("model"))
    model_modules = modelfile.referenced_modules(native) if loads_native else set()
    carried = localmods.local_modules(inputs.pipeline, base_dir, model_modules)
    local_names = localmods.top_names(carried)
    localmods.check_names(local_names, inputs.pipeline.notebook)
    for top in pins.unresolved_modules(model_modules, frozenset(local_names)):
        progress(
            f"warning: the model refers to module {top!r}, which is neither installed as a "
            "package nor beside the notebook; the Bento may not load it"
        )
    if carried:
        progress(f"local modules carried into the Bento: {', '.join(sorted(local_names))}")
    name = version.bento_name(inputs.pipeline.notebook)
    model_tag = f"{name}_model:{version.model_digest(files, model_format, inputs.model_path)}"
    requirements = pins.requirements(
        model_format, _service_modules(serve, model_format, loader), inputs.packages,
        model_modules=model_modules, local_modules=local_names, extra=explain.packages,
    )  # fmt: skip
    python_version = pins.python_minor(inputs.python_version)
    contract = serve_contract(inputs, progress)
    example = _example_row(inputs, schema, progress)
    bento_version = version.content_version(
        serve=serve.fingerprint(),
        model=model_tag,
        model_format=model_format,
        schema=schema.to_json(),
        requirements=requirements,
        python=python_version,
        templates=render.template_sources(templates),
        runtime=version.runtime_digest(),
        local_modules={relative: sha256_file(path) for relative, path in carried.items()},
        contract=contract,
        explain=explain.section,
        example=example,
    )
    build_dir = folder.build_folder(inputs.store.root, name, bento_version)
    lineage_info = lineage.build_info(
        inputs.run,
        notebook=inputs.pipeline.notebook,
        project=inputs.store.root.parent,
        model_format=model_format,
        model=native,
    )
    labels = lineage.labels(lineage_info, model_format)
    plan = BentoPlan(
        run_id=inputs.run_id,
        notebook=inputs.pipeline.notebook,
        model_stage=str(inputs.model_record.get("stage") or "train"),
        model_class=str(inputs.model_record.get("class") or type(native).__name__),
        loader=loader,
        training_profile=inputs.training_data.get("profile"),
        metrics=inputs.run.get("metrics") or {},
        name=name,
        version=bento_version,
        model_tag=model_tag,
        model_format=model_format,
        native_reason=reason,
        task=task,
        classes=plain_classes(native),
        schema=schema,
        serve=serve,
        requirements=tuple(requirements),
        python_version=python_version,
        local_modules=tuple(sorted(local_names)),
        labels=labels,
        build=lineage_info,
        monitor_dir=relative_monitor_folder(name, bento_version),
        contract=contract,
        explain=explain.section,
        prediction_profile=predictions_reference,
        example=example,
    )
    tag = plan.tag
    generated = _render(plan, templates, explain.files)
    secrets.check_no_credentials(secrets.scan_files(generated), inputs.pipeline.notebook, None)
    report = _run_report(inputs, progress, lineage_info["notebook"])
    folder.write_build_dir(build_dir, {**generated, REPORT_FILE: report, **explain.files}, carried)
    _describe_folder(build_dir, progress)
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
    if bentoml_store.store_model(model_tag, files, labels=labels, metadata=metadata):
        progress(f"model {model_tag} stored")
    else:
        progress(f"model {model_tag} exists already")
    created = bentoml_store.build_bento(build_dir, name, bento_version)
    reused_from = None
    if created:
        progress(f"bento {tag} built")
    else:
        existing = bentoml_store.stored_lineage(tag)
        reused_from = existing.run
        progress(f"reused the existing Bento {tag} ({existing.describe()}; same content)")
    if not any(b.get("bento") == tag for b in inputs.run.get("builds") or []):
        entry: BuildEntry = {
            "bento": tag, "model": model_tag, "format": model_format, "built_at": utc_now(),
        }  # fmt: skip
        if reused_from is not None:
            entry["reused_from_run"] = reused_from
        inputs.store.add_build(inputs.run_id, entry)
    return BuildResult(
        bento=tag,
        model=model_tag,
        format=model_format,
        run_id=inputs.run_id,
        build_dir=build_dir,
        created=created,
        reason=reason,
        agreement=choice.agreement,
        left_out=serve.left_out,
        reused_from_run=reused_from,
        build=lineage_info,
    )


REPORT_FILE = "report.html"
SERVE_CODE_FILE = f"{SERVE_CODE_MODULE}.py"  # the notebook's code and the model load


def _render(
    plan: BentoPlan, templates: str | None, explain_files: Mapping[str, bytes]
) -> dict[str, str]:
    """The generated files of the build folder: the service, its serve-code module, the
    bentofile (each rendered from the plan's names) and the spec; a bentofile that leaves
    out a file the service imports is refused."""
    context = service_context(plan)
    service = render.render(render.SERVICE_TEMPLATE, context, templates)
    bentofile = render.render(render.BENTOFILE_TEMPLATE, context, templates)
    if SERVE_CODE_FILE[:-3] in service:  # an older service template does not import it
        render.check_included(bentofile, [SERVE_CODE_FILE])
    if "explain_handler" in service:  # ... nor serve /explain
        render.check_included(bentofile, list(explain_files))
    spec = service_spec(plan)
    return {
        "service.py": service,
        SERVE_CODE_FILE: render.render(render.SERVE_CODE_TEMPLATE, context, templates),
        "bentofile.yaml": bentofile,
        "mlnb_service.json": json.dumps(spec, indent=2, allow_nan=False) + "\n",
    }


def _run_report(inputs: BuildInputs, progress: Progress, notebook: str) -> str:
    """The run's report (``mlnb report``), so a deployed version carries how it was made;
    the notebook named as the Bento's labels name it (``notebook``), not by the build
    machine's absolute path."""
    from markupsafe import escape

    from mlnb.run_report import render_run_report

    html = render_run_report(inputs.store, inputs.run_id)
    recorded = str(inputs.run["notebook"].get("path") or "")
    if recorded and recorded != notebook:
        html = html.replace(str(escape(recorded)), str(escape(notebook)))
    progress(f"report of run {inputs.run_id} included as {REPORT_FILE}")
    return html


def _describe_folder(build_dir: Path, progress: Progress) -> None:
    hidden = folder.hidden_part(build_dir)
    if hidden is None:
        progress(f"build folder {build_dir} (cd there and run bentoml build to build it by hand)")
    else:
        progress(
            f"build folder {build_dir}: under the hidden folder {hidden}, which bentoml build "
            "refuses; copy it elsewhere to build it by hand"
        )


def precheck(notebook: str, *, allow_side_effects: bool = False) -> ServeCode:
    """The notebook as it is now: a credential in a cell, serve code with side effects and a
    local module the cells import under the name of one of the Bento's own modules are
    refused early, before any run."""
    return _precheck(load_pipeline(notebook), allow_side_effects)


def _precheck(pipeline: Pipeline, allow_side_effects: bool) -> ServeCode:
    """:func:`precheck` of a notebook's pipeline, read already."""
    trains = [*pipeline.stages_of_kind("train"), *pipeline.stages_of_kind("step")]  # Kale steps
    variable = next((s.options.model for s in trains if s.options.model), None) or "model"
    serve = extract_serve_code(pipeline, variable, pipeline.parameter_defaults)
    sources = {cell.index: cell.source for cell in read_notebook(pipeline.notebook).code_cells}
    _scan(pipeline, serve, sources)
    check_no_side_effects(serve, sources, pipeline.notebook, allowed=allow_side_effects)
    carried = localmods.local_modules(pipeline, localmods.notebook_folder(pipeline))
    localmods.check_names(localmods.top_names(carried), pipeline.notebook)
    return serve


def _scan(pipeline: Pipeline, serve: ServeCode, sources: Mapping[int, str]) -> None:
    """Every cell the Bento carries (its report shows them all), and the run's values of the
    parameters baked into the serve code."""
    findings = secrets.scan(sorted(sources.items()), pipeline.parsed)
    cell = pipeline.parameters_cell
    if cell is not None and serve.parameters:
        findings += secrets.scan_values(cell, sources.get(cell, ""), serve.parameters)
    if not findings:
        return
    stage_of = {c: stage.name for stage in pipeline.stages for c in stage.cells}
    first, *others = secrets.merge(findings)
    shipped = {*serve.cells, *(b.cell for b in serve.setup), cell}
    if first.cell not in shipped and not first.where:
        first = replace(first, where="shown in the Bento's report.html")
    stage = stage_of.get(first.cell) if first.cell is not None else None
    secrets.check_no_credentials([first, *others], pipeline.notebook, stage)


def _check_side_effects(
    pipeline: Pipeline,
    serve: ServeCode,
    sources: Mapping[int, str],
    allowed: bool,
    progress: Progress,
) -> None:
    effects = check_no_side_effects(serve, dict(sources), pipeline.notebook, allowed=allowed)
    for effect in effects:  # allowed: said, not silent
        progress(f"warning (--allow-side-effects): {cell_label(effect.cell)}, {effect.describe()}")


def _describe_serve_code(serve: ServeCode, progress: Progress) -> None:
    if serve.stage is None:
        progress("no serve stage: the service answers with the model's own predict")
        return
    defined = [name for name, present in serve.functions.items() if present]
    what = ", ".join(defined) or "no predict (the model's own predict answers)"
    progress(f"serve code of stage {serve.stage!r}: {what}")
    for line in serve.left_out:
        progress(f"  left out {line}")


def _categories(inputs: BuildInputs) -> dict[str, list[Any]]:
    """The categories of each categorical training column, from the kept rows' parquet files.

    A parquet file keeps a categorical column's whole dtype, unused categories included.
    """
    found: dict[str, list[Any]] = {}
    dtypes = inputs.training_data.get("dtypes") or {}
    wanted = [name for name, dtype in dtypes.items() if str(dtype) == "category"]
    if not wanted:
        return found
    for which in ("sample", "holdout"):
        path = inputs.data_path(which)
        if path is None:
            continue
        frame = pd.read_parquet(path, columns=wanted)
        for name in wanted:
            if isinstance(frame[name].dtype, pd.CategoricalDtype) and name not in found:
                found[name] = frame[name].cat.categories.tolist()
    return found


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
    return _valid_rows(path, schema, AGREEMENT_ROWS), kind


def _valid_rows(path: Path, schema: RequestSchema, limit: int) -> pd.DataFrame:
    """Up to ``limit`` rows of a kept parquet file that the service's schema accepts."""
    frame = pd.read_parquet(path).head(limit)
    records = schema.wire_rows(frame[schema.names])  # as a client sends them: JSON values
    try:
        return schema.frame({"rows": records})
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
        return schema.frame({"rows": valid})


def _example_row(
    inputs: BuildInputs, schema: RequestSchema, progress: Progress
) -> dict[str, Any] | None:
    """The first training row the service accepts, as a client sends it (the OpenAPI page's
    example): one with no missing value when the first rows hold one. None when the run
    kept no training rows, or when the row looks like it holds a credential (the build's
    scan of generated files): the page then shows no example, and the build says why."""
    path = inputs.data_path("sample")
    if path is None:
        return None
    records = schema.wire_rows(pd.read_parquet(path).head(EXAMPLE_CANDIDATES)[schema.names])
    accepted = []
    for record in records:
        try:
            schema.frame({"rows": [record]})
            json.dumps(record, allow_nan=False)
        except (RequestRejected, ValueError, TypeError):
            continue
        accepted.append(record)
    complete = [record for record in accepted if None not in record.values()]
    example = next(iter(complete or accepted), None)
    if example is not None:
        text = "\n".join(f"{name} = {value!r}" for name, value in example.items())
        found = secrets.scan_files({"the example row": text})
        if found:
            column = list(example)[found[0].line - 1]
            progress(
                f"the OpenAPI page shows no example row: column {column!r} of the training "
                f"row holds what looks like {found[0].what}, which must not ship in the Bento"
            )
            return None
    return example


def _background_rows(inputs: BuildInputs, schema: RequestSchema) -> pd.DataFrame | None:
    """Training rows as the service validates them: what /explain explains against."""
    path = inputs.data_path("sample")
    if path is None:
        return None
    try:
        return _valid_rows(path, schema, explaining.BACKGROUND_ROWS)
    except RequestRejected:
        return None


def _prediction_profile(
    predictor: Predictor, inputs: BuildInputs, schema: RequestSchema
) -> dict[str, Any] | None:
    """What the service answers on the training sample: the reference for its predictions."""
    path = inputs.data_path("sample")
    if path is None:
        return None
    try:
        rows = _valid_rows(path, schema, PROFILE_ROWS)
    except RequestRejected:
        return None
    answer = predictor.answer(rows)
    return prediction_profile(answer["predictions"], predictor.task == "classification")


def _predictor_factory(serve: ServeCode, task: str, native: Any) -> Callable[[Any], Predictor]:
    """Run the serve code afresh around a model, as the service's mlnb_serve_code.py does:
    once per model (the predictor around ``native`` is made once, and shared by every check
    that asks for it)."""
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
    made: list[Predictor] = []

    def make(model: Any) -> Predictor:
        if model is native and made:
            return made[0]
        namespace: dict[str, Any] = {"__name__": "mlnb_serve_code", serve.model_variable: model}
        exec(compiled, namespace)
        predictor = Predictor(
            model,
            task,
            predict=namespace.get("predict") if serve.functions["predict"] else None,
            preprocess=namespace.get("preprocess") if serve.functions["preprocess"] else None,
            postprocess=namespace.get("postprocess") if serve.functions["postprocess"] else None,
        )
        if model is native:
            made.append(predictor)
        return predictor

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


def _service_modules(serve: ServeCode, model_format: str, loader: str) -> set[str]:
    """What the service imports: the serve code's imports, and cloudpickle to load a model
    that holds the notebook's code."""
    modules = _imported_modules(serve)
    if model_format == "native" and loader == "cloudpickle":
        modules.add("cloudpickle")
    return modules


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
