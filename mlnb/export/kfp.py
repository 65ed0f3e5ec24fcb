"""``mlnb export kfp``: the stage DAG compiled with the kfp SDK into a KFP v2 pipeline spec.

The pipeline module is rendered from ``templates/kfp_pipeline.py.j2`` (one lightweight
component per stage, the notebook parameters as pipeline parameters), imported, and compiled
with ``kfp.compiler``. Stage outputs travel between tasks as KFP artifacts; a train stage
also outputs a ``system.Metrics`` (its metrics) and a ``system.Model`` (its model, with the
framework and the metrics as metadata), which KFP's UI shows.

Each task pip-installs this mlnb release and the packages the notebook imports, pinned to
the versions of the notebook's last successful run (its record's environment), else to the
versions installed where the export runs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb import __version__
from mlnb.errors import ExportError as ExportError  # re-exported: it lived here
from mlnb.pipeline import Pipeline
from mlnb.templating import environment

TEMPLATE = "kfp_pipeline.py.j2"
DEFAULT_IMAGE = "python:3.11"
KFP_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str"}
# the component functions' own arguments: a notebook parameter may not take these names
RESERVED = frozenset({"notebook", "outputs", "metrics", "model"})
# what every task runs on besides the notebook's imports: values travel between tasks as
# joblib files, stages run through papermill in an ipykernel
TASK_RUNTIME = ("joblib", "papermill", "ipykernel")


@dataclass
class StageTask:
    name: str
    function: str
    task: str
    metrics: bool = False  # outputs a system.Metrics: a train stage, or one defining metrics
    model: bool = False  # outputs a system.Model: a train stage
    parameters: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # upstream stages whose outputs it reads
    after: list[str] = field(default_factory=list)  # tasks it waits for without data
    outputs: list[str] = field(default_factory=list)  # names later stages read from it


def stage_tasks(pipeline: Pipeline) -> list[StageTask]:
    """Per stage: the parameters it reads, the stages it reads names from, and ordering."""
    typed = {p.name for p in pipeline.parameters if p.type_name in KFP_TYPES}
    defined_by: dict[str, str] = {}
    tasks: list[StageTask] = []
    by_name: dict[str, StageTask] = {}
    ident = {s.name: _identifier(s.name) for s in pipeline.stages}
    _check_parameter_names(pipeline)
    for stage in pipeline.stages:
        task = StageTask(stage.name, f"stage_{ident[stage.name]}", f"{ident[stage.name]}_task")
        task.model = stage.kind == "train" or bool(stage.options.model)
        task.metrics = task.model or any(n in stage.defines for n in pipeline.metric_names)
        task.parameters = [
            {"name": p.name, "type": KFP_TYPES[p.type_name]}
            for p in pipeline.parameters
            if p.name in typed and p.name in stage.uses and p.name not in defined_by
        ]
        sources = dict.fromkeys(defined_by[n] for n in stage.uses if n in defined_by)
        task.inputs = [ident[s] for s in sources]
        task.after = [f"{ident[d]}_task" for d in stage.depends_on if d not in sources]
        tasks.append(task)
        for name in stage.uses:
            if name in defined_by:
                by_name[defined_by[name]].outputs.append(name)
        for name in stage.defines:
            defined_by[name] = stage.name
        by_name[stage.name] = task
    for task in tasks:
        task.outputs = sorted(set(task.outputs))
    return tasks


def _check_parameter_names(pipeline: Pipeline) -> None:
    for parameter in pipeline.parameters:
        if parameter.name in RESERVED or parameter.name.startswith("from_"):
            raise ExportError(
                f"the notebook parameter {parameter.name!r} has the name of an argument of "
                "every exported task (notebook, outputs, metrics, model, from_<stage>)",
                fix=f"rename the parameter {parameter.name!r} in the parameters cell",
            )


def task_packages(pipeline: Pipeline, recorded: Mapping[str, str] | None = None) -> list[str]:
    """What each task pip-installs: this mlnb release and every package the notebook imports,
    ``name==version``, at the ``recorded`` versions (a run record's environment) where they
    are known, else at the versions installed here. Modules that are not installed packages
    (the standard library, files beside the notebook) are not pinned."""
    from mlnb.run.lineage import imported_modules, package_versions

    sources = [*pipeline.setup_sources, *(s for stage in pipeline.stages for s in stage.sources)]
    installed = package_versions(imported_modules(sources) | set(TASK_RUNTIME))
    known = {_normal(name): version for name, version in (recorded or {}).items()}
    pins = {"mlnb": __version__}
    for name, version in installed.items():
        if _normal(name) != "mlnb":
            pins[name] = known.get(_normal(name), version)
    return [f"{name}=={version}" for name, version in pins.items()]


def recorded_packages(notebook: str | Path) -> dict[str, str]:
    """The package versions of the notebook's last successful run, ``{}`` when its store
    holds none (or cannot be read: the export then pins what is installed here)."""
    from mlnb.store import Store

    try:
        with Store.for_notebook(notebook) as store:
            record = store.latest_successful(notebook)
    except Exception:  # a missing or damaged store: nothing recorded to prefer
        return {}
    recorded: Mapping[str, Any] = (record.get("environment") if record else None) or {}
    packages = recorded.get("packages") or {}
    return {str(name): str(version) for name, version in packages.items()}


def render_pipeline_module(
    pipeline: Pipeline,
    notebook_json: str,
    *,
    image: str = DEFAULT_IMAGE,
    packages: list[str] | None = None,
    install_kfp: bool = True,
    templates: str | None = None,
    recorded: Mapping[str, str] | None = None,
) -> str:
    """The pipeline module's source. ``packages``: what each task installs (default
    :func:`task_packages`, pinned to ``recorded`` or, when None, to the notebook's last
    successful run's versions)."""
    if packages is None:
        if recorded is None:
            recorded = recorded_packages(pipeline.notebook)
        packages = task_packages(pipeline, recorded)
    env = environment(templates).overlay()
    env.filters["pyrepr"] = repr
    tasks = stage_tasks(pipeline)
    name = Path(pipeline.notebook).stem
    return env.get_template(TEMPLATE).render(
        notebook_name=Path(pipeline.notebook).name,
        mlnb_version=__version__,
        notebook_json=notebook_json,
        image=image,
        packages=packages,
        install_kfp=install_kfp,
        stages=tasks,
        source_tasks={t.function.removeprefix("stage_"): t.task for t in tasks},
        parameters=[
            {"name": p.name, "type": KFP_TYPES[p.type_name], "default": p.default}
            for p in pipeline.parameters
            if p.type_name in KFP_TYPES
        ],
        pipeline_name=re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "mlnb-pipeline",
        description=f"Stages of {Path(pipeline.notebook).name}, exported by mlnb {__version__}",
    )


def compile_pipeline(source: str, output: Path) -> None:
    """Import the rendered module and compile its pipeline to a KFP v2 YAML spec."""
    try:
        from kfp import compiler  # type: ignore[import-untyped]
    except ImportError:
        raise ExportError(
            "the kfp SDK is not installed", fix='pip install "mlnb[kfp]" (or pip install kfp)'
        ) from None
    with tempfile.TemporaryDirectory(prefix="mlnb-kfp-") as folder:
        module_path = Path(folder) / "mlnb_kfp_pipeline.py"
        module_path.write_text(source)
        spec = importlib.util.spec_from_file_location("mlnb_kfp_pipeline", module_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["mlnb_kfp_pipeline"] = module
        try:
            spec.loader.exec_module(module)
            tmp = output.with_name(f".{output.stem}.partial{output.suffix or '.yaml'}")
            compiler.Compiler().compile(module.pipeline, str(tmp))
            tmp.replace(output)
        finally:
            sys.modules.pop("mlnb_kfp_pipeline", None)


def notebook_text(path: str | Path) -> str:
    """The notebook as compact JSON, without outputs: what each task executes."""
    document = json.loads(Path(path).read_text())
    for cell in document.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return json.dumps(document, separators=(",", ":"))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _identifier(name: str) -> str:
    text = re.sub(r"\W+", "_", name).strip("_") or "stage"
    return f"s_{text}" if text[0].isdigit() else text
