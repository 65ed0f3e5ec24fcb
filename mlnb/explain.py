"""Per-row feature contributions (SHAP values) of a trained model: what each feature added.

:func:`explainer_for` picks, for a model and a small background sample of training rows, the
cheapest explainer that is exact for it, and falls back to a sampled one:

- ``linear`` (exact, closed form, no shap): a scikit-learn linear model (``coef_`` and
  ``intercept_``), alone or after per-column steps in a Pipeline (scalers, imputers: each
  output column depends on one input column only). A feature's contribution is
  ``w * (z - mean z)`` over the background, ``z`` the feature after those steps: the exact
  interventional SHAP value.
- ``tree`` (exact): scikit-learn trees, forests and gradient boosting through shap's
  ``TreeExplainer`` (path-dependent TreeSHAP, shap imported on first use); LightGBM and
  XGBoost through their own ``pred_contrib`` (TreeSHAP in the library; no shap).
- ``permutation`` (sampled, :mod:`mlnb.explain_sampled`): any other model, through its
  ``predict_proba`` / ``decision_function`` / ``predict``, within ``max_evals`` model
  evaluations per row.

An exact explainer is checked when it is made: on every background row, its base value plus
the contributions must give the model's own output to 1e-6 (relative to the output's size),
else the sampled explainer is used. Its ``values`` are then that sum (asking the model again
would cost a forest's predict per request, many times TreeSHAP's cost).

What is explained (``Explainer.output``): a regressor's predicted ``value``; a classifier's
output for one class, as the explainer sees it: the probability (forests, sampled
explainers), the log-odds (logistic regression, gradient boosting), a decision function
(other linear classifiers) or a logit (multi-class boosting, the input of the softmax). A
binary classifier is explained for its positive class (the second of ``classes``) on every
row; a multi-class one for the class each row is predicted (the largest output), named per
row in ``Explanation.explained_class``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlnb.errors import ExplainError

CLASSIFICATION = "classification"
REGRESSION = "regression"
TOLERANCE = 1e-6
# Pipeline steps whose every output column is computed from one input column, in order.
COLUMNWISE_STEPS = frozenset(
    {
        "StandardScaler",
        "MinMaxScaler",
        "MaxAbsScaler",
        "RobustScaler",
        "QuantileTransformer",
        "PowerTransformer",
        "SimpleImputer",
    }
)
SKLEARN_TREES = frozenset(
    {
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
        "GradientBoostingClassifier",
        "GradientBoostingRegressor",
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    }
)


@dataclass(frozen=True)
class Explanation:
    """Contributions of ``features`` for n rows: ``base_values + contributions.sum(1)`` is
    ``values``, the explained output; ``explained_class`` names each row's class (None for
    a regressor)."""

    features: list[str]
    base_values: np.ndarray  # (n,)
    values: np.ndarray  # (n,)
    contributions: np.ndarray  # (n, len(features))
    explained_class: list[Any] | None = None

    def records(self) -> list[dict[str, Any]]:
        """One JSON-able object per row: contributions keyed by feature, base value, value
        (and the class explained, for a classifier)."""
        rows = []
        for i in range(len(self.values)):
            row: dict[str, Any] = {
                "contributions": dict(
                    zip(self.features, self.contributions[i].tolist(), strict=True)
                ),
                "base_value": float(self.base_values[i]),
                "value": float(self.values[i]),
            }
            if self.explained_class is not None:
                row["class"] = self.explained_class[i]
            rows.append(row)
        return rows


@dataclass
class Explainer:
    """Explains rows with the training columns: see the module docstring for the methods."""

    method: str
    exact: bool
    output: str
    features: list[str]
    needs: tuple[str, ...] = ()  # packages beyond the model's own (shap)
    evaluations_per_row: int = 1  # model evaluations per explained row (the sampled one's)
    why: str = ""  # for the sampled explainer: why no exact one applied
    _outputs: Any = field(default=None, repr=False)  # frame -> (contribs (n,f,k), base (n,k))
    _classes: list[Any] | None = field(default=None, repr=False)

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """The contributions for every row of ``frame`` (the training columns, any order)."""
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise ExplainError(
                f"the rows to explain lack the column(s) {', '.join(missing[:5])}",
                fix="explain rows with the model's training columns",
            )
        contributions, base = self._outputs(frame[self.features])
        return select(contributions, base, self._classes, self.features)


def select(
    contributions: np.ndarray, base: np.ndarray, classes: list[Any] | None, features: list[str]
) -> Explanation:
    """Pick the explained output of each row from per-output contributions (n, f, k) and base
    values (n, k): the only output, the positive class's of a binary classifier, or the
    largest of a multi-class one."""
    n, _, outputs = contributions.shape
    totals = base + contributions.sum(axis=1)  # (n, k)
    if outputs == 1 or classes is None:
        column = np.zeros(n, dtype=int)
    elif outputs == 2:
        column = np.ones(n, dtype=int)
    else:
        column = np.argmax(totals, axis=1)
    rows = np.arange(n)
    if classes is None:
        explained = None
    elif outputs == 1:
        explained = [classes[-1]] * n
    else:
        explained = [classes[j] for j in column]
    return Explanation(
        features=list(features),
        base_values=base[rows, column],
        values=totals[rows, column],
        contributions=contributions[rows, :, column],
        explained_class=explained,
    )


def explainer_for(
    model: Any,
    background: pd.DataFrame,
    *,
    task: str,
    classes: list[Any] | None = None,
    max_evals: int | None = None,
) -> Explainer:
    """The exact explainer for ``model`` when there is one, else the sampled one.

    ``background`` is a small sample of training rows (the training columns and dtypes);
    ``classes`` a classifier's classes in the model's order (default its ``classes_``);
    ``max_evals`` bounds the sampled explainer's model evaluations per row.
    """
    if task not in (CLASSIFICATION, REGRESSION):
        raise ExplainError(f"unknown task {task!r}", fix="pass 'classification' or 'regression'")
    if len(background) == 0:
        raise ExplainError("the background sample has no rows", fix="pass training rows")
    if task == CLASSIFICATION and classes is None:
        found = getattr(model, "classes_", None)
        classes = None if found is None else [_plain(c) for c in found]
    features = [str(c) for c in background.columns]
    background = background.set_axis(features, axis=1)
    why = f"no exact explainer for {type(model).__name__}"
    for make in (_linear, _booster, _sklearn_tree):
        try:
            explainer = make(model, background, task, classes, features)
        except Exception as exc:  # a model this explainer cannot handle: try the next one
            why = f"the {make.__name__.strip('_')} explainer failed: {type(exc).__name__}: {exc}"
            continue
        if explainer is None:
            continue
        if _adds_up(explainer, model, background, task):
            return explainer
        why = f"the {explainer.method} explainer does not add up to the model's output"
    from mlnb.explain_sampled import permutation_explainer

    sampled = permutation_explainer(model, background, task, classes, features, max_evals)
    sampled.why = why
    return sampled


# --- per-column steps before the model ---


def _split(model: Any, width: int) -> tuple[Any, Any]:
    """(a frame -> array function for the leading per-column steps, or None; the final
    estimator). Anything but a Pipeline of per-column steps is returned whole."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or len(steps) < 2:
        return None, model
    prefix = [step for _, step in steps[:-1] if step not in (None, "passthrough")]
    if not all(type(step).__name__ in COLUMNWISE_STEPS for step in prefix):
        return None, model

    def transform(frame: pd.DataFrame) -> np.ndarray:
        data: Any = frame
        for step in prefix:
            data = step.transform(data)
        array = np.asarray(data, dtype=float)
        if array.shape[1] != width:  # an imputer that dropped an empty column
            raise ExplainError("a step changes the number of columns", fix="")
        return array

    return transform, steps[-1][1]


def _inputs(model: Any, frame: pd.DataFrame) -> tuple[Any, Any]:
    """What the final estimator sees for ``frame``, and the final estimator."""
    transform, final = _split(model, frame.shape[1])
    return (frame if transform is None else transform(frame)), final


# --- linear models: closed form ---


def _linear(
    model: Any, background: pd.DataFrame, task: str, classes: list[Any] | None, features: list[str]
) -> Explainer | None:
    transform, final = _split(model, len(features))
    module = type(final).__module__
    coef = getattr(final, "coef_", None)
    if coef is None or not module.startswith(("sklearn.linear_model", "sklearn.svm")):
        return None
    weights = np.atleast_2d(np.asarray(coef, dtype=float))  # (k, f)
    intercept = np.broadcast_to(
        np.atleast_1d(np.asarray(getattr(final, "intercept_", 0.0), dtype=float)),
        (weights.shape[0],),
    )
    if weights.shape[1] != len(features) or (task == REGRESSION and weights.shape[0] != 1):
        return None  # a multi-target regressor has no one output to explain

    def inputs(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(frame, dtype=float) if transform is None else transform(frame)

    mean = inputs(background).mean(axis=0)

    def outputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        centred = inputs(frame) - mean  # (n, f)
        contributions = centred[:, :, None] * weights.T[None, :, :]  # (n, f, k)
        base = np.broadcast_to(mean @ weights.T + intercept, (len(frame), weights.shape[0]))
        return contributions, np.array(base)

    if task == REGRESSION:
        quantity = "value"
    elif type(final).__name__ == "LogisticRegression":
        quantity = "log-odds" if weights.shape[0] == 1 else "logit"
    else:
        quantity = "decision function"
    return Explainer(
        "linear", True, _describe(quantity, classes), features, _outputs=outputs, _classes=classes
    )


# --- trees: LightGBM and XGBoost natively, scikit-learn through shap ---


def _booster(
    model: Any, background: pd.DataFrame, task: str, classes: list[Any] | None, features: list[str]
) -> Explainer | None:
    transform, final = _split(model, len(features))
    module = type(final).__module__.split(".")[0]
    if module not in ("lightgbm", "xgboost"):
        return None

    def outputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        data = frame if transform is None else transform(frame)
        if module == "lightgbm":
            raw = np.asarray(final.predict(data, pred_contrib=True), dtype=float)
        else:
            import xgboost  # type: ignore[import-not-found]

            matrix = xgboost.DMatrix(data, enable_categorical=True)
            raw = np.asarray(final.get_booster().predict(matrix, pred_contribs=True), float)
        n, width = len(frame), len(features) + 1
        per_output = raw.reshape(n, -1, width)  # (n, k, f + 1): LightGBM's classes side by side
        return per_output[:, :, :-1].transpose(0, 2, 1), per_output[:, :, -1]

    binary = len(classes or ()) <= 2
    quantity = "value" if task == REGRESSION else "log-odds" if binary else "logit"
    return Explainer(
        "tree", True, _describe(quantity, classes), features, _outputs=outputs, _classes=classes
    )


def _sklearn_tree(
    model: Any, background: pd.DataFrame, task: str, classes: list[Any] | None, features: list[str]
) -> Explainer | None:
    transform, final = _split(model, len(features))
    if type(final).__name__ not in SKLEARN_TREES or not type(final).__module__.startswith(
        "sklearn."
    ):
        return None
    tree = import_shap().TreeExplainer(final)  # no data: path-dependent TreeSHAP, exact and fast
    expected = np.atleast_1d(np.asarray(tree.expected_value, dtype=float))

    def outputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        data = np.asarray(frame, dtype=float) if transform is None else transform(frame)
        values = np.asarray(tree.shap_values(data, check_additivity=False), dtype=float)
        if values.ndim == 2:
            values = values[:, :, None]
        return values, np.broadcast_to(expected, (len(frame), len(expected))).copy()

    if task == REGRESSION:
        quantity = "value"
    elif "GradientBoosting" in type(final).__name__:
        quantity = "log-odds" if len(classes or ()) <= 2 else "logit"
    else:
        quantity = "probability"
    return Explainer(
        "tree",
        True,
        _describe(quantity, classes),
        features,
        needs=("shap",),
        _outputs=outputs,
        _classes=classes,
    )


def import_shap() -> Any:
    """shap, imported on first use (numba, matplotlib: seconds), its import-time warnings
    (matplotlib deprecations) silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap  # type: ignore[import-untyped]
    return shap


# --- the check every exact explainer passes ---


def model_outputs(model: Any, frame: pd.DataFrame, task: str, quantity: str) -> np.ndarray:
    """The model's own outputs (n, k) for the quantity an explainer explains."""
    if task == REGRESSION:
        return np.asarray(model.predict(frame), dtype=float).reshape(len(frame), -1)
    if quantity == "probability":
        return np.asarray(model.predict_proba(frame), dtype=float)
    transform, final = _split(model, frame.shape[1])
    if type(final).__module__.startswith("lightgbm"):
        data = frame if transform is None else transform(frame)
        raw = final.predict(data, raw_score=True)
    elif type(final).__module__.startswith("xgboost"):
        raw = final.predict(frame if transform is None else transform(frame), output_margin=True)
    else:
        raw = model.decision_function(frame)
    return np.asarray(raw, dtype=float).reshape(len(frame), -1)


def _adds_up(explainer: Explainer, model: Any, background: pd.DataFrame, task: str) -> bool:
    """Base value plus contributions give the model's own output on every background row, for
    every output (class), to ``TOLERANCE`` relative to the output's size."""
    quantity = explainer.output.split(" of ")[0]
    expected = model_outputs(model, background, task, quantity)
    contributions, base = explainer._outputs(background)
    totals = base + contributions.sum(axis=1)
    if totals.shape != expected.shape:
        return False
    scale = np.maximum(1.0, np.abs(expected))
    return bool(np.all(np.abs(totals - expected) <= TOLERANCE * scale))


def _describe(quantity: str, classes: list[Any] | None) -> str:
    if classes is None:
        return quantity
    if len(classes) <= 2:
        return f"{quantity} of class {classes[-1]!r}"
    return f"{quantity} of the predicted class"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
