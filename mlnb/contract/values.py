"""The values a contract covers: DataFrames, Series and NumPy arrays of one or two
dimensions, as DataFrames with text column names."""

from __future__ import annotations

from typing import Any

_KINDS = "biufcMmOUS"  # NumPy dtype kinds a column can have (not structured, not void)


def is_tabular(value: Any) -> bool:
    """A DataFrame, Series or NumPy array (told apart without importing pandas)."""
    kind = type(value)
    return kind.__module__.split(".")[0] in ("pandas", "numpy") and kind.__name__ in (
        "DataFrame",
        "Series",
        "ndarray",
    )


def as_table(value: Any) -> tuple[str, Any] | None:
    """``(type, DataFrame with text column names)`` for a value a contract can cover."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(value, pd.DataFrame):
        frame = value
        kind = "DataFrame"
    elif isinstance(value, pd.Series):
        frame = value.to_frame(str(value.name) if value.name is not None else "value")
        kind = "Series"
    elif isinstance(value, np.ndarray) and value.ndim in (1, 2) and value.dtype.kind in _KINDS:
        frame = pd.DataFrame(value if value.ndim == 2 else {"value": value})
        kind = "ndarray"
    else:
        return None
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    return kind, frame
