"""The run's model file: loading it as the run saved it, and what its pickle refers to.

A run saves its model with joblib, or with cloudpickle when the pickle refers to the notebook
itself (``__main__``: a ``FunctionTransformer`` of a function defined in a cell, a ``refit=``
callable), since cloudpickle carries such functions and classes by value. A model may also
refer to a module beside the notebook (``from features import DayOfWeek``): while the build
loads and answers with the model, the notebook's folder is on ``sys.path``, as it was in the
kernel that trained it.

:func:`referenced_modules` lists the modules the model's pickle names (its classes,
functions and the modules cloudpickle imports for code carried by value), found by pickling
the loaded model again into nothing: the libraries the Bento must install to load it.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlnb.errors import ModelLoadError

# The file name of the native model in the BentoML model store, by format.
MODEL_FILES = {"joblib": "model.joblib", "cloudpickle": "model.cloudpickle"}


@contextlib.contextmanager
def importable(folder: Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (the notebook's local modules)."""
    if folder is None:
        yield
        return
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_model(path: Path, model_format: str) -> Any:
    """The model saved at ``path`` in ``model_format`` ("joblib" or "cloudpickle")."""
    try:
        if model_format == "cloudpickle":
            with open(path, "rb") as handle:
                return pickle.load(handle)  # cloudpickle's output is a plain pickle stream
        import joblib  # type: ignore[import-untyped]

        return joblib.load(path)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ModelLoadError(
            f"the model of the run cannot be loaded here: {type(exc).__name__}: {exc}",
            fix=_fix_for(exc),
        ) from None


def _fix_for(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return (
            f"install {exc.name!r} where mlnb build runs, or keep the module beside the "
            "notebook (a local module is carried into the Bento)"
        )
    if "__main__" in str(exc):
        return (
            "run the notebook again with this version of mlnb: it saves models that refer "
            "to the notebook's own functions with cloudpickle"
        )
    return "run the notebook again with the packages installed here, then build"


class _Nowhere:
    def write(self, data: Any) -> int:
        return len(data)


def referenced_modules(model: Any) -> set[str]:
    """The modules the model's pickle refers to; those of its class when it cannot be pickled.

    Pickled with cloudpickle's pickler (so functions of the notebook are walked into, as
    cloudpickle saves them), with out-of-band buffers so array data is never copied.
    """
    import cloudpickle  # type: ignore[import-untyped]

    modules: set[str] = set()

    class Walker(cloudpickle.Pickler):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> None:
            modules.add(_module_of(obj))
            return None

    try:
        Walker(_Nowhere(), protocol=5, buffer_callback=lambda buffer: None).dump(model)
    except Exception:  # best effort: the class's own module still names the library
        modules.add(type(model).__module__)
    return {m for m in modules if m and m != "__main__"}


def _module_of(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    holder = (
        obj if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else type(obj)
    )
    module = getattr(holder, "__module__", None)
    return module if isinstance(module, str) else ""
