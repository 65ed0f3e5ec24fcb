"""Stages, names and dependencies read from notebooks, without running anything."""

from __future__ import annotations

import pytest

from mlnb.analysis import analyse
from mlnb.parameters import read_parameters
from mlnb.pipeline import load_pipeline

from .conftest import EXAMPLES, code_cell


@pytest.mark.parametrize("name", ["breast_cancer.ipynb", "diabetes.ipynb"])
def test_examples_have_data_train_and_serve(name: str) -> None:
    pipeline = load_pipeline(EXAMPLES / name)
    assert [s.kind for s in pipeline.stages] == ["data", "train", "serve"]
    data, train, serve = pipeline.stages
    assert train.depends_on == (data.name,)
    assert train.name in serve.depends_on
    assert train.options.model in train.defines
    assert "predict" in serve.defines
    assert pipeline.parameters, "each example has a parameters cell"


def test_breast_cancer_reads() -> None:
    pipeline = load_pipeline(EXAMPLES / "breast_cancer.ipynb")
    load, fit, _serve = pipeline.stages
    assert load.uses == ("seed", "test_size")
    assert fit.uses == ("C", "X_test", "X_train", "max_iter", "y_test", "y_train")
    assert fit.options.metrics == ("accuracy", "roc_auc")
    assert pipeline.setup_defines[:2] == ("LogisticRegression", "StandardScaler")


@pytest.mark.parametrize(
    ("sources", "defines", "reads"),
    [
        (["df = df.dropna()"], {"df"}, {"df"}),
        (["x = 1", "y = x + z"], {"x", "y"}, {"z"}),
        (["import numpy as np", "from a.b import c as d"], {"np", "d"}, set()),
        (
            ["def f(a):\n    return a + g + helper()", "def helper():\n    return 1"],
            {"f", "helper"},
            {"g"},
        ),
        (["total = sum(v * k for v in values)"], {"total"}, {"values", "k"}),
        (["for i, row in enumerate(rows):\n    acc += row"], {"i", "row", "acc"}, {"rows", "acc"}),
        (["%matplotlib inline\nfiles = !ls\nout = files"], {"files", "out"}, set()),
        (["%%bash\necho $HOME"], set(), set()),
        (["with open(p) as fh:\n    text = fh.read()"], {"fh", "text"}, {"p"}),
        (
            ["try:\n    x = risky()\nexcept ValueError as err:\n    x = err"],
            {"x", "err"},
            {"risky"},
        ),
        (
            ["class Model:\n    size = n\n    def fit(self):\n        return self.size"],
            {"Model"},
            {"n"},
        ),
        (["if (m := compute()) > 1:\n    big = m"], {"m", "big"}, {"compute"}),
        (["display(frame)\nprint(len(frame))"], set(), {"frame"}),
    ],
)
def test_name_analysis(sources: list[str], defines: set[str], reads: set[str]) -> None:
    result = analyse(sources)
    assert set(result.defines) == defines
    assert set(result.reads) == reads


def test_dependencies_follow_the_latest_definition(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("rows = list(range(100))", ("mlnb:data:raw",)),
            code_cell(
                "rows = [r * 2 for r in rows]\nlabels = [r % 2 for r in rows]", ("mlnb:data:clean",)
            ),
            code_cell("model = sum(rows) / len(rows)", ("mlnb:train",)),
            code_cell("def predict(x):\n    return [model for _ in x]", ("mlnb:serve",)),
        ]
    )
    _raw, clean, train, serve = load_pipeline(path).stages
    assert clean.depends_on == ("raw",)
    assert train.depends_on == ("clean",)  # not raw: clean redefined rows
    assert serve.depends_on == ("train",)
    assert serve.uses == ("model",)
    assert load_pipeline(path).downstream("clean") == {"train", "serve"}


def test_parameters_keep_literals_types_and_choices() -> None:
    params = read_parameters(
        'alpha = 0.5\nn = 3\nname = "a#b"  # choices: a#b, c\nflag: bool = True\n'
        "path = base / 'x'\nnothing = None\n"
    )
    assert [(p.name, p.default, p.type_name) for p in params] == [
        ("alpha", 0.5, "float"),
        ("n", 3, "int"),
        ("name", "a#b", "str"),
        ("flag", True, "bool"),
        ("path", "base / 'x'", "expr"),
        ("nothing", None, "none"),
    ]
    assert params[2].choices == ("a#b", "c")
