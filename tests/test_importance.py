"""Global importance (mlnb.importance): permutation importance as scikit-learn computes it on
the same rows, mean |contribution| through mlnb.explain, the store's cache, and the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlnb import importance
from mlnb.errors import StoredObjectError
from mlnb.explain import explainer_for
from mlnb.run.outputs import write_object
from mlnb.run_report import importance_view, render_run_report, run_importance
from mlnb.store import Store

HOSTILE = '<script>alert("x")</script>&'


def synthetic(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three columns: ``strong`` drives the target, ``weak`` a little, ``noise`` not at all."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "strong": rng.normal(size=n),
            "weak": rng.normal(size=n),
        }
    )
    target = 3.0 * frame["strong"] + 0.8 * frame["weak"] + rng.normal(scale=0.3, size=n)
    return frame, target.to_numpy()


def compute(model: Any, train: pd.DataFrame, test: pd.DataFrame, labels: Any, metric: str) -> Any:
    return importance.compute(
        model,
        columns=list(train.columns),
        explain_rows=test,
        explain_data="holdout",
        background=train,
        holdout=test,
        labels=labels,
        labels_problem=None,
        metric_names=[metric],
        explainers=explainer_for,
    )


def by_feature(result: dict[str, Any], key: str) -> dict[str, float]:
    return {f["feature"]: f[key] for f in result["features"]}


def test_linear_classifier_permutation_agrees_with_sklearn_and_ranks_sensibly() -> None:
    x, target = synthetic(600)
    y = (target > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:300], y[:300])
    test, labels = x[300:], y[300:]
    result = compute(model, x[:300], test, labels, "accuracy")

    expected = permutation_importance(
        model,
        test.head(importance.MAX_ROWS),
        labels[: importance.MAX_ROWS],
        scoring="accuracy",
        n_repeats=importance.REPEATS,
        random_state=importance.SEED,
    )
    found = by_feature(result, "permutation_mean")
    assert [found[c] for c in test.columns] == pytest.approx(list(expected.importances_mean))
    permutation = result["permutation"]
    assert permutation["scoring"] == "accuracy" and permutation["rows"] == importance.MAX_ROWS
    assert "primary metric 'accuracy'" in permutation["scoring_from"]

    contribution = result["contribution"]
    assert contribution["method"] == "linear" and contribution["exact"] is True
    assert contribution["rows"] == importance.MAX_ROWS and contribution["data"] == "holdout"
    assert [f["feature"] for f in result["features"]] == ["strong", "weak", "noise"]
    assert result["ordered_by"] == "mean_abs_contribution"
    assert found["strong"] > found["weak"] > abs(found["noise"])


def test_tree_regressor_ranks_sensibly_and_an_unknown_metric_uses_the_models_score() -> None:
    x, y = synthetic(500, seed=1)
    model = RandomForestRegressor(n_estimators=30, max_depth=5, random_state=0, n_jobs=1)
    model.fit(x[:300], y[:300])
    result = compute(model, x[:300], x[300:], y[300:], "my_own_metric")
    assert result["contribution"]["method"] == "tree"
    assert [f["feature"] for f in result["features"]] == ["strong", "weak", "noise"]
    permutation = result["permutation"]
    assert permutation["scoring"] == "score" and permutation["scoring_from"] == "the model's score"
    expected = permutation_importance(
        model, x[300:], y[300:], n_repeats=importance.REPEATS, random_state=importance.SEED
    )
    found = by_feature(result, "permutation_mean")
    assert [found[c] for c in x.columns] == pytest.approx(list(expected.importances_mean))
    assert permutation["baseline"] == pytest.approx(model.score(x[300:], y[300:]))


def test_metric_names_map_to_scorers() -> None:
    assert importance.scorer_for(["accuracy", "roc_auc"]) == "accuracy"
    assert importance.scorer_for(["mae"]) == "neg_mean_absolute_error"
    assert importance.scorer_for(["R2"]) == "r2"
    assert importance.scorer_for(["speed"]) is None
    assert importance.scorer_for([]) is None


# --- the store edge ---


def parquet(store: Store, frame: pd.DataFrame) -> dict[str, Any]:
    sha, path = write_object(store.root, lambda fh: frame.to_parquet(fh))
    return {"path": path, "sha256": sha, "rows": len(frame)}


def make_run(store: Store, *, labels: bool = True, run_id: str = "r1") -> dict[str, Any]:
    x, target = synthetic(400, seed=2)
    y = (target > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:300], y[:300])
    sha, path = write_object(store.root, lambda fh: joblib.dump(model, fh))
    holdout = parquet(store, x[300:].reset_index(drop=True))
    if labels:
        holdout["labels"] = parquet(store, pd.DataFrame({"label": y[300:]}))
    record = {
        "run_id": run_id,
        "status": "succeeded",
        "started_at": "2026-12-01T00:00:00+00:00",
        "notebook": {"path": str(store.root.parent / "nb.ipynb")},
        "stages": [],
        "metrics": {"accuracy": 0.9},
        "model": {"path": path, "sha256": sha, "format": "joblib", "class": "Pipeline"},
        "training_data": {
            "variable": "X_train",
            "columns": list(x.columns),
            "rows": 300,
            "sample": parquet(store, x[:300]),
            "holdout": holdout,
        },
    }
    store.create_run(record)
    executed = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (store.run_dir(run_id) / "notebook.ipynb").write_text(json.dumps(executed))
    return record


def test_computed_once_then_read_from_the_stores_cache(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlnb")
    record = make_run(store)
    started = time.perf_counter()
    first = importance.importance_of_run(store, record)
    seconds = time.perf_counter() - started
    assert first["cached"] is False and first["permutation"]["available"]
    assert first["contribution"]["available"], first["contribution"]
    assert importance.cache_path(store, first["key"]).is_file()
    again = importance.importance_of_run(store, record)
    assert again["cached"] is True
    assert again["features"] == first["features"]
    assert importance.cached_importance(store, record) is not None
    assert seconds < 10  # bounded rows and repeats (imports included)


def test_an_older_run_without_labels_says_why(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlnb")
    result = importance.importance_of_run(store, make_run(store, labels=False))
    assert result["permutation"] == {
        "available": False,
        "reason": "the run kept no labels of its test split (a run made before mlnb saved "
        "them, or no y_test beside X_test): run the notebook again",
    }
    assert result["ordered_by"] == "mean_abs_contribution"


def test_a_damaged_model_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlnb")
    record = make_run(store)
    path = store.resolve(record["model"]["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoredObjectError, match="the model of run r1"):
        importance.importance_of_run(store, record)


# --- the report ---


def hostile_importance() -> dict[str, Any]:
    features = [
        {
            "feature": name,
            "mean_abs_contribution": value,
            "permutation_mean": value / 2,
            "permutation_std": 0.01,
        }
        for name, value in ((HOSTILE, 0.9), ("ok", 0.2))
    ]
    return {
        "available": True,
        "version": 1,
        "ordered_by": "mean_abs_contribution",
        "features": features,
        "contribution": {
            "available": True,
            "method": "linear",
            "exact": True,
            "output": f"log-odds of class {HOSTILE}",
            "data": "holdout",
            "rows": 2,
        },
        "permutation": {"available": False, "reason": f"no labels {HOSTILE}"},
    }


def test_the_report_shows_the_top_features_and_escapes_their_names(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlnb")
    make_run(store)
    page = render_run_report(store, "r1", importance=hostile_importance())
    assert "<script>alert" not in page
    section = page[page.index("<h2>Global importance</h2>") : page.index("<h2>Lineage</h2>")]
    assert "&lt;script&gt;alert(" in section
    assert section.count("<svg") == 1  # permutation unavailable: one chart
    assert "Permutation importance unavailable: no labels &lt;script&gt;" in section
    assert "linear SHAP (exact)" in section


def test_the_report_computes_importance_from_the_run(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlnb")
    make_run(store)
    page = render_run_report(store, "r1")
    section = page[page.index("<h2>Global importance</h2>") : page.index("<h2>Lineage</h2>")]
    assert section.count("<svg") == 2
    assert "<td><code>strong</code></td>" in section
    assert "the drop in accuracy (the run" in section and "primary metric" in section
    view = importance_view(run_importance(store, store.get_run("r1")))
    assert view["features"][0]["feature"] == "strong"
    assert json.dumps(view["features"])  # plain JSON
