"""The few calls a generated ``service.py`` makes: read its spec, load the model, start up.

A Bento made by ``mlnb build`` holds ``mlnb_service.json`` beside ``service.py``: the request
schema, what the service is (Bento tag, run id, task, model format), the default monitoring
folder and the training data's reference profile. :class:`ServiceSpec` reads it once at
import; :meth:`ServiceSpec.start` runs once per worker, from the service's ``__init__``, and
:meth:`ServiceSpec.stop` once as the worker stops, from its ``on_shutdown`` hook.

BentoML imports ``service.py`` in its arbiter as well as in each worker, so the module itself
stays light: this module, the schema and the HTTP layer import neither numpy nor pandas. The
notebook's code and the model are in ``mlnb_serve_code.py``, which the service's ``__init__``
imports through :meth:`ServiceSpec.serve_code`, in the worker only. :func:`bentoml_config` is
the service's BentoML configuration: BentoML's access log and its tracing of ``/predict`` off
unless ``$MLNB_ACCESS_LOG`` / ``$MLNB_TRACING`` turn them back on.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlnb.errors import RequestRejected, error_response
from mlnb.serving.http import DEFAULT_MAX_BODY_BYTES, PredictHandler
from mlnb.serving.info import BUILD_KEYS, ServiceInfo
from mlnb.serving.schema import RequestSchema

if TYPE_CHECKING:
    from mlnb.serving.answer import Fn

SPEC_FILE = "mlnb_service.json"
SERVE_CODE_MODULE = "mlnb_serve_code"  # mlnb_serve_code.py: the notebook's code and the model
MONITOR_DIR_ENV = "MLNB_MONITOR_DIR"  # overrides the build's monitoring folder
MAX_ROWS_ENV = "MLNB_MAX_ROWS"  # overrides the largest request, in rows
MAX_BODY_ENV = "MLNB_MAX_BODY_BYTES"  # ... and in bytes
GC_TUNING_ENV = "MLNB_GC_TUNING"  # "off" keeps Python's default garbage collector settings
ACCESS_LOG_ENV = "MLNB_ACCESS_LOG"  # "on": BentoML's access log, a line per request
TRACING_ENV = "MLNB_TRACING"  # "on": BentoML's OpenTelemetry middleware traces /predict too

log = logging.getLogger("mlnb.serving")


@dataclass
class ServiceSpec:
    """The contents of ``mlnb_service.json``, and the folder it is in (the Bento's)."""

    data: dict[str, Any]
    folder: Path | None = None

    @classmethod
    def beside(cls, module_file: str) -> ServiceSpec:
        """The spec next to the generated service module."""
        path = Path(module_file).resolve().with_name(SPEC_FILE)
        return cls(json.loads(path.read_text()), path.parent)

    def serve_code(self) -> ModuleType:
        """``mlnb_serve_code.py`` beside the spec, imported once per process: the notebook's
        setup cells, parameters and serve code, and the model under the notebook's name."""
        if self.folder is None:
            raise RuntimeError("a ServiceSpec made without ServiceSpec.beside has no folder")
        path = self.folder / f"{SERVE_CODE_MODULE}.py"
        known = sys.modules.get(SERVE_CODE_MODULE)
        if known is not None and Path(str(getattr(known, "__file__", ""))) == path:
            return known
        import importlib.util

        spec = importlib.util.spec_from_file_location(SERVE_CODE_MODULE, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py path always loads
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[SERVE_CODE_MODULE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[SERVE_CODE_MODULE]
            raise
        return module

    @property
    def schema(self) -> RequestSchema:
        schema = RequestSchema.from_json(self.data["schema"])
        if os.environ.get(MAX_ROWS_ENV):
            schema = RequestSchema(schema.fields, int(os.environ[MAX_ROWS_ENV]))
        return schema

    @property
    def task(self) -> str:
        return str(self.data["task"])

    def load_model(self, tag: str) -> Any:
        """The model from the BentoML model store: an ONNX adapter, or the native original
        (``model.joblib``, or ``model.cloudpickle`` when it holds the notebook's own code)."""
        import bentoml

        folder = Path(bentoml.models.get(tag).path)
        if self.data["format"] == "onnx":
            from mlnb.serving.onnx_model import OnnxModel

            return OnnxModel.load(folder)
        name = str(self.data.get("model_file") or "model.joblib")
        if name.endswith(".cloudpickle"):
            import pickle

            import cloudpickle  # type: ignore[import-untyped]  # noqa: F401 - functions saved by value load through it

            with open(folder / name, "rb") as handle:
                return pickle.load(handle)
        import joblib  # type: ignore[import-untyped]

        return joblib.load(folder / name)

    def row_model(self) -> Any:
        """A row as a pydantic model: what the OpenAPI page shows for ``rows`` (every training
        column with its type, nullability and categories), with the spec's ``example`` (a
        training row the build saw; none in an older spec)."""
        from mlnb.serving.row_model import row_model

        return openapi_row(row_model(self.schema), self.data.get("example"))

    def rows_field(self) -> Any:
        """The declared ``rows`` parameter's description, and the example request's rows."""
        import pydantic

        example = self.data.get("example")
        return pydantic.Field(
            description="rows keyed by the training columns (or lists of values in their "
            f"order), at most {self.schema.max_rows}",
            json_schema_extra={"example": [example]} if example else None,
        )

    def handler(
        self,
        model: Any,
        *,
        predict: Fn | None = None,
        preprocess: Fn | None = None,
        postprocess: Fn | None = None,
        hooks: Any = None,
    ) -> PredictHandler:
        from mlnb.serving.answer import Predictor  # numpy and pandas: in the worker

        predictor = Predictor(
            model, self.task, predict=predict, preprocess=preprocess, postprocess=postprocess
        )
        limit = int(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY_BYTES)
        return PredictHandler(self.schema, predictor, max_body_bytes=limit, hooks=hooks)

    def explain_handler(
        self, tag: str, model: Any, *, preprocess: Fn | None = None
    ) -> PredictHandler:
        """The ``/explain`` handler: ``/predict``'s validation, answered by
        :class:`~mlnb.serving.explaining.Explaining` (nothing loads until the first request,
        unless ``$MLNB_EXPLAIN_WARMUP=on``). ``model`` is the served model: the native one,
        or an ONNX adapter, whose native original the Bento carries beside the spec.
        ``tag`` is the BentoML model's (for a spec that keeps the native file there)."""
        from mlnb.serving.explaining import WARMUP_ENV, Explaining, load_native

        section = self.data.get("explain")  # None in a spec older than /explain

        def native() -> Any:
            kept = (section or {}).get("model")
            if not kept:
                return model
            if self.folder is not None and (self.folder / kept["file"]).is_file():
                return load_native(self.folder, kept)
            import bentoml

            return load_native(Path(bentoml.models.get(tag).path), kept)

        explaining = Explaining(
            section,
            self.folder or Path("."),
            task=self.task,
            classes=self.data.get("classes"),
            native=native,
            preprocess=preprocess,
        )
        if _on(os.environ.get(WARMUP_ENV)) and section and section.get("available"):
            try:
                explaining.warm_up()
            except Exception:
                log.exception("mlnb: warming up /explain failed; it loads on the first request")
        limit = int(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY_BYTES)
        return PredictHandler(
            self.schema, explaining, max_body_bytes=limit, failure="explanation-failed"
        )

    @property
    def service_name(self) -> str:
        """The BentoML service's name: the Bento's, or the role a release gave this version."""
        return str(self.data.get("service_name") or self.data["bento_name"])

    def info(self) -> ServiceInfo:
        monitor_dir = self.monitor_folder()
        role = self.data.get("release_role")  # a version inside a release: R/<role>
        return ServiceInfo(
            bento_name=self.data["bento_name"],
            bento_version=self.data["bento_version"],
            run_id=self.data["run_id"],
            monitor_dir=monitor_dir,
            task=self.task,
            classes=self.data.get("classes"),
            features=list(self.data["schema"]["fields"]),
            profile=self.data.get("profile"),
            prediction_profile=self.data.get("prediction_profile"),
            contract=self.data.get("contract"),  # None in a spec older than contract checks
            metrics=self.data.get("metrics"),
            takes_feedback=not role,
            build=self.build,
        )

    def monitor_folder(self) -> Path:
        """Where this worker logs, absolute: ``$MLNB_MONITOR_DIR`` (a release's version in
        its role's folder under it), else the spec's folder, which :mod:`mlnb.bento` writes
        relative (``mlnb-monitoring/<name>/<version>``: under :func:`serving_folder`; an older
        Bento's is an absolute folder of the machine that built it)."""
        role = self.data.get("release_role")
        chosen = os.environ.get(MONITOR_DIR_ENV)
        if chosen:
            return (Path(chosen) / str(role) if role else Path(chosen)).resolve()
        return (serving_folder() / str(self.data["monitor_dir"])).resolve()

    def announce(self, folder: Path) -> None:
        """One log line at start-up: where the monitoring logs go, and why there."""
        if os.environ.get(MONITOR_DIR_ENV):
            why = f"from ${MONITOR_DIR_ENV}"
        elif Path(str(self.data["monitor_dir"])).is_absolute():  # a release's, an older Bento's
            why = f"the folder the Bento names; ${MONITOR_DIR_ENV} chooses another"
        else:
            why = f"under the folder bentoml serve started in; ${MONITOR_DIR_ENV} chooses another"
        if log.getEffectiveLevel() > logging.INFO:  # BentoML leaves only its own at INFO
            log.setLevel(logging.INFO)
        log.info("mlnb: %s logs its monitoring in %s (%s)", self.tag, folder, why)

    @property
    def tag(self) -> str:
        return f"{self.data['bento_name']}:{self.data['bento_version']}"

    @property
    def build(self) -> dict[str, str]:
        """The Bento's lineage (:data:`~mlnb.serving.info.BUILD_KEYS`), from the spec's
        ``build`` object; a spec older than it gives the run and the model format it knows,
        and ``"unknown"`` for the rest."""
        known = self.data.get("build") or {}
        fallback = {
            "run": str(self.data.get("run_id", "unknown")),
            "model_format": str(self.data.get("format", "unknown")),
        }
        return {key: str(known.get(key) or fallback.get(key) or "unknown") for key in BUILD_KEYS}

    def start(self, hooks: Any) -> None:
        """Once per worker: configure the monitoring hooks, then tune the garbage collector."""
        if os.environ.get("MLNB_MONITORING", "on").lower() not in ("off", "0", "false"):
            try:
                info = self.info()
                self.announce(info.monitor_dir)
                hooks.configure(info)
            except Exception:
                log.exception("mlnb: the monitoring hooks failed to start; serving without")
        if os.environ.get(GC_TUNING_ENV, "on").lower() not in ("off", "0", "false"):
            tune_gc()

    def stop(self, hooks: Any) -> None:
        """Once per worker, as it stops: monitoring writes all that was answered."""
        shutdown = getattr(hooks, "shutdown", None)  # hooks of an older mlnb have none
        if shutdown is None:
            return
        try:
            shutdown()
        except Exception:
            log.exception("mlnb: the monitoring hooks failed to stop")


def serving_folder() -> Path:
    """The folder ``bentoml serve`` was started in, as the shell that started it says
    (``$PWD``): BentoML moves its processes into the Bento's own folder before it imports the
    service, so their working folder is the Bento's. Without ``$PWD`` (a supervisor that sets
    none), BentoML's home (``$BENTOML_HOME``, by default ``~/bentoml``): never inside a Bento.
    A program that starts ``bentoml serve`` in another folder passes its ``PWD`` (or
    ``$MLNB_MONITOR_DIR``) as a shell would; ``mlnb serve`` does."""
    told = os.environ.get("PWD")
    if told and os.path.isabs(told) and os.path.isdir(told):
        return Path(told)
    home = os.environ.get("BENTOML_HOME") or os.path.join(os.path.expanduser("~"), "bentoml")
    return Path(home)


def bentoml_config(
    *, timeout: float, path: str = "/predict", environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The ``@bentoml.service`` configuration of a generated service.

    BentoML's per-request extras that a 1-row request pays more for than for the model are
    off unless asked for: its access log (``$MLNB_ACCESS_LOG=on`` turns it back on) and its
    OpenTelemetry middleware on ``path``, which records nothing unless BentoML's tracing is
    configured (``$MLNB_TRACING=on``). Metrics stay on (``/metrics``). BentoML requires a
    request timeout (``traffic.timeout`` above zero), so that one stays, at ``timeout``
    seconds. A BentoML configuration file (``$BENTOML_CONFIG``) still overrides all of these.
    """
    config: dict[str, Any] = {"traffic": {"timeout": timeout}}
    if not _on(environ.get(ACCESS_LOG_ENV)):
        config["logging"] = {"access": {"enabled": False}}
    if not _on(environ.get(TRACING_ENV)):
        config["tracing"] = {"excluded_urls": [path]}
    return config


def _on(value: str | None) -> bool:
    return (value or "").strip().lower() in ("on", "1", "true", "yes")


def tune_gc() -> None:
    """Freeze what start-up allocated and collect the young generation less often.

    Under load a BentoML worker keeps every request's context alive for the traffic timeout;
    with Python's default thresholds the collector then walks that heap again and again, and
    its pauses, not the model, make most of the latency tail (see mlnb's serving benchmark).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def openapi_row(model: Any, example: Mapping[str, Any] | None) -> Any:
    """``model`` as the OpenAPI 3.0 page wants it: a nullable column as ``nullable: true``
    (pydantic writes ``anyOf`` with ``type: null``, which 3.0 lacks), and the example row."""

    def describe(schema: dict[str, Any], _: Any = None) -> None:
        for prop in (schema.get("properties") or {}).values():
            options = prop.get("anyOf")
            if options and {"type": "null"} in options and len(options) == 2:
                prop.pop("anyOf")
                prop.update(next(o for o in options if o != {"type": "null"}))
                prop["nullable"] = True
        if example:
            schema["example"] = dict(example)

    config = {**model.model_config, "json_schema_extra": describe}
    return type(model.__name__, (model,), {"model_config": config, "__module__": __name__})


def api_answer(handler: PredictHandler, rows: Any) -> Any:
    """The answer of the declared ``predict`` API: the dict, or a JSON error response."""
    try:
        return handler.handle_json({"rows": rows})
    except RequestRejected as rejection:
        from starlette.responses import JSONResponse

        status, body = error_response(rejection)
        return JSONResponse(body, status_code=status)
