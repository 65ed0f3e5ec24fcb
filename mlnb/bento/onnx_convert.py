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

from mlnb.serving.schema import RequestSchema, pandas_nullable


class NotConvertible(Exception):
    """The model has no faithful ONNX form here; the message says why."""


@dataclass(frozen=True)
class Conversion:
    onnx: bytes
    spec: dict[str, Any]  # what OnnxModel needs to feed the graph (onnx_model.json)


def task_of(model: Any) -> str:
    """ "classification" for classifiers (``sklearn.base.is_classifier``, so an SVC without
    ``predict_proba`` too), else "regression". Outside scikit-learn's API a model with
    ``predict_proba`` and ``classes_`` is a classifier."""
    try:
        from sklearn.base import is_classifier  # type: ignore[import-untyped]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if is_classifier(model):
                return "classification"
    except Exception:  # not a scikit-learn estimator at all
        pass
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        return "classification"
    return "regression"


# library -> (converter module of onnxmltools, its converter, the library's classes' names)
_BOOSTERS = {
    "lightgbm": (
        "LightGBM",
        "onnxmltools.convert.lightgbm.operator_converters.LightGbm",
        "convert_lightgbm",
        {"LGBMClassifier": "LightGbmLGBMClassifier", "LGBMRegressor": "LightGbmLGBMRegressor"},
    ),
    "xgboost": (
        "XGBoost",
        "onnxmltools.convert.xgboost.operator_converters.XGBoost",
        "convert_xgboost",
        {"XGBClassifier": "XGBoostXGBClassifier", "XGBRegressor": "XGBoostXGBRegressor"},
    ),
}


def booster_of(model: Any) -> str | None:
    """ "LightGBM" or "XGBoost" when the model (or a step of it) is one, else None."""
    for part in _parts(model):
        library = type(part).__module__.split(".")[0]
        if library in _BOOSTERS:
            return _BOOSTERS[library][0]
    return None


# onnxmltools' tree converters write version 3 of the ai.onnx.ml operators at most
BOOSTER_ML_OPSET = 3


def _register_boosters(model: Any) -> dict[str, int] | None:
    """Teach skl2onnx the LightGBM/XGBoost estimators in the model, with onnxmltools'
    converters; the opsets to convert with (None: skl2onnx's own), or NotConvertible when
    onnxmltools is missing."""
    import importlib

    libraries = {type(part).__module__.split(".")[0] for part in _parts(model)} & set(_BOOSTERS)
    if not libraries:
        return None
    for library in sorted(libraries):
        label, module_name, function, classes = _BOOSTERS[library]
        try:
            converter = getattr(importlib.import_module(module_name), function)
        except ImportError:
            raise NotConvertible(
                f"the model is a {label} model and onnxmltools is not installed "
                "(pip install 'mlnb[boost]' to serve it with onnxruntime)"
            ) from None
        from skl2onnx import update_registered_converter  # type: ignore[import-untyped]
        from skl2onnx.common.shape_calculator import (  # type: ignore[import-untyped]
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )

        package = importlib.import_module(library)
        for class_name, alias in classes.items():
            estimator = getattr(package, class_name, None)
            if estimator is None:
                continue
            if class_name.endswith("Classifier"):
                shapes = calculate_linear_classifier_output_shapes
                options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
            else:
                shapes, options = calculate_linear_regressor_output_shapes, None
            update_registered_converter(estimator, alias, shapes, converter, options=options)
    from skl2onnx import get_latest_tested_opset_version

    return {"": get_latest_tested_opset_version(), "ai.onnx.ml": BOOSTER_ML_OPSET}


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
    target_opset = _register_boosters(model)
    probabilities = task == "classification" and hasattr(model, "predict_proba")
    fields = schema.fields
    unsupported = [f.name for f in fields if f.kind in ("datetime", "timedelta")]
    if unsupported:
        raise NotConvertible(f"ONNX has no datetime or duration inputs (column {unsupported[0]!r})")
    nullable = [f for f in fields if pandas_nullable(f.dtype) and f.kind != "string"]
    if nullable:
        raise NotConvertible(
            f"ONNX has no inputs of pandas' nullable dtypes (column {nullable[0].name!r}, "
            f"{nullable[0].dtype})"
        )
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
            onx = to_onnx(
                model, initial_types=initial_types, options=options, target_opset=target_opset
            )
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
        if len(outputs) < 2 and probabilities:
            raise NotConvertible(f"the graph's outputs are {outputs}, not label and probabilities")
        named = {"label": outputs[0]}
        if probabilities:
            named["probabilities"] = outputs[1]
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
    import onnxruntime as ort  # type: ignore[import-untyped]

    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = f"onnxruntime cannot load the converted model: {_first_line(exc)}"
        raise NotConvertible(message) from None


def _tensor_type(dtype: str) -> Any:
    from skl2onnx.common import data_types as t  # type: ignore[import-untyped]

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
        from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover
        return False
    return any(isinstance(part, ColumnTransformer) for part in _parts(model))


def _parts(model: Any) -> list[Any]:
    """The model and the estimators inside it (pipeline steps, wrapped estimators)."""
    found: list[Any] = []
    seen: list[Any] = [model]
    while seen and len(found) < 1000:
        current = seen.pop()
        found.append(current)
        for attr in ("steps", "transformer_list", "transformers", "estimators"):
            for item in getattr(current, attr, None) or []:
                if isinstance(item, tuple):
                    seen.extend(part for part in item if hasattr(part, "fit"))
                elif hasattr(item, "fit"):
                    seen.append(item)
        for attr in ("estimator", "base_estimator", "final_estimator", "best_estimator_"):
            inner = getattr(current, attr, None)
            if inner is not None and hasattr(inner, "fit"):
                seen.append(inner)
    return found


def _class_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
