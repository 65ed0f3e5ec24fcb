"""What a build decided, in one frozen object: the input of every file it renders.

:func:`mlnb.bento.builder.build` works out the Bento's name and version, the model's format
and tag, the request schema, the serve code, the pins, the lineage, the contract, the
explainer, the prediction profile and the example row; :class:`BentoPlan` holds them, and
:func:`mlnb.bento.context.service_context` (the templates' names) and
:func:`mlnb.bento.context.service_spec` (``mlnb_service.json``) read them by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlnb.bento.servecode import ServeCode
from mlnb.serving.schema import RequestSchema


@dataclass(frozen=True)
class BentoPlan:
    """One build's decisions, before anything is written.

    The run: ``run_id``; ``notebook``, the pipeline's path on this machine (the Bento names
    it relative to the project, as ``build["notebook"]`` does); ``model_stage`` and
    ``model_class``, what trained the model and its class; ``loader``, how the run saved it
    (``"joblib"`` or ``"cloudpickle"``); ``training_profile`` and ``metrics``, as recorded.
    The Bento: ``name``, ``version``, ``model_tag``, ``model_format`` (``"onnx"`` or
    ``"native"``, and ``native_reason`` why native), ``task``, ``classes`` (the model's, as
    plain values; None for a regressor), ``schema``, ``serve`` (the serve code),
    ``requirements``, ``python_version``, ``local_modules`` (the carried modules' names),
    ``labels`` and ``build`` (the lineage: :func:`mlnb.bento.lineage.build_info`),
    ``monitor_dir`` (relative to the serving process), ``contract``
    (:func:`mlnb.bento.context.serve_contract`), ``explain`` (what ``/explain`` loads),
    ``prediction_profile`` and ``example`` (a training row, as a client sends it).
    """

    run_id: str
    notebook: str
    model_stage: str
    model_class: str
    loader: str
    training_profile: Mapping[str, Any] | None
    metrics: Mapping[str, Any]
    name: str
    version: str
    model_tag: str
    model_format: str
    native_reason: str | None
    task: str
    classes: tuple[Any, ...] | None
    schema: RequestSchema
    serve: ServeCode
    requirements: tuple[str, ...]
    python_version: str
    local_modules: tuple[str, ...]
    labels: Mapping[str, str]
    build: Mapping[str, str]
    monitor_dir: str
    contract: Mapping[str, Any] | None
    explain: Mapping[str, Any]
    prediction_profile: Mapping[str, Any] | None
    example: Mapping[str, Any] | None

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"
