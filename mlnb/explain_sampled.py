"""The sampled explainer: Shapley values estimated from random feature orderings.

For a row ``x``, a chain starts at a background row ``b`` and switches the features from
``b``'s values to ``x``'s one at a time, in a random order; each feature is credited with the
change in the model's output at its switch. The contributions of one chain add up to
``f(x) - f(b)``; their average over chains estimates the interventional SHAP values over the
background distribution (Strumbelj and Kononenko's sampling; shap's PermutationExplainer
samples the same way). Orderings come in antithetic pairs (an order and its reverse, on the
same background row) and every kept background row starts the same number of chains, so the
base value is the mean output over those rows and the contributions add up to ``f(x)`` exactly;
only their split between features is sampled.

The budget is ``max_evals`` model evaluations per row (default 1,000): ``chains * (features - 1)
+ 1`` of them. Frames are assembled column by column, keeping every dtype (categoricals,
strings, datetimes), and each request is one call of the model. The random orderings are
seeded: the same row gets the same answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from mlnb.errors import ExplainError
from mlnb.explain import CLASSIFICATION, Explainer

DEFAULT_MAX_EVALS = 1000
SEED = 0


def permutation_explainer(
    model: Any,
    background: pd.DataFrame,
    task: str,
    classes: list[Any] | None,
    features: list[str],
    max_evals: int | None = None,
) -> Explainer:
    """The sampled explainer of ``model`` over (part of) ``background``."""
    budget = max(2, max_evals or DEFAULT_MAX_EVALS)
    predict, quantity = _output_function(model, task)
    width = len(features)
    # chains per row, an even number (antithetic pairs), within the budget
    chains = max(2, (budget - 1) // max(1, width - 1)) // 2 * 2
    kept = min(len(background), chains // 2)
    chains = chains // (2 * kept) * (2 * kept)
    starts = background.sample(n=kept, random_state=SEED).reset_index(drop=True)
    start_outputs = predict(starts)  # (kept, k)
    base = start_outputs.mean(axis=0)

    def outputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return _chains(frame, starts, start_outputs, predict, chains), np.broadcast_to(
            base, (len(frame), len(base))
        ).copy()

    if task == CLASSIFICATION and classes is not None:
        output = (
            f"{quantity} of class {classes[-1]!r}"
            if len(classes) <= 2
            else (f"{quantity} of the predicted class")
        )
    else:
        output = quantity
    evaluations = chains * max(0, width - 1) + 1
    return Explainer(
        "permutation",
        False,
        output,
        features,
        evaluations_per_row=evaluations,
        _outputs=outputs,
        _classes=classes,
    )


def _output_function(model: Any, task: str) -> tuple[Any, str]:
    """frame -> outputs (n, k), and what they are."""
    if task != CLASSIFICATION:
        return (lambda frame: np.asarray(model.predict(frame), float).reshape(len(frame), -1)), (
            "value"
        )
    if hasattr(model, "predict_proba"):
        return (lambda frame: np.asarray(model.predict_proba(frame), float)), "probability"
    if hasattr(model, "decision_function"):

        def decision(frame: pd.DataFrame) -> np.ndarray:
            return np.asarray(model.decision_function(frame), float).reshape(len(frame), -1)

        return decision, "decision function"
    raise ExplainError(
        f"the classifier {type(model).__name__} has neither predict_proba nor "
        "decision_function: there is no number per row to explain",
        fix="train a classifier with probabilities (for an SVC, probability=True)",
    )


def _chains(
    frame: pd.DataFrame,
    starts: pd.DataFrame,
    start_outputs: np.ndarray,
    predict: Any,
    chains: int,
) -> np.ndarray:
    """The contributions (n, f, k) of every row of ``frame``, averaged over ``chains``."""
    n, width, kept = len(frame), frame.shape[1], len(starts)
    outputs = start_outputs.shape[1]
    rng = np.random.default_rng(SEED)
    if width == 1 or n == 0:  # one feature: it alone moves the output from the base
        ends = np.asarray(predict(frame)) if n else np.zeros((0, outputs))
        return np.asarray(ends - start_outputs.mean(axis=0))[:, None, :]
    pairs = chains // 2
    origin = np.repeat(np.arange(kept), pairs // kept)  # each kept row starts as many pairs
    orders = np.empty((n, chains, width), dtype=int)
    for i in range(n):
        forward = np.argsort(rng.random((pairs, width)), axis=1)
        orders[i] = np.concatenate([forward, forward[:, ::-1]])
    begin = np.concatenate([origin, origin])  # (chains,) the background row of each chain
    # rank[i, c, j]: the step at which chain c of row i switches feature j to the row's value
    rank = np.empty_like(orders)
    np.put_along_axis(rank, orders, np.arange(width)[None, None, :], axis=2)
    steps = np.arange(1, width)  # the hybrids after 1 .. width-1 switches
    from_row = rank[:, :, None, :] < steps[None, None, :, None]  # (n, chains, width-1, width)
    source = np.where(
        from_row,
        kept + np.arange(n)[:, None, None, None],  # the row itself, after the starts
        begin[None, :, None, None],
    ).reshape(-1, width)
    stack = pd.concat([starts, frame.reset_index(drop=True)], ignore_index=True)
    hybrids = pd.DataFrame(
        {
            name: stack[name].take(source[:, j]).reset_index(drop=True)
            for j, name in enumerate(frame.columns)
        }
    )
    evaluated = predict(pd.concat([hybrids, frame.reset_index(drop=True)], ignore_index=True))
    middle = evaluated[: len(hybrids)].reshape(n, chains, width - 1, outputs)
    ends = evaluated[len(hybrids) :]  # (n, k)
    path = np.concatenate(
        [
            np.broadcast_to(start_outputs[begin][None, :, None, :], (n, chains, 1, outputs)),
            middle,
            np.broadcast_to(ends[:, None, None, :], (n, chains, 1, outputs)),
        ],
        axis=2,
    )  # (n, chains, width + 1, k)
    steps_gain = np.diff(path, axis=2)  # (n, chains, width, k): the gain of each step
    contributions = np.take_along_axis(
        steps_gain, rank[:, :, :, None], axis=2
    )  # back from steps to features
    return np.asarray(contributions.mean(axis=1))
