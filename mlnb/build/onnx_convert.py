"""scikit-learn to ONNX, with the input types the model was trained on.

The graph's inputs follow the training dtypes exactly and are never narrowed: float64 training
data gives a float64 graph. When every feature has one float dtype and the model selects no
columns by name, the graph takes one 2-D tensor; otherwise (a ColumnTransformer, mixed
dtypes, strings) it takes one ``[n, 1]`` tensor per column, named after it. A conversion
that fails, or a graph onnxruntime cannot load, is a :class:`NotConvertible` with the reason.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlnb.serving.schema import RequestSchema


class NotConvertible(Exception):
    """The model has no faithful ONNX form here; the message says why."""


@dataclass(frozen=True)
class Conversion:
    onnx: bytes
    spec: dict[str, Any]  # what OnnxModel needs to feed the graph (onnx_model.json)


def task_of(model: Any) -> str:
    """ "classification" for models with predict_proba and classes_, else "regression"."""
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        return "classification"
    return "regression"


def convert(model: Any, schema: RequestSchema, *, narrow: bool = False) -> Conversion:
    """The model as ONNX bytes and its feeding spec, or NotConvertible.

    ``narrow`` feeds float64 features as float32: the fallback for graphs onnxruntime has no
    float64 kernels for (tree ensembles, which scikit-learn itself evaluates in float32).
    """
    try:
        from skl2onnx import to_onnx
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise NotConvertible(f"skl2onnx is not installed ({exc})") from None
    task = task_of(model)
    fields = schema.fields
    feed = {f.name: _narrowed(f.dtype) if narrow else f.dtype for f in fields}
    dtypes = set(feed.values())
    float_only = all(f.kind == "float" for f in fields) and len(dtypes) == 1
    if float_only and not _selects_columns_by_name(model):
        mode = "tensor"
        tensor_dtype: str | None = next(iter(dtypes))
        initial_types = [("X", _tensor_type(str(tensor_dtype))([None, len(fields)]))]
    else:
        mode = "columns"
        tensor_dtype = None
        # named after the columns: a ColumnTransformer's converter looks its inputs up by name
        initial_types = [(f.name, _tensor_type(feed[f.name])([None, 1])) for f in fields]
    options = {"zipmap": False} if task == "classification" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = to_onnx(model, initial_types=initial_types, options=options)
    except Exception as exc:
        raise NotConvertible(
            f"skl2onnx cannot convert {_class_name(model)}: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from None
    data = onx.SerializeToString()
    input_names = [i.name for i in onx.graph.input]  # skl2onnx may have renamed them
    if len(input_names) != len(initial_types):
        raise NotConvertible(f"the graph takes {len(input_names)} inputs, not {len(initial_types)}")
    outputs = [o.name for o in onx.graph.output]
    if task == "classification":
        if len(outputs) < 2:
            raise NotConvertible(f"the graph's outputs are {outputs}, not label and probabilities")
        named = {"label": outputs[0], "probabilities": outputs[1]}
        classes = np.asarray(model.classes_).tolist()
    else:
        named = {"variable": outputs[0]}
        classes = None
    _check_loads(data)
    spec = {
        "version": 1,
        "class": _class_name(model),
        "task": task,
        "inputs": mode,
        "input_names": input_names,
        "tensor_dtype": tensor_dtype,
        "columns": [f.name for f in fields],
        "dtypes": feed,
        "narrowed": narrow,
        "outputs": named,
        "classes": classes,
    }
    return Conversion(data, spec)


def can_narrow(schema: RequestSchema) -> bool:
    """Whether some feature is float64, so a float32 graph is a different attempt."""
    return any(f.kind == "float" and _narrowed(f.dtype) != f.dtype for f in schema.fields)


def _narrowed(dtype: str) -> str:
    return "float32" if dtype == "float64" else dtype


def _check_loads(data: bytes) -> None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = f"onnxruntime cannot load the converted model: {_first_line(exc)}"
        raise NotConvertible(message) from None


def _tensor_type(dtype: str) -> Any:
    from skl2onnx.common import data_types as t

    kind = np.dtype(dtype).kind if dtype not in ("str", "string", "category") else "O"
    if kind == "f":
        return t.DoubleTensorType if np.dtype(dtype).itemsize == 8 else t.FloatTensorType
    if kind in "iu":
        return t.Int64TensorType
    if kind == "b":
        return t.BooleanTensorType
    return t.StringTensorType


def _selects_columns_by_name(model: Any) -> bool:
    """Whether a ColumnTransformer inside the model picks columns by name."""
    try:
        from sklearn.compose import ColumnTransformer
    except ImportError:  # pragma: no cover
        return False
    seen: list[Any] = [model]
    while seen:
        current = seen.pop()
        if isinstance(current, ColumnTransformer):
            return True
        for attr in ("steps", "transformer_list", "transformers", "estimators"):
            for item in getattr(current, attr, None) or []:
                if isinstance(item, tuple):
                    seen.extend(part for part in item if hasattr(part, "fit"))
                elif hasattr(item, "fit"):
                    seen.append(item)
        for attr in ("estimator", "base_estimator", "final_estimator"):
            inner = getattr(current, attr, None)
            if inner is not None and hasattr(inner, "fit"):
                seen.append(inner)
    return False


def _input_names(columns: list[str]) -> list[str]:
    """ONNX input names: the column names, which a ColumnTransformer's converter looks up."""
    return [str(column) for column in columns]


def _class_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
