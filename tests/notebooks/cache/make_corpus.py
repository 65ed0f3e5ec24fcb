# ruff: noqa: E501
"""Writes the cache corpus: notebooks whose later stages change earlier values in place."""

import json
from pathlib import Path


def cell(src, tags=(), mlnb=None, kind="code"):
    md = {}
    if tags:
        md["tags"] = list(tags)
    if mlnb:
        md["mlnb"] = mlnb
    c = {"cell_type": kind, "metadata": md, "source": src}
    if kind == "code":
        c.update(execution_count=None, outputs=[])
    return c


def md(text):
    return cell(text, kind="markdown")


def write(name, cells):
    for i, c in enumerate(cells):
        c["id"] = f"{name[:8]}-{i}"
    doc = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    Path(name).write_text(json.dumps(doc, indent=1) + "\n")


write(
    "passengers.ipynb",
    [
        md(
            "# Passengers\nCleaning happens in place, in the stages after the one that loads the data."
        ),
        cell(
            "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression"
        ),
        cell("seed = 3\nfill = 0.5", ("parameters",)),
        cell(
            "rng = np.random.default_rng(seed)\nn = 60\nX = pd.DataFrame({\n    'age': rng.normal(30, 9, n).round(),\n    'fare': rng.gamma(2.0, 10.0, n),\n    'embarked': rng.choice(['S', 'C', 'Q'], n),\n})\nX.loc[::7, 'age'] = np.nan\nX.loc[::5, 'fare'] = np.nan\ny = (X['fare'].fillna(0) > 15).astype(int)\nlog = []",
            ("mlnb:data",),
        ),
        md("Drop rows without an age, fill the fares, in place."),
        cell(
            "keep = X['age'].notna()\ny = y[keep]\nX.dropna(subset=['age'], inplace=True)\nX['fare'] = X['fare'].fillna(X['fare'].median() * fill)\nlog.append(('cleaned', len(X)))",
            ("mlnb:data:clean",),
        ),
        cell(
            "X['embarked'] = X['embarked'].astype('category').cat.codes\nmodel = LogisticRegression(max_iter=200)",
            ("mlnb:data:encode",),
        ),
        cell(
            "%time model.fit(X, y)\nn_rows = len(X)\nsteps = len(log)\naccuracy = float(model.score(X, y))\nmetrics = {'accuracy': accuracy, 'n_rows': n_rows, 'steps': steps, 'fare_sum': float(X['fare'].sum())}",
            ("mlnb:train",),
            {"version": 1, "model": "model"},
        ),
        cell(
            "coef_sum = float(model.coef_.sum()) + 0.0\nmetrics = {'coef_sum': coef_sum, 'rows_seen': len(X) + 0}",
            ("mlnb:train:inspect",),
        ),
    ],
)

write(
    "helpers_mutate.ipynb",
    [
        md(
            "# Helpers that change their argument\nNo line of the stages changes `frame` visibly: the helper functions do."
        ),
        cell(
            "import pandas as pd\n\ndef add_ratio(df, k):\n    df['ratio'] = df['a'] / (df['b'] + k)\n\ndef trim(df, limit):\n    df.drop(df.index[df['a'] > limit], inplace=True)"
        ),
        cell("limit = 8", ("parameters",)),
        cell(
            "frame = pd.DataFrame({'a': range(12), 'b': range(1, 13)})\nhistory = {}",
            ("mlnb:data",),
        ),
        cell(
            "add_ratio(frame, 1)\ntrim(frame, limit)\nhistory.update(trimmed=True)",
            ("mlnb:data:features",),
        ),
        cell(
            "%%capture fit_log\ntotal = float(frame['ratio'].sum())\nprint(total)\nmetrics = {'total': total, 'rows': len(frame) * 1, 'keys': len(history)}",
            ("mlnb:train",),
        ),
    ],
)
