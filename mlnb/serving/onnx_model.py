"""An ONNX model that answers like the scikit-learn model it was converted from.

Serve code written in the notebook calls ``model.predict(frame)`` or
``model.predict_proba(frame)`` on a DataFrame. Under ONNX, ``model`` is one of these adapters:
the same methods and fitted attributes (``classes_``, ``feature_names_in_``,
``n_features_in_``), backed by an onnxruntime session. Loading it reads a protobuf and a JSON
spec: no pickle.

The spec (``onnx_model.json``, written by the build beside ``model.onnx``) says how a frame
becomes the graph's inputs: one 2-D tensor of all features (``"tensor"``) or one ``[n, 1]``
tensor per column (``"columns"``, for pipelines with a ColumnTransformer), with the dtypes the
model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

SPEC_FILE = "onnx_model.json"
MODEL_FILE = "model.onnx"
# The sklearn methods and attributes the adapters provide, for the build's static check.
CLASSIFIER_MEMBERS = frozenset(
    {"predict", "predict_proba", "classes_", "feature_names_in_", "n_features_in_"}
)
REGRESSOR_MEMBERS = frozenset({"predict", "feature_names_in_", "n_features_in_"})


class OnnxModel:
    """The regressor adapter, and the base of the classifier's."""

    def __init__(self, model: bytes | str | Path, spec: dict[str, Any]) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # per-request work is tiny: threads cost more
        options.inter_op_num_threads = 1
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.spec = spec
        self.feature_names_in_ = np.array(spec["columns"], dtype=object)
        self.n_features_in_ = len(spec["columns"])
        self._columns: list[str] = list(spec["columns"])
        self._dtypes: dict[str, str] = dict(spec["dtypes"])
        self._inputs: list[str] = list(spec["input_names"])
        self._tensor_dtype = np.dtype(spec.get("tensor_dtype") or "float64")
        self._outputs: dict[str, str] = dict(spec["outputs"])
        self._known_index: Any = None

    @classmethod
    def load(cls, folder: str | Path) -> OnnxModel:
        """The adapter for a model folder holding ``model.onnx`` and ``onnx_model.json``."""
        path = Path(folder)
        spec = json.loads((path / SPEC_FILE).read_text())
        return cls.from_spec(path / MODEL_FILE, spec)

    @staticmethod
    def from_spec(model: bytes | str | Path, spec: dict[str, Any]) -> OnnxModel:
        """The classifier or regressor adapter, as the spec's task says."""
        kind: type[OnnxModel] = OnnxModel
        if spec["task"] == "classification":
            with_proba = "probabilities" in spec["outputs"]
            kind = OnnxClassifier if with_proba else OnnxLabelClassifier
        return kind(model, spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.spec.get('class', 'a model')}>"

    def predict(self, X: Any) -> np.ndarray:
        if "variable" in self._outputs:
            (values,) = self._run(X, [self._outputs["variable"]])
            return np.asarray(values, dtype=np.float64).reshape(len(values), -1).squeeze(axis=1)
        (labels,) = self._run(X, [self._outputs["label"]])
        return np.asarray(labels).ravel()

    def _run(self, X: Any, outputs: list[str]) -> list[Any]:
        return self.session.run(outputs, self._feed(X))  # type: ignore[no-any-return]

    def _feed(self, X: Any) -> dict[str, np.ndarray]:
        if isinstance(X, pd.DataFrame):
            frame = self._in_training_order(X)
            if self.spec["inputs"] == "tensor":
                return {self._inputs[0]: frame.to_numpy(dtype=self._tensor_dtype)}
            return {
                name: _column_tensor(frame[column], self._dtypes[column])
                for name, column in zip(self._inputs, self._columns, strict=True)
            }
        array = np.asarray(X)
        if array.ndim != 2 or array.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has shape {array.shape}; the model takes {self.n_features_in_} features"
            )
        if self.spec["inputs"] == "tensor":
            return {self._inputs[0]: array.astype(self._tensor_dtype, copy=False)}
        return {
            name: _column_tensor(pd.Series(array[:, i]), self._dtypes[column])
            for i, (name, column) in enumerate(zip(self._inputs, self._columns, strict=True))
        }

    def _in_training_order(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = frame.columns
        if columns is self._known_index:
            return frame
        if list(columns) == self._columns:
            self._known_index = columns  # the service's frames share one Index object
            return frame
        missing = [c for c in self._columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the frame lacks the feature names seen at fit time: {missing[:5]}")
        return frame[self._columns]


class OnnxLabelClassifier(OnnxModel):
    """The adapter of a classifier without ``predict_proba`` (an SVC): labels and ``classes_``."""

    def __init__(self, model: bytes | str | Path, spec: dict[str, Any]) -> None:
        super().__init__(model, spec)
        self.classes_ = np.array(spec["classes"])

    def predict(self, X: Any) -> np.ndarray:
        return _as_classes(super().predict(X), self.classes_)


class OnnxClassifier(OnnxLabelClassifier):
    """The classifier adapter: adds ``predict_proba`` to the labels."""

    def predict_proba(self, X: Any) -> np.ndarray:
        (probabilities,) = self._run(X, [self._outputs["probabilities"]])
        return np.asarray(probabilities, dtype=np.float64)

    def predict_with_proba(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities from one run of the graph."""
        labels, probabilities = self._run(
            X, [self._outputs["label"], self._outputs["probabilities"]]
        )
        labels = _as_classes(np.asarray(labels).ravel(), self.classes_)
        return labels, np.asarray(probabilities, dtype=np.float64)


def _as_classes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels in the dtype of ``classes_``, as scikit-learn's predict gives them."""
    if labels.dtype == classes.dtype or classes.dtype.kind in "OUS":
        return labels
    return labels.astype(classes.dtype, copy=False)


def _column_tensor(column: pd.Series, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype).kind if dtype not in ("str", "string", "category") else "O"
    values: np.ndarray
    if kind in "OU":
        values = np.array([str(v) for v in column.astype(object).to_numpy()], dtype=object)
    elif kind == "b":
        values = column.to_numpy(dtype=bool)
    elif kind in "iu":
        values = column.to_numpy(dtype=np.int64)
    else:
        values = column.to_numpy(dtype=np.dtype(dtype))
    return values.reshape(-1, 1)
