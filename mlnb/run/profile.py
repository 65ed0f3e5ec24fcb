"""The training data of a train stage and its reference profile (runs inside the kernel).

The training data is the DataFrame (or 2-D array) among the train stage's inputs that the
model was fitted on: the one whose columns equal ``model.feature_names_in_`` when the model
has it, else one whose width is ``model.n_features_in_``; the most rows wins a tie. A
held-out frame is another input with the same columns (``X_test`` rather than ``X_train``).
The profile gives each column's dtype and kind, and for numbers deciles, a histogram (for the
report's charts), fine quantile bins (what drift is scored on), mean, standard deviation and
the fraction missing; for categories their frequencies. Monitoring compares live requests
against it.

The fine bins of a numeric column: ``edges`` are the distinct values among its percentiles
(0%, 1%, ..., 100%, each a value of the column, so at most 101; ties collapse repeated ones),
``counts[i]`` is the rows ``v`` with ``edges[i] <= v < edges[i + 1]`` (the last count the rows
equal to the maximum; ``np.searchsorted(edges, v, side="right") - 1`` is the bin of a value
``v`` in the column's range), and ``equal[i]`` the rows equal to ``edges[i]``. Counted, not
assumed: ties make them uneven.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

SAMPLE_ROWS = 1000
HISTOGRAM_BINS = 10
QUANTILE_BINS = 100  # percentiles: KS over them is within ~1% of KS over the raw values
MAX_CATEGORIES = 100
_HOLDOUT_HINTS = ("test", "holdout", "valid", "val", "eval")


def as_frame(value: Any) -> Any | None:
    """A DataFrame for a DataFrame or a 2-D array (columns ``x0``, ``x1``, ...), else None."""
    pd = sys.modules.get("pandas")
    np = sys.modules.get("numpy")
    if pd is not None and isinstance(value, pd.DataFrame):
        return value
    if np is not None and isinstance(value, np.ndarray) and value.ndim == 2:
        import pandas  # type: ignore[import-untyped]

        return pandas.DataFrame(value, columns=[f"x{i}" for i in range(value.shape[1])])
    return None


def find_training_data(
    model: Any, inputs: Mapping[str, Any], fitted_on: Sequence[str] = ()
) -> tuple[str, Any] | None:
    """``(variable, frame)`` of the data ``model`` was fitted on, among ``inputs``.

    The model's own ``feature_names_in_`` (or ``n_features_in_``) picks the frame; a model
    without either (a pipeline that starts with a transformer of the user's) falls back to the
    variable the stage's code passes to ``model.fit(...)`` (``fitted_on``).
    """
    frames = {name: f for name, f in ((n, as_frame(v)) for n, v in inputs.items()) if f is not None}
    names = getattr(model, "feature_names_in_", None)
    width = getattr(model, "n_features_in_", None)
    if names is not None:
        wanted = [str(c) for c in names]
        matches = {n: f for n, f in frames.items() if [str(c) for c in f.columns] == wanted}
    elif width is not None:
        matches = {n: f for n, f in frames.items() if f.shape[1] == width}
    else:
        matches = {n: frames[n] for n in fitted_on[:1] if n in frames}
    if not matches:
        return None
    name = max(matches, key=lambda n: (len(matches[n]), n))
    return name, matches[name]


def find_holdout(train_name: str, train: Any, inputs: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Another input with the training columns, preferring a name like ``X_test``."""
    columns = [str(c) for c in train.columns]
    found = []
    for name, value in inputs.items():
        frame = as_frame(value)
        if name == train_name or frame is None or frame is train:
            continue
        if [str(c) for c in frame.columns] == columns:
            hinted = any(h in name.lower() for h in _HOLDOUT_HINTS)
            found.append((hinted, len(frame), name, frame))
    if not found:
        return None
    _, _, name, frame = max(found, key=lambda item: (item[0], item[1], item[2]))
    return name, frame


def sample_positions(length: int, rows: int = SAMPLE_ROWS) -> Any:
    """The positions of up to ``rows`` of ``length`` rows, the same ones every time, in order."""
    import numpy as np

    if length <= rows:
        return np.arange(length)
    return np.sort(np.random.default_rng(0).choice(length, size=rows, replace=False))


def find_labels(holdout_name: str, rows: int, inputs: Mapping[str, Any]) -> Any | None:
    """The labels of the holdout rows: the one-column input of as many rows named like the
    holdout with ``y`` for ``X`` (``y_test`` for ``X_test``), else the only such input whose
    name has a holdout hint."""
    import numpy as np

    def one_column(value: Any) -> Any | None:
        if isinstance(value, str) or not hasattr(value, "__len__"):
            return None
        array = np.asarray(value)
        if array.ndim != 1 or len(array) != rows:
            return None
        return array

    wanted = holdout_name.replace("X", "y", 1) if "X" in holdout_name else None
    if wanted and wanted in inputs and one_column(inputs[wanted]) is not None:
        return one_column(inputs[wanted])
    hinted = [
        array
        for name, value in inputs.items()
        if name != holdout_name and any(h in name.lower() for h in _HOLDOUT_HINTS)
        for array in [one_column(value)]
        if array is not None
    ]
    return hinted[0] if len(hinted) == 1 else None


def sample(frame: Any, rows: int = SAMPLE_ROWS) -> Any:
    """Up to ``rows`` rows, the same ones every time, with string column names."""
    picked = frame.iloc[sample_positions(len(frame), rows)].copy()
    picked.columns = [str(c) for c in picked.columns]
    return picked


def profile(frame: Any) -> dict[str, Any]:
    """The reference profile of every column of ``frame``."""
    return {str(column): column_profile(frame[column]) for column in frame.columns}


def column_profile(series: Any) -> dict[str, Any]:
    """The profile of one column (a pandas Series), as the module docstring describes."""
    import numpy as np
    import pandas as pd

    dtype = str(series.dtype)
    total = len(series)
    missing = int(series.isna().sum())
    nan_fraction = missing / total if total else 0.0
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not numeric:
        counts = series.dropna().astype(str).value_counts()
        present = int(counts.sum())
        top = counts.head(MAX_CATEGORIES)
        return {
            "dtype": dtype,
            "kind": "categorical",
            "frequencies": {str(k): float(v) / present for k, v in top.items()} if present else {},
            "nan_fraction": nan_fraction,
        }
    values = series.dropna().to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {
            "dtype": dtype,
            "kind": "numeric",
            "quantiles": [],
            "histogram": {"edges": [], "counts": []},
            "bins": {"edges": [], "counts": [], "equal": []},
            "mean": None,
            "std": None,
            "nan_fraction": nan_fraction,
        }
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {
        "dtype": dtype,
        "kind": "numeric",
        "quantiles": [float(q) for q in np.quantile(values, np.linspace(0.0, 1.0, 11))],
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "bins": quantile_bins(np.sort(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "nan_fraction": nan_fraction,
    }


def quantile_bins(ordered: Any, bins: int = QUANTILE_BINS) -> dict[str, list[Any]]:
    """The fine bins of sorted finite values: distinct percentiles, the rows from each up to
    the next, and the rows equal to each."""
    import numpy as np

    picks = np.arange(bins + 1) * (len(ordered) - 1) // bins  # the lower of two neighbours
    edges = np.unique(ordered[picks])  # each a value of the column, min and max included
    starts = np.searchsorted(ordered, edges, side="left")
    equal = np.searchsorted(ordered, edges, side="right") - starts
    counts = np.diff(np.append(starts, len(ordered)))
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "equal": [int(c) for c in equal],
    }
