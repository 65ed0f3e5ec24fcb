"""Global importance of a run's model: mean |contribution| and permutation importance.

Two figures per feature, each computed on at most :data:`MAX_ROWS` rows so that it costs well
under a second on the bundled examples:

- the mean absolute contribution (SHAP, through :mod:`mlnb.explain`, the same explainer
  ``/explain`` answers with) over the run's holdout sample, or its training sample when the
  run kept no holdout; fewer rows (:data:`SAMPLED_ROWS`) when the explainer is a sampled one;
- scikit-learn's ``permutation_importance`` on the run's test split (the holdout sample and
  its labels, same rows, same order), scored with the run's primary metric (its first
  recorded metric, when scikit-learn knows a scorer by that name) or else the model's own
  ``score``: the mean drop of that score when a column is shuffled, over
  :data:`REPEATS` shuffles.

Either may be unavailable, and then says why (an older run kept no labels; a model that
``mlnb.explain`` cannot explain). The result is plain JSON, the same in ``mlnb report``, its
``--json``, the panel and the sidebar.

The pure core (:func:`compute`) takes the model and frames; the edge
(:func:`importance_of_run`) reads them through the store's hash-checked reads and caches the
result in the store under ``importance/``, keyed by the sha256 of the model, the samples and
the labels (and the method's settings), so it is computed once. numpy, pandas and
scikit-learn are imported only when something is computed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlnb.errors import ImportanceUnavailableError
from mlnb.store import Store, dumps, read_record, utc_now, write_atomic

VERSION = 1
MAX_ROWS = 200  # rows explained and permuted, at most
SAMPLED_ROWS = 50  # rows explained when the explainer samples (not exact): it costs per row
BACKGROUND_ROWS = 100  # training rows an explainer gets as its background
REPEATS = 3  # shuffles per column for permutation importance
SEED = 0
TOP = 10  # features shown in the report, the panel and the sidebar
CACHE_DIR = "importance"

# Metric names notebooks record -> scikit-learn scorer names (higher is better).
SCORER_ALIASES = {
    "auc": "roc_auc",
    "mae": "neg_mean_absolute_error",
    "mse": "neg_mean_squared_error",
    "rmse": "neg_root_mean_squared_error",
    "mape": "neg_mean_absolute_percentage_error",
    "log_loss": "neg_log_loss",
    "logloss": "neg_log_loss",
}

Explainers = Callable[..., Any]  # mlnb.explain.explainer_for


# --- the pure core ---------------------------------------------------------------------


def scorer_for(metric_names: Sequence[str]) -> str | None:
    """The scikit-learn scorer of the run's primary metric (its first), or None for the
    model's default score."""
    from sklearn.metrics import get_scorer_names  # type: ignore[import-untyped]

    if not metric_names:
        return None
    name = str(metric_names[0]).strip().lower()
    name = SCORER_ALIASES.get(name, name)
    return name if name in get_scorer_names() else None


def permutation(
    model: Any,
    frame: Any,
    labels: Any,
    *,
    scoring: str | None,
    repeats: int = REPEATS,
    seed: int = SEED,
) -> dict[str, Any]:
    """scikit-learn's permutation importance of each column of ``frame`` (mean and standard
    deviation of the score's drop over ``repeats`` shuffles) and the unshuffled score."""
    from sklearn.inspection import permutation_importance  # type: ignore[import-untyped]
    from sklearn.metrics import check_scoring

    started = time.perf_counter()
    scorer = check_scoring(model, scoring=scoring)
    baseline = float(scorer(model, frame, labels))
    found = permutation_importance(
        model, frame, labels, scoring=scoring, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    return {
        "mean": [float(v) for v in found.importances_mean],
        "std": [float(v) for v in found.importances_std],
        "baseline": baseline,
        "seconds": round(time.perf_counter() - started, 4),
    }


def mean_abs_contribution(contributions: Any) -> list[float]:
    """The mean absolute contribution of each feature (a column of ``contributions``)."""
    import numpy as np

    values = np.abs(np.asarray(contributions, dtype=float))
    return [float(v) for v in values.mean(axis=0)]


def task_of(model: Any) -> str:
    """``"classification"`` or ``"regression"``, as scikit-learn sees the model."""
    from sklearn.base import is_classifier  # type: ignore[import-untyped]

    return "classification" if is_classifier(model) else "regression"


def compute(
    model: Any,
    *,
    columns: Sequence[str],
    explain_rows: Any,
    explain_data: str,
    background: Any,
    holdout: Any | None,
    labels: Any | None,
    labels_problem: str | None,
    metric_names: Sequence[str],
    explainers: Explainers | None,
    explainers_problem: str | None = None,
) -> dict[str, Any]:
    """The importance of each column (the JSON :func:`importance_of_run` caches).

    ``explain_rows`` are the rows whose contributions are averaged (``explain_data`` says
    which: "holdout" or "training sample"); ``holdout`` and ``labels`` the test split
    permuted, or None with ``labels_problem`` saying why; ``explainers`` is
    :func:`mlnb.explain.explainer_for`, or None when it cannot be imported.
    """
    names = [str(c) for c in columns]
    contribution = _contribution(
        model, names, explain_rows, explain_data, background, explainers, explainers_problem
    )
    permuted = _permutation(model, names, holdout, labels, labels_problem, metric_names)
    by_contribution = contribution.pop("values", None)
    by_permutation = permuted.pop("values", None)
    stds = permuted.pop("stds", None)
    features: list[dict[str, Any]] = [
        {
            "feature": name,
            "mean_abs_contribution": None if by_contribution is None else by_contribution[i],
            "permutation_mean": None if by_permutation is None else by_permutation[i],
            "permutation_std": None if stds is None else stds[i],
        }
        for i, name in enumerate(names)
    ]
    order = "mean_abs_contribution" if by_contribution is not None else "permutation_mean"
    if by_contribution is None and by_permutation is None:
        order = "none"
    else:
        features.sort(key=lambda f: -float(f[order]))
    return {
        "version": VERSION,
        "ordered_by": order,
        "features": features,
        "contribution": contribution,
        "permutation": permuted,
    }


def _contribution(
    model: Any,
    names: list[str],
    rows: Any,
    data: str,
    background: Any,
    explainers: Explainers | None,
    problem: str | None,
) -> dict[str, Any]:
    if explainers is None:
        return _unavailable(problem or "no explainer of per-row contributions is available")
    started = time.perf_counter()
    try:
        explainer = explainers(
            model, background[names].head(BACKGROUND_ROWS), task=task_of(model), classes=None
        )
        limit = MAX_ROWS if explainer.exact else SAMPLED_ROWS
        chosen = rows[names].head(limit)
        explanation = explainer.explain(chosen)
    except Exception as exc:  # an explainer that cannot handle this model: say why
        return _unavailable(f"the model cannot be explained: {type(exc).__name__}: {exc}")
    explained = [str(f) for f in explanation.features]
    values = mean_abs_contribution(explanation.contributions)
    by_name = dict(zip(explained, values, strict=True))
    return {
        "available": True,
        "method": str(explainer.method),
        "exact": bool(explainer.exact),
        "output": str(explainer.output),
        "data": data,
        "rows": len(chosen),
        "values": [by_name.get(name, 0.0) for name in names],
        "seconds": round(time.perf_counter() - started, 4),
    }


def _permutation(
    model: Any,
    names: list[str],
    holdout: Any | None,
    labels: Any | None,
    labels_problem: str | None,
    metric_names: Sequence[str],
) -> dict[str, Any]:
    if holdout is None or labels is None:
        return _unavailable(labels_problem or "the run kept no test split with labels")
    frame, target = holdout[names].head(MAX_ROWS), labels[: min(len(labels), MAX_ROWS)]
    if getattr(model, "feature_names_in_", None) is None:
        frame = frame.to_numpy()  # fitted on an array: named columns would warn
    scoring = scorer_for(metric_names)
    where = f"the run's primary metric {metric_names[0]!r}" if scoring else "the model's score"
    try:
        found = permutation(model, frame, target, scoring=scoring)
    except Exception as exc:
        if scoring is None:
            return _unavailable(f"the model cannot be scored: {type(exc).__name__}: {exc}")
        # e.g. roc_auc of a model without predict_proba: fall back to the model's own score
        where = f"the model's score ({scoring} failed: {type(exc).__name__})"
        scoring = None
        try:
            found = permutation(model, frame, target, scoring=None)
        except Exception as again:
            return _unavailable(f"the model cannot be scored: {type(again).__name__}: {again}")
    return {
        "available": True,
        "scoring": scoring or "score",
        "scoring_from": where,
        "baseline": found["baseline"],
        "repeats": REPEATS,
        "seed": SEED,
        "data": "holdout",
        "rows": len(frame),
        "values": found["mean"],
        "stds": found["std"],
        "seconds": found["seconds"],
    }


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def top_features(result: Mapping[str, Any], limit: int = TOP) -> list[dict[str, Any]]:
    """The first ``limit`` features of a result, in its order (most important first)."""
    features = result.get("features")
    return [dict(f) for f in features[:limit]] if isinstance(features, list) else []


# --- the store edge --------------------------------------------------------------------


def cache_key(record: Mapping[str, Any]) -> str:
    """The sha256 naming a run's importance: its model, samples, labels and metric, and the
    method's settings."""
    from mlnb import __version__

    model = record.get("model") or {}
    training = record.get("training_data") or {}
    holdout = training.get("holdout") or {}
    parts = {
        "version": VERSION,
        "mlnb": __version__,
        "model": model.get("sha256"),
        "sample": (training.get("sample") or {}).get("sha256"),
        "holdout": holdout.get("sha256"),
        "labels": (holdout.get("labels") or {}).get("sha256"),
        "metrics": list((record.get("metrics") or {}).keys())[:1],
        "settings": [MAX_ROWS, SAMPLED_ROWS, BACKGROUND_ROWS, REPEATS, SEED],
        "explain": importlib.util.find_spec("mlnb.explain") is not None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cache_path(store: Store, key: str) -> Path:
    return store.root / CACHE_DIR / key[:2] / f"{key}.json"


def cached_importance(store: Store, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The importance of a run computed before, or None (nothing heavy is imported)."""
    path = cache_path(store, cache_key(record))
    try:
        found = read_record(path)
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("version") != VERSION:
        return None
    if not isinstance(found.get("features"), list):
        return None
    return found


def importance_of_run(store: Store, record: Mapping[str, Any]) -> dict[str, Any]:
    """The importance of a run's model: from the store's cache, else computed and cached."""
    run_id = str(record.get("run_id"))
    model_ref = record.get("model") or {}
    training = record.get("training_data") or {}
    if not model_ref.get("path"):
        raise ImportanceUnavailableError(
            f"run {run_id} recorded no model",
            fix="name the train stage's model variable (--model VAR) and run again",
        )
    if not (training.get("sample") or training.get("holdout")):
        raise ImportanceUnavailableError(
            f"run {run_id} kept no training or holdout rows to measure importance on",
            fix="fit the model on a DataFrame (or 2-D array) of the data or train stage, "
            "and run again",
        )
    cached = cached_importance(store, record)
    if cached is not None:
        return {**cached, "cached": True}
    key = cache_key(record)
    started = time.perf_counter()
    inputs = _load_inputs(store, record)
    explainers, problem = _explainers()
    result = compute(
        inputs.pop("model"), explainers=explainers, explainers_problem=problem, **inputs
    )
    result.update(
        key=key,
        run_id=run_id,
        model=model_ref.get("sha256"),
        computed_at=utc_now(),
        seconds=round(time.perf_counter() - started, 4),
    )
    if explainers is not None:  # else a later mlnb (with its explainer) computes it again
        path = cache_path(store, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, dumps(result, indent=1))
    return {**result, "cached": False}


def _load_inputs(store: Store, record: Mapping[str, Any]) -> dict[str, Any]:
    """The model and frames :func:`compute` takes, read through hash-checked paths."""
    import pandas as pd  # type: ignore[import-untyped]

    from mlnb.bento.modelfile import importable, load_model

    run_id = record.get("run_id")
    model_ref = record["model"]
    training = record["training_data"]
    model_path = store.check_object(model_ref, f"the model of run {run_id}")
    notebook = (record.get("notebook") or {}).get("path")
    folder = Path(notebook).parent if notebook else None
    with importable(folder):
        model = load_model(model_path, str(model_ref.get("format") or "joblib"))

    def frame(ref: Mapping[str, Any] | None, what: str) -> Any | None:
        if not ref or not ref.get("path"):
            return None
        return pd.read_parquet(store.check_object(ref, f"the {what} of run {run_id}"))

    sample = frame(training.get("sample"), "training sample")
    holdout_ref = training.get("holdout") or {}
    holdout = frame(holdout_ref, "holdout sample")
    labels, problem = None, None
    if holdout is None:
        problem = "the run kept no test split (no held-out frame such as X_test)"
    elif not holdout_ref.get("labels"):
        problem = (
            "the run kept no labels of its test split (a run made before mlnb saved them, "
            "or no y_test beside X_test): run the notebook again"
        )
    else:
        table = frame(holdout_ref["labels"], "holdout labels")
        if table is None or "label" not in table or len(table) != len(holdout):
            problem = "the run's holdout labels do not match its holdout rows"
        else:
            labels = table["label"].to_numpy()
    rows: Any = holdout if holdout is not None else sample
    data = "holdout" if holdout is not None else "training sample"
    columns = [str(c) for c in training.get("columns") or rows.columns]
    return {
        "model": model,
        "columns": columns,
        "explain_rows": rows,
        "explain_data": data,
        "background": sample if sample is not None else holdout,
        "holdout": holdout if labels is not None else None,
        "labels": labels,
        "labels_problem": problem,
        "metric_names": list((record.get("metrics") or {}).keys()),
    }


def _explainers() -> tuple[Explainers | None, str | None]:
    """:func:`mlnb.explain.explainer_for`, or None and why it cannot be imported."""
    try:
        from mlnb.explain import explainer_for
    except ImportError as exc:
        return None, f"mlnb.explain (per-row contributions) cannot be imported: {exc}"
    found: Explainers = explainer_for
    return found, None
