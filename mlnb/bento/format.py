"""ONNX or native: the model format a Bento serves, and why.

The ONNX adapter must offer every model member the serve code uses; then the conversion is
tried with the training dtypes and, if onnxruntime cannot run that, with float32 features;
the first one that agrees with the original through the serve code wins. Otherwise the
native model is served, and the reason lists each attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from mlnb.bento import onnx_convert
from mlnb.bento.agreement import check_agreement
from mlnb.bento.onnx_convert import NotConvertible
from mlnb.bento.servecode import ServeCode
from mlnb.serving.answer import Predictor
from mlnb.serving.onnx_model import CLASSIFIER_MEMBERS, REGRESSOR_MEMBERS, OnnxModel
from mlnb.serving.schema import RequestSchema

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelChoice:
    format: str
    files: dict[str, bytes | Path]  # what goes into the BentoML model store
    reason: str | None  # why not ONNX
    agreement: str | None  # how well ONNX agreed


def choose_format(
    native: Any,
    model_path: Path,
    schema: RequestSchema,
    make_predictor: Callable[[Any], Predictor],
    rows: pd.DataFrame,
    rows_kind: str,
    serve: ServeCode,
    task: str,
    progress: Progress,
    *,
    native_name: str = "model.joblib",
) -> ModelChoice:
    """ONNX when a conversion agrees through the serve code, else native with the reason.

    ``native_name`` is the native model's file name in the model store (``model.joblib``, or
    ``model.cloudpickle`` for a model holding the notebook's code).
    """
    members = CLASSIFIER_MEMBERS if task == "classification" else REGRESSOR_MEMBERS
    if not hasattr(native, "predict_proba"):  # an SVC without probability=True
        members = members - {"predict_proba"}
    unsupported = sorted(serve.model_members - members)
    reasons = []
    booster = onnx_convert.booster_of(native)
    if booster is not None:
        progress(f"{booster} model: trying onnxmltools' {booster} converter")
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
    return ModelChoice("native", {native_name: model_path}, reason, None)
