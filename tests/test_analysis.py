"""What the analysis reads from cells as people write them: magics, in-place changes, opacity."""

from __future__ import annotations

import pytest

from mlnb.analysis import analyse
from mlnb.notebook import parse_notebook
from mlnb.pipeline import pipeline_from_notebook

from .conftest import code_cell, notebook_json


@pytest.mark.parametrize(
    ("source", "defines", "reads", "changes"),
    [
        (
            "%time model.fit(X_train, y_train)",
            {"model"},
            {"model", "X_train", "y_train"},
            {"model"},
        ),
        ("y = %time f(x)", {"y"}, {"f", "x"}, set()),
        ("%timeit -n 3 -r 2 f(x)", set(), {"f", "x"}, set()),
        ("%%time\nz = w + 1", {"z"}, {"w"}, set()),
        (
            "%%capture train_log\nmodel.fit(X)\nprint(1)",
            {"model", "train_log"},
            {"X", "model"},
            {"model"},
        ),
        ("%%capture --no-stderr out\nq = 1", {"out", "q"}, set(), set()),
        ("!pip install {pkg} $name", set(), {"pkg", "name"}, set()),
        ("files = !ls {folder}", {"files"}, {"folder"}, set()),
        ("%matplotlib inline\nimport numpy as np", {"np"}, set(), set()),
        ("%%bash --out listing\nls", {"listing"}, set(), set()),
        ("%%html\n<b>{x}</b>", set(), set(), set()),
        ("x = 1\nx?", {"x"}, set(), set()),
        ("X.dropna(subset=['age'], inplace=True)", {"X"}, {"X"}, {"X"}),
        ("X.dropna(subset=['age'], inplace=False)", set(), {"X"}, set()),
        ('X["fare"] = X["fare"].fillna(X["fare"].median())', {"X"}, {"X"}, {"X"}),
        ("X.loc[X.a > 1, 'b'] = 0", {"X"}, {"X"}, {"X"}),
        ("del X['a']", {"X"}, {"X"}, {"X"}),
        ("df.update(other)", {"df"}, {"df", "other"}, {"df"}),
        ("rows.append(1)", {"rows"}, {"rows"}, {"rows"}),
        ("model.named_steps['svc'].set_params(C=2)", {"model"}, {"model"}, {"model"}),
        ("X = load()\nX['a'] = 1", {"X"}, {"load"}, set()),
        ("config.value += 1", {"config"}, {"config"}, {"config"}),
    ],
)
def test_cells_are_read_as_the_python_ipython_runs(
    source: str, defines: set[str], reads: set[str], changes: set[str]
) -> None:
    use = analyse([source])
    assert set(use.defines) == defines
    assert set(use.reads) == reads
    assert set(use.changes) == changes
    assert use.opaque == ()


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("%run helpers.py", "%run"),
        ("%store -r table", "%store"),
        ("%%sql\nselect 1", "%%sql"),
        ("exec(open('x.py').read())", "exec()"),
        ("globals()['a'] = 1", "globals()"),
        ("from pylab import *", "from pylab import *"),
    ],
)
def test_code_the_analysis_cannot_read_is_named(source: str, why: str) -> None:
    assert analyse([source]).opaque == (why,)


def _pipeline(cells: list[dict]):  # type: ignore[no-untyped-def]
    return pipeline_from_notebook(parse_notebook(notebook_json(cells), "nb.ipynb"))


def test_a_later_stage_that_changes_a_frame_in_place_owns_the_new_version() -> None:
    pipeline = _pipeline(
        [
            code_cell("import pandas as pd"),
            code_cell("X = pd.DataFrame({'a': [1, None]})", ("mlnb:data",)),
            code_cell("X.dropna(inplace=True)", ("mlnb:data:clean",)),
            code_cell("n = len(X)", ("mlnb:train",)),
        ]
    )
    clean, train = pipeline.stage("clean"), pipeline.stage("train")
    assert clean.changes == ("X",)
    assert train.depends_on == ("clean",)
    observed = pipeline.with_changes({"clean": ["X"]})
    assert observed == pipeline  # nothing new: the analysis saw it already


def test_a_change_seen_at_run_time_moves_the_dependency() -> None:
    pipeline = _pipeline(
        [
            code_cell("def trim(df):\n    df.drop(df.index[:1], inplace=True)"),
            code_cell("import pandas as pd\nX = pd.DataFrame({'a': [1, 2]})", ("mlnb:data",)),
            code_cell("trim(X)", ("mlnb:data:clean",)),
            code_cell("n = len(X)", ("mlnb:train",)),
        ]
    )
    assert pipeline.stage("train").depends_on == ("data",)
    seen = pipeline.with_changes({"clean": ["X"]})
    assert seen.stage("train").depends_on == ("clean",)
    assert seen.stage("clean").changes == ("X",)


def test_an_opaque_stage_reads_everything_before_it_and_says_so() -> None:
    pipeline = _pipeline(
        [
            code_cell("a = 1\nb = 2", ("mlnb:data",)),
            code_cell("%run make_more.py", ("mlnb:data:more",)),
            code_cell("total = a + extra", ("mlnb:train",)),
        ]
    )
    more = pipeline.stage("more")
    assert more.uses == ("a", "b") and more.depends_on == ("data",)
    assert "extra" in more.defines  # nothing else defines it: it must come from %run
    assert pipeline.stage("train").depends_on == ("data", "more")
    assert pipeline.notices == (
        "stage 'more' uses %run, which mlnb cannot read: it is treated as reading every "
        "name defined before it",
    )


def test_a_function_defined_in_one_stage_brings_its_globals_into_the_stage_calling_it() -> None:
    pipeline = _pipeline(
        [
            code_cell("rate = 0.5\ndef scale(v):\n    return v * rate", ("mlnb:data",)),
            code_cell("y = scale(3)", ("mlnb:train",)),
        ]
    )
    assert set(pipeline.stage("train").loads) == {"rate", "scale"}


def test_kale_steps_depend_on_prev_tags_and_on_data_flow() -> None:
    pipeline = _pipeline(
        [
            code_cell("import numpy as np", ("imports",)),
            code_cell("raw = np.arange(10)", ("step:load",)),
            code_cell("other = 1", ("step:side",)),
            code_cell("clean = raw[raw > 2]", ("step:prepare", "prev:side")),
        ]
    )
    prepare = pipeline.stage("prepare")
    assert prepare.declared_deps == ("side",)
    assert prepare.inferred_deps == ("load",)
    assert prepare.depends_on == ("load", "side")


def test_the_variable_a_model_is_fitted_on_is_read_from_the_code() -> None:
    from mlnb.analysis import fit_arguments

    found = fit_arguments(["%time model.fit(X_train, y_train)", "search.fit(X, y)\nmodel.fit(Z)"])
    assert found == {"model": ["X_train", "Z"], "search": ["X"]}


def test_a_model_without_feature_names_finds_its_training_frame_through_fit() -> None:
    import pandas as pd

    from mlnb.run.profile import find_training_data

    class Opaque:  # a user's pipeline: no feature_names_in_, no n_features_in_
        def fit(self, X, y=None):  # type: ignore[no-untyped-def]
            return self

    frames = {"X_train": pd.DataFrame({"a": [1, 2]}), "X_test": pd.DataFrame({"a": [3]})}
    assert find_training_data(Opaque(), frames) is None
    found = find_training_data(Opaque(), frames, ["X_train"])
    assert found is not None and found[0] == "X_train"


@pytest.mark.parametrize(
    "source",
    [
        "x = " + "[" * 5000 + "]" * 5000,
        "x = " + "1+" * 200_000 + "1",
        "%time " + "(" * 300 + ")" * 300,
    ],
    ids=["deep-brackets", "long-expression", "deep-magic"],
)
def test_hostile_cells_get_a_syntax_error_naming_the_cell_not_a_traceback(source: str) -> None:
    from mlnb.errors import CellSyntaxError

    with pytest.raises(CellSyntaxError) as caught:
        _pipeline([code_cell(source, ("mlnb:data",))])
    assert str(caught.value).startswith("nb.ipynb: cell 1 (")  # cells[0], as people count
    assert "is not valid Python" in caught.value.message
    assert "None" not in caught.value.message
