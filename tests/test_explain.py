"""mlnb.explain: contributions plus the base value give the model's own output (to 1e-6) for
linear and tree models on random rows; the sampled explainer adds up exactly and agrees with
the closed form where both apply; the explained class is the positive one for a binary
classifier and the predicted one otherwise."""

from __future__ import annotations

import functools
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    RidgeClassifier,
    SGDRegressor,
)
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, QuantileTransformer, RobustScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlnb.errors import ExplainError
from mlnb.explain import explainer_for, model_outputs
from mlnb.explain_sampled import permutation_explainer

BINARY, MULTI, REG = "binary", "multi", "regression"


@functools.cache
def data(kind: str) -> tuple[pd.DataFrame, pd.Series]:
    loader = {BINARY: load_breast_cancer, MULTI: load_iris, REG: load_diabetes}[kind]
    bunch = loader(as_frame=True)
    return bunch.data, bunch.target


def lgbm(kind: str) -> Any:
    if kind == REG:
        return lightgbm.LGBMRegressor(n_estimators=30, verbose=-1)
    return lightgbm.LGBMClassifier(n_estimators=30, verbose=-1)


EXACT = [
    # (name, kind, factory, method, quantity)
    (
        "logistic+scaler",
        BINARY,
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "linear",
        "log-odds",
    ),
    ("logistic multi", MULTI, lambda: LogisticRegression(max_iter=2000), "linear", "logit"),
    (
        "ridge classifier",
        BINARY,
        lambda: make_pipeline(RobustScaler(), RidgeClassifier()),
        "linear",
        "decision function",
    ),
    (
        "linear svc",
        MULTI,
        lambda: make_pipeline(MinMaxScaler(), LinearSVC()),
        "linear",
        "decision function",
    ),
    ("linear regression", REG, LinearRegression, "linear", "value"),
    (
        "lasso+quantile",
        REG,
        lambda: make_pipeline(QuantileTransformer(n_quantiles=50), Lasso(alpha=0.01)),
        "linear",
        "value",
    ),
    (
        "elastic net+imputer",
        REG,
        lambda: make_pipeline(SimpleImputer(), StandardScaler(), ElasticNet(alpha=0.01)),
        "linear",
        "value",
    ),
    (
        "sgd",
        REG,
        lambda: make_pipeline(StandardScaler(), SGDRegressor(random_state=0)),
        "linear",
        "value",
    ),
    ("decision tree", MULTI, lambda: DecisionTreeClassifier(random_state=0), "tree", "probability"),
    ("forest", BINARY, lambda: RandomForestClassifier(40, random_state=0), "tree", "probability"),
    (
        "forest multi",
        MULTI,
        lambda: RandomForestClassifier(20, random_state=0),
        "tree",
        "probability",
    ),
    (
        "forest regressor",
        REG,
        lambda: RandomForestRegressor(30, max_depth=8, random_state=0),
        "tree",
        "value",
    ),
    (
        "extra trees+scaler",
        REG,
        lambda: make_pipeline(StandardScaler(), ExtraTreesRegressor(20, random_state=0)),
        "tree",
        "value",
    ),
    ("tree regressor", REG, lambda: DecisionTreeRegressor(max_depth=5), "tree", "value"),
    (
        "gradient boosting",
        BINARY,
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        "tree",
        "log-odds",
    ),
    (
        "gradient boosting regressor",
        REG,
        lambda: GradientBoostingRegressor(n_estimators=30),
        "tree",
        "value",
    ),
    (
        "hist gradient boosting",
        BINARY,
        lambda: HistGradientBoostingClassifier(max_iter=30),
        "tree",
        "log-odds",
    ),
    (
        "hist gradient boosting regressor",
        REG,
        lambda: HistGradientBoostingRegressor(max_iter=30),
        "tree",
        "value",
    ),
    ("lightgbm", BINARY, lambda: lgbm(BINARY), "tree", "log-odds"),
    ("lightgbm multi", MULTI, lambda: lgbm(MULTI), "tree", "logit"),
    ("lightgbm regressor", REG, lambda: lgbm(REG), "tree", "value"),
]


def fitted(kind: str, factory: Any) -> tuple[Any, pd.DataFrame]:
    X, y = data(kind)
    return factory().fit(X, y), X


def task_of(kind: str) -> str:
    return "regression" if kind == REG else "classification"


@pytest.mark.parametrize(
    ("kind", "factory", "method", "quantity"),
    [case[1:] for case in EXACT],
    ids=[case[0] for case in EXACT],
)
def test_exact_explainers_add_up_to_the_models_output(
    kind: str, factory: Any, method: str, quantity: str
) -> None:
    model, X = fitted(kind, factory)
    rng = np.random.default_rng(len(quantity) + len(method))
    background = X.iloc[rng.choice(len(X), 60, replace=False)]
    explainer = explainer_for(model, background, task=task_of(kind))
    assert (explainer.method, explainer.exact) == (method, True)
    assert explainer.output.split(" of ")[0] == quantity
    # random rows, some beyond the training ranges (a tree's or a scaler's edge)
    rows = X.iloc[rng.choice(len(X), 40)].reset_index(drop=True)
    rows.iloc[:5] = rows.iloc[:5] * rng.uniform(0.5, 2.0, size=(5, X.shape[1]))
    explanation = explainer.explain(rows)
    assert explanation.contributions.shape == (40, X.shape[1])
    added = explanation.base_values + explanation.contributions.sum(axis=1)
    own = model_outputs(model, rows, task_of(kind), quantity)  # (n, k), from the model
    column = _explained_columns(kind, own, model, explanation.explained_class)
    expected = own[np.arange(len(rows)), column]
    np.testing.assert_allclose(added, expected, rtol=0, atol=1e-6 * max(1, np.abs(expected).max()))
    np.testing.assert_allclose(
        explanation.values, added, rtol=0, atol=1e-12 * max(1, abs(added).max())
    )


def _explained_columns(kind: str, own: np.ndarray, model: Any, explained: Any) -> np.ndarray:
    """Which column of the model's outputs each row explains: the positive class of a binary
    classifier, the predicted class of a multi-class one."""
    n = len(own)
    if kind == REG or own.shape[1] == 1:
        assert explained is None or set(explained) == {model.classes_[-1]}
        return np.zeros(n, dtype=int)
    if kind == BINARY:
        assert set(explained) == {model.classes_[1]}
        return np.ones(n, dtype=int)
    predicted = np.argmax(own, axis=1)
    assert explained == [model.classes_[j].item() for j in predicted]
    return predicted


@pytest.mark.parametrize("kind", [BINARY, MULTI, REG])
def test_other_models_get_the_sampled_explainer_which_adds_up(kind: str) -> None:
    factory = KNeighborsRegressor if kind == REG else KNeighborsClassifier
    model, X = fitted(kind, factory)
    explainer = explainer_for(model, X.sample(40, random_state=0), task=task_of(kind))
    assert (explainer.method, explainer.exact) == ("permutation", False)
    assert explainer.evaluations_per_row <= 1000
    rows = X.sample(6, random_state=1)
    explanation = explainer.explain(rows)
    quantity = "value" if kind == REG else "probability"
    own = model_outputs(model, rows, task_of(kind), quantity)
    column = _explained_columns(kind, own, model, explanation.explained_class)
    added = explanation.base_values + explanation.contributions.sum(axis=1)
    np.testing.assert_allclose(added, own[np.arange(6), column], atol=1e-9)
    assert not np.allclose(explanation.contributions, 0)
    again = explainer.explain(rows)  # seeded: the same rows, the same answer
    np.testing.assert_array_equal(again.contributions, explanation.contributions)


def test_sampled_explainer_matches_the_closed_form_on_a_linear_model() -> None:
    """For an additive model every ordering gives w * (x - b): the sample is exact, so the
    estimate must equal the closed form over the same background rows."""
    model, X = fitted(REG, LinearRegression)
    features = list(X.columns)
    sampled = permutation_explainer(model, X.head(30), "regression", None, features, 400)
    rows = X.tail(5).to_numpy()
    estimate = sampled.explain(X.tail(5))
    # each chain gives w * (x - its start): the starts' mean is the same for every row ...
    starts = rows - estimate.contributions / model.coef_
    np.testing.assert_allclose(starts, np.broadcast_to(starts[0], starts.shape), atol=1e-9)
    # ... and the base value is the model's output there
    at_starts = model.predict(pd.DataFrame(starts[:1], columns=X.columns))
    np.testing.assert_allclose(estimate.base_values, np.repeat(at_starts, 5), atol=1e-9)


def test_categorical_and_string_columns_are_explained_with_their_dtypes() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=300),
            "colour": pd.Categorical(rng.choice(["red", "green", "blue"], 300)),
            "shop": rng.choice(["a", "b"], 300).astype(object),
        }
    )
    target = frame["size"] * 2 + (frame["colour"] == "red") * 3 + (frame["shop"] == "a")

    class Frame:  # a model that needs the frame's own dtypes (a category, strings)
        def predict(self, X: pd.DataFrame) -> np.ndarray:
            assert isinstance(X["colour"].dtype, pd.CategoricalDtype)
            assert X["shop"].map(type).eq(str).all()
            return (X["size"] * 2 + (X["colour"] == "red") * 3 + (X["shop"] == "a")).to_numpy()

    explainer = explainer_for(Frame(), frame.head(50), task="regression")
    explanation = explainer.explain(frame.tail(4))
    added = explanation.base_values + explanation.contributions.sum(axis=1)
    np.testing.assert_allclose(added, target.tail(4).to_numpy(), atol=1e-9)


def test_a_classifier_without_a_number_to_explain_is_named() -> None:
    class Labels:
        classes_ = np.array(["no", "yes"])

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.array(["no"] * len(X))

    X, _ = data(BINARY)
    with pytest.raises(ExplainError, match="neither predict_proba nor decision_function"):
        explainer_for(Labels(), X.head(10), task="classification")


def test_rows_without_the_training_columns_are_refused() -> None:
    model, X = fitted(REG, LinearRegression)
    explainer = explainer_for(model, X.head(20), task="regression")
    with pytest.raises(ExplainError, match="lack the column"):
        explainer.explain(X.drop(columns=["bmi"]).head(2))


def test_a_pipeline_that_mixes_columns_is_not_called_exact() -> None:
    """A PCA before the linear model: contributions of the raw columns are not w * (z - mean
    z) any more, so the sampled explainer answers, and says so."""
    from sklearn.decomposition import PCA

    model, X = fitted(REG, lambda: make_pipeline(PCA(3), LinearRegression()))
    explainer = explainer_for(model, X.head(30), task="regression", max_evals=200)
    assert (explainer.method, explainer.exact) == ("permutation", False)
    assert explainer.evaluations_per_row <= 200
