"""What a Bento carries for ``POST /explain``, decided and checked at build time.

The explainer is made here once, as the service will make it (:func:`mlnb.explain.explainer_for`
over the background, after the serve code's ``preprocess``) and asked to explain a row: a
model that cannot be explained is said at build time, and its Bento answers ``/explain`` with
a 501 naming why, while ``/predict`` serves as ever.

What it carries, each named with its sha256 in ``mlnb_service.json``'s ``"explain"`` (part of
the Bento's version) and checked by the worker before loading:

- ``explain_background.parquet``: up to 100 training rows, as the service validates them
  (the training columns and dtypes);
- for an ONNX Bento, the native model file as ``explain_model.joblib`` (or ``.cloudpickle``):
  the explainer needs the original, ONNX has no tree structure or coefficients to read. It is
  kept in the Bento, not in the BentoML model, which holds the ONNX files only: ``/predict``
  never loads a pickle, and the model's tag stays what the ONNX conversion decides.

The packages the explainer needs (shap for scikit-learn trees; for an ONNX Bento also those
that load the native model) are returned for the Bento's pins.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from mlnb.serving.explaining import BACKGROUND_FILE, DEFAULT_MAX_EVALS, as_frame

BACKGROUND_ROWS = 100
MODEL_PREFIX = "explain_model."  # explain_model.joblib or explain_model.cloudpickle

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExplainPlan:
    section: dict[str, Any]  # mlnb_service.json's "explain"
    files: dict[str, bytes] = field(default_factory=dict)  # into the Bento's folder
    packages: tuple[str, ...] = ()  # to pin


def plan(
    native: Any,
    background: pd.DataFrame | None,
    *,
    task: str,
    classes: list[Any] | None,
    preprocess: Callable[[Any], Any] | None,
    model_format: str,
    model_path: Path,
    loader: str,
    progress: Progress,
) -> ExplainPlan:
    """The explainer of ``native`` over ``background``, and what the Bento needs for it."""
    if background is None or len(background) == 0:
        return _unavailable("the run kept no training rows to explain against", progress)
    from mlnb.explain import explainer_for

    rows = background.head(BACKGROUND_ROWS).reset_index(drop=True)
    try:
        seen = as_frame(preprocess(rows)) if preprocess is not None else rows
        explainer = explainer_for(
            native, seen, task=task, classes=classes, max_evals=DEFAULT_MAX_EVALS
        )
        explainer.explain(seen.head(1))
    except Exception as exc:
        return _unavailable(f"the model cannot be explained: {type(exc).__name__}: {exc}", progress)
    data = _parquet(rows)
    section: dict[str, Any] = {
        "available": True,
        "method": explainer.method,
        "exact": explainer.exact,
        "output": explainer.output,
        "model_input": "preprocess" if preprocess is not None else "rows",
        "background": {
            "file": BACKGROUND_FILE,
            "rows": len(rows),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        "model": None,  # a native Bento's served model is the one explained
    }
    packages = list(explainer.needs)
    files = {BACKGROUND_FILE: data}
    if model_format == "onnx":
        name = f"{MODEL_PREFIX}{loader}"
        native_bytes = model_path.read_bytes()
        digest = hashlib.sha256(native_bytes).hexdigest()
        section["model"] = {"file": name, "sha256": digest, "loader": loader}
        files[name] = native_bytes
        packages.append("cloudpickle" if loader == "cloudpickle" else "joblib")
    kind = "exact" if explainer.exact else f"sampled, {explainer.evaluations_per_row} evaluations"
    note = f" ({explainer.why})" if explainer.why else ""
    progress(f"/explain: {explainer.method} explainer ({kind}) of the {explainer.output}{note}")
    return ExplainPlan(section, files, tuple(packages))


def _unavailable(reason: str, progress: Progress) -> ExplainPlan:
    progress(f"warning: /explain will answer 501: {reason}")
    return ExplainPlan({"available": False, "reason": reason})


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
