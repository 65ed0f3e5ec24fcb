"""``POST /explain``: per-row feature contributions for the rows ``/predict`` takes.

The request is ``/predict``'s, validated by the same schema and answered by the same
:class:`~mlnb.serving.http.PredictHandler` (a bad body gets exactly ``/predict``'s 4xx), with
an :class:`Explaining` in the place of the predictor. Its answer::

    {"explanations": [{"contributions": {feature: value, ...}, "base_value": b,
                       "value": v, "class": c}, ...],
     "method": "tree", "exact": true, "output": "probability of class 'benign'",
     "features": [...], "model_input": "rows" | "preprocess"}

``base_value`` plus the contributions is ``value``, the model output named by ``output``
(:mod:`mlnb.explain`); ``class`` is the class explained (classifiers only). When the serve
code has a ``preprocess``, what is explained is what the model sees, the rows after it
(``"model_input": "preprocess"``, and ``features`` are its columns).

Explanations need the native model: an ONNX Bento carries it as ``explain_model.joblib`` (the
BentoML model holds the ONNX files only, so ``/predict`` never loads a pickle), and every Bento
carries ``explain_background.parquet``, training rows as the service validates them. Both
are checked against the sha256 in ``mlnb_service.json`` before they are loaded. Nothing of
this (nor shap, which imports numba) loads before the first ``/explain`` of a worker, unless
``$MLNB_EXPLAIN_WARMUP=on`` asks for it at start-up. That first request takes seconds, and the
worker's event loop with it (its ``/predict`` requests wait meanwhile): warm up a worker that
must not pause.

The time budget: at most ``$MLNB_EXPLAIN_MAX_ROWS`` rows per request (default 100 for an exact
explainer, 10 for the sampled one, whose ``$MLNB_EXPLAIN_MAX_EVALS`` model evaluations per row
default to 1,000); more rows are a 413 naming the limit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlnb.errors import ExplainError, RequestRejected

log = logging.getLogger("mlnb.serving")

BACKGROUND_FILE = "explain_background.parquet"
MAX_ROWS_ENV = "MLNB_EXPLAIN_MAX_ROWS"
MAX_EVALS_ENV = "MLNB_EXPLAIN_MAX_EVALS"
WARMUP_ENV = "MLNB_EXPLAIN_WARMUP"
EXACT_MAX_ROWS = 100
SAMPLED_MAX_ROWS = 10
DEFAULT_MAX_EVALS = 1000

Fn = Callable[[Any], Any]


class Explaining:
    """The explainer of one worker, made on its first :meth:`answer`; answers like a
    :class:`~mlnb.serving.answer.Predictor`."""

    def __init__(
        self,
        section: dict[str, Any] | None,
        folder: Path,
        *,
        task: str,
        classes: list[Any] | None,
        native: Callable[[], Any],
        preprocess: Fn | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.section = section
        self.folder = folder
        self.task = task
        self.classes = classes
        self.native = native  # () -> the native model (checked and loaded when first called)
        self.preprocess = preprocess
        env = os.environ if environ is None else environ
        self.max_rows_override = _positive(env.get(MAX_ROWS_ENV), MAX_ROWS_ENV)
        self.max_evals = _positive(env.get(MAX_EVALS_ENV), MAX_EVALS_ENV) or DEFAULT_MAX_EVALS
        self.explainer: Any = None
        self.max_rows = 0
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The explainer (made once): the native model and the background, each checked
        against its sha256, shap if the model's explainer uses it."""
        with self._lock:
            if self.explainer is None:
                self.explainer = self._make()
                sampled = not self.explainer.exact
                default = SAMPLED_MAX_ROWS if sampled else EXACT_MAX_ROWS
                self.max_rows = self.max_rows_override or default
        return self.explainer

    def _make(self) -> Any:
        if not self.section or not self.section.get("available"):
            why = (self.section or {}).get("reason") or "it was built by an mlnb without /explain"
            raise RequestRejected(
                f"this service cannot explain its predictions: {why}",
                reason="explain-unavailable",
                status=501,
                fix="rebuild the Bento with this version of mlnb (mlnb build)",
            )
        import pandas as pd  # type: ignore[import-untyped]

        from mlnb.explain import explainer_for

        background = self.section["background"]
        path = checked(self.folder / background["file"], background["sha256"])
        rows = pd.read_parquet(path)
        if self.preprocess is not None:
            rows = as_frame(self.preprocess(rows))
        return explainer_for(
            self.native(), rows, task=self.task, classes=self.classes, max_evals=self.max_evals
        )

    def answer(self, frame: Any) -> dict[str, Any]:
        explainer = self.explainer or self.load()
        if len(frame) > self.max_rows:
            kind = "an exact" if explainer.exact else "a sampled"
            raise RequestRejected(
                f"{len(frame)} rows is more than the {self.max_rows} one /explain request "
                f"takes ({kind} explainer, {explainer.method})",
                reason="too-many-rows",
                status=413,
                fix=f"split the rows into /explain requests of at most {self.max_rows} "
                f"(${MAX_ROWS_ENV} raises the limit)",
            )
        features = frame if self.preprocess is None else as_frame(self.preprocess(frame))
        explanation = explainer.explain(features)
        return {
            "explanations": explanation.records(),
            "method": explainer.method,
            "exact": explainer.exact,
            "output": explainer.output,
            "features": explanation.features,
            "model_input": "rows" if self.preprocess is None else "preprocess",
        }

    def warm_up(self) -> None:
        """Make the explainer and explain one background row now (shap's import and first
        call), so that the first request does not pay for them."""
        explainer = self.load()
        import pandas as pd

        path = self.folder / self.section["background"]["file"]  # type: ignore[index]
        row = pd.read_parquet(path).head(1)
        explainer.explain(row if self.preprocess is None else as_frame(self.preprocess(row)))


def checked(path: Path, sha256: str) -> Path:
    """``path``, once its content is known to have the sha256 the build recorded."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ExplainError(
            f"{path.name} cannot be read: {exc}", fix="rebuild the Bento (mlnb build)"
        ) from None
    if digest.hexdigest() != sha256:
        raise ExplainError(
            f"{path.name} does not match the sha256 its build recorded: it was changed or "
            "damaged after the build",
            fix="rebuild the Bento (mlnb build), or restore the file",
        )
    return path


def load_native(folder: Path, model: dict[str, Any]) -> Any:
    """The native model an ONNX Bento carries in ``folder``, checked against its sha256."""
    path = checked(folder / model["file"], model["sha256"])
    if model.get("loader") == "cloudpickle":
        import pickle

        import cloudpickle  # type: ignore[import-untyped]  # noqa: F401

        with open(path, "rb") as handle:
            return pickle.load(handle)
    import joblib  # type: ignore[import-untyped]

    return joblib.load(path)


def as_frame(value: Any) -> Any:
    """The serve code's preprocess output as a DataFrame (an array gets columns x0, x1...)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    frame = pd.DataFrame(value)
    frame.columns = [f"x{i}" for i in range(frame.shape[1])]
    return frame


def _positive(text: str | None, name: str) -> int | None:
    if not text or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("mlnb: %s=%r is not a positive whole number; using the default", name, text)
        return None
    return value
