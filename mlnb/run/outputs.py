"""Stage values in the store: saved content-addressed, in the most fitting format, and loaded.

DataFrames and Series go to parquet, numeric arrays to ``.npy``, modules by name, anything
else through joblib (cloudpickle when it refers to code defined in the notebook itself, which
a fresh kernel would not have). Every file is written under a temporary name, hashed, then
renamed to ``objects/<sha[:2]>/<sha>``, so a reader never sees half a file. A value is loaded
only once its bytes match that name: the plan hashed the file just before the kernel started
(and passes its size and mtime as ``verified``), else it is hashed here. pandas, numpy,
joblib and cloudpickle are imported only when a value needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from mlnb.errors import StoreDiskError, StoredObjectError, UnsaveableOutputError
from mlnb.store import Store, disk_error, sha256_file

SERIES_COLUMN = "__mlnb_series__"


def write_object(store_root: Path, write: Callable[[IO[bytes]], None]) -> tuple[str, str]:
    """Write through ``write`` to a temporary file, then move it to its content address.

    Returns ``(sha256, path relative to the store)``.
    """
    objects = store_root / "objects"
    tmp_dir = objects / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{os.getpid()}-{secrets.token_hex(6)}.part"
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        sha = sha256_file(tmp)
        target = objects / sha[:2] / sha
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)  # also over a damaged copy of the same name
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        problem = disk_error(exc, store_root, "saving a stage's result")
        if problem is not None:
            raise problem from None
        raise
    return sha, f"objects/{sha[:2]}/{sha}"


def save_value(
    value: Any, name: str, stage: str, store_root: Path, users: Sequence[str] = ()
) -> dict[str, Any]:
    """Save one value; return its reference ``{sha256, path, format, ...}``."""
    if type(value).__name__ == "module" and hasattr(value, "__name__"):
        module = value.__name__
        return {
            "format": "module",
            "module": module,
            "sha256": hashlib.sha256(module.encode()).hexdigest(),
            "path": None,
        }
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    if pd is not None and isinstance(value, pd.DataFrame) and _parquet_columns(value.columns):
        ref = _try(store_root, lambda fh: value.to_parquet(fh), "parquet")
        if ref:
            return ref
    if pd is not None and isinstance(value, pd.Series) and _json_scalar(value.name):
        frame = value.to_frame(name=SERIES_COLUMN)
        ref = _try(store_root, lambda fh: frame.to_parquet(fh), "parquet-series")
        if ref:
            ref["name"] = value.name
            return ref
    if np is not None and isinstance(value, np.ndarray) and not value.dtype.hasobject:
        ref = _try(store_root, lambda fh: np.save(fh, value, allow_pickle=False), "npy")
        if ref:
            return ref
    return save_pickled(value, name, stage, store_root, users)


def save_pickled(
    value: Any,
    name: str,
    stage: str,
    store_root: Path,
    users: Sequence[str] = (),
) -> dict[str, Any]:
    """joblib, or cloudpickle when the pickle refers to ``__main__`` (code of the notebook)."""
    import joblib  # type: ignore[import-untyped]

    errors: list[str] = []
    try:
        sha, path = write_object(store_root, lambda fh: joblib.dump(value, fh))
    except StoreDiskError:
        raise
    except Exception as exc:
        errors.append(f"joblib: {type(exc).__name__}: {exc}")
    else:
        if b"__main__" not in store_root.joinpath(path).read_bytes():
            return {"sha256": sha, "path": path, "format": "joblib"}
    try:
        import cloudpickle  # type: ignore[import-untyped]

        sha, path = write_object(store_root, lambda fh: cloudpickle.dump(value, fh))
        return {"sha256": sha, "path": path, "format": "cloudpickle"}
    except StoreDiskError:
        raise
    except Exception as exc:
        errors.append(f"cloudpickle: {type(exc).__name__}: {exc}")
    used_by = f" (stage {', '.join(repr(u) for u in users)} uses it)" if users else ""
    raise UnsaveableOutputError(
        f"{name!r} ({_type_name(value)}) cannot be saved{used_by}: {'; '.join(errors)}",
        fix=f"make {name!r} a value that can be saved (a DataFrame, an array or something "
        f"picklable), or compute it in the stage that uses it instead of in {stage!r}",
        stage=stage,
    )


def load_value(ref: dict[str, Any], store_root: Path, name: str = "a value") -> Any:
    """The value a reference written by :func:`save_value` stands for, once its file is
    proven to be the one saved."""
    kind = ref["format"]
    if kind == "module":
        return importlib.import_module(ref["module"])
    path = checked_object(ref, store_root, name)
    try:
        return _read(kind, path, ref)
    except Exception as exc:
        raise StoredObjectError(
            f"the saved value of {name!r} ({ref['path']}) matches its sha256 but cannot be "
            f"read: {type(exc).__name__}: {exc}",
            fix="run again with --no-cache (the library that wrote it may have changed)",
        ) from None


def checked_object(ref: dict[str, Any], store_root: Path, name: str) -> Path:
    """The object's path, when the file is the one its sha256 names: the plan hashed it at
    the size and mtime it passes as ``verified``, else it is hashed now."""
    path: Path = store_root / ref["path"]
    with contextlib.suppress(OSError):
        stat = os.stat(path)
        if ref.get("verified") == [stat.st_size, stat.st_mtime_ns]:
            return path
    return Store(store_root).check_object(ref, f"the saved value of {name!r}")


def _read(kind: str, path: Path, ref: dict[str, Any]) -> Any:
    if kind == "parquet":
        import pandas as pd  # type: ignore[import-untyped]

        return pd.read_parquet(path)
    if kind == "parquet-series":
        import pandas as pd

        series = pd.read_parquet(path)[SERIES_COLUMN]
        series.name = ref.get("name")
        return series
    if kind == "npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if kind == "joblib":
        import joblib

        return joblib.load(path)
    if kind == "cloudpickle":
        import cloudpickle

        with open(path, "rb") as handle:
            return cloudpickle.load(handle)
    raise ValueError(f"unknown stored format {kind!r}")


def _try(store_root: Path, write: Callable[[IO[bytes]], None], kind: str) -> dict[str, Any] | None:
    try:
        sha, path = write_object(store_root, write)
    except StoreDiskError:
        raise
    except Exception:  # an unusual dtype or column: fall back to pickling
        return None
    return {"sha256": sha, "path": path, "format": kind}


def _parquet_columns(columns: Any) -> bool:
    names = list(columns)
    return all(isinstance(c, str) for c in names) and len(set(names)) == len(names)


def _json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
