"""Kale-tagged notebooks load as stages named after their steps."""

from __future__ import annotations

import json

import pytest

from mlnb.errors import MixedTagsError, StageOptionsError
from mlnb.pipeline import load_pipeline

from .conftest import NOTEBOOKS, code_cell, mlnb


def test_kale_notebook_loads_steps_prev_and_parameters() -> None:
    pipeline = load_pipeline(NOTEBOOKS / "kale_pipeline.ipynb")
    assert pipeline.flavour == "kale"
    assert [(s.name, s.kind) for s in pipeline.stages] == [
        ("load_data", "step"),
        ("prepare", "step"),
        ("train", "step"),
    ]
    load, prepare, train = pipeline.stages
    assert load.cells == (4, 5)  # the untagged cell joins the step above
    assert prepare.depends_on == ("load_data",)
    assert train.depends_on == ("prepare",)
    assert pipeline.setup_cells == (1, 2)  # imports and functions
    assert pipeline.parameter_defaults == {"n_rows": 200, "seed": 7}
    assert pipeline.skipped_cells == (7,)
    assert pipeline.metric_names == ("accuracy",)


def test_kale_step_cells_spread_over_the_notebook_join(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("a = 1", ("step:one",)),
            code_cell("b = a + 1", ("step:two", "prev:one")),
            code_cell("c = a * 3", ("step:one",)),
            code_cell("d = b + c", ("block:three", "prev:two", "prev:one")),
        ]
    )
    one, _two, three = load_pipeline(path).stages
    assert one.cells == (0, 2)
    assert three.name == "three" and set(three.depends_on) == {"two", "one"}


# --- mlnb marks in a Kale notebook: refused, naming a cell of each kind and both fixes ---


@pytest.mark.parametrize(
    ("mlnb_cell", "shown"),
    [
        (code_cell("clf = fit(X)", ("mlnb:train",)), "mlnb:train"),
        (code_cell("%%mlnb train --model clf\nclf = fit(X)"), "%%mlnb train --model clf"),
    ],
    ids=["tag", "magic-line"],
)
def test_mlnb_marks_in_a_kale_notebook_are_refused(write_notebook, mlnb_cell, shown) -> None:
    path = write_notebook(
        [
            code_cell("!pip install something", ("skip",)),
            code_cell("X = [1, 2]", ("step:load",)),
            code_cell("def fit(x):\n    return sum(x)"),
            mlnb_cell,
        ]
    )
    with pytest.raises(MixedTagsError) as caught:
        load_pipeline(path)
    error = caught.value
    assert error.cell is not None and error.cell.index == 3  # the cell to change
    text = str(error)
    assert "cell 2 ('X = [1, 2]'): step:load" in text  # cells[1]: people count from 1
    assert f"cell 4 ({shown.splitlines()[0]!r}" in text or f": {shown}" in text
    assert '"mlnb": {"version": 1, "model": "clf"' in text  # how to name the model the Kale way
    assert "mlnb:data, mlnb:train and mlnb:serve" in text  # or switch to mlnb's tags


def test_mlnb_skip_in_a_kale_notebook_skips(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("a = 1", ("step:one",)),
            code_cell("!pip install x", ("mlnb:skip",)),
            code_cell("b = a", ("step:two", "prev:one")),
        ]
    )
    pipeline = load_pipeline(path)
    assert pipeline.flavour == "kale" and pipeline.skipped_cells == (1,)


def test_the_cli_refuses_a_mixed_notebook_without_a_traceback(write_notebook) -> None:
    path = write_notebook(
        [code_cell("a = 1", ("step:one",)), code_cell("b = a", ("mlnb:train", "prev:one"))]
    )
    result = mlnb("inspect", str(path), "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["error"] == "mixed-tags"
    assert "Fix: to keep the Kale steps, remove the tag mlnb:train from cell 2" in result.stderr


# --- a Kale step names its model with cell.metadata.mlnb ---


def test_a_kale_step_names_its_model_in_cell_metadata(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("X = [1, 2]", ("step:load",)),
            code_cell("clf = sum(X)", ("step:train", "prev:load"), mlnb={"version": 1}),
            code_cell("accuracy = 1.0", mlnb={"model": "clf", "metrics": ["accuracy"]}),
        ]
    )
    load, train = load_pipeline(path).stages
    assert load.options.model is None
    assert train.options.model == "clf" and train.options.metrics == ("accuracy",)
    assert train.cells == (1, 2)


def test_two_cells_of_a_step_naming_different_models_is_an_error(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("a = 1\nb = 2", ("step:train",), mlnb={"version": 1, "model": "a"}),
            code_cell("c = 3", mlnb={"version": 1, "model": "b"}),
        ]
    )
    with pytest.raises(StageOptionsError) as caught:
        load_pipeline(path)
    assert caught.value.cell is not None and caught.value.cell.index == 1
    assert "step 'train' gets 'model' twice: 'a' from cell 1" in str(caught.value)


def test_step_options_on_a_setup_cell_or_bad_options_are_errors(write_notebook) -> None:
    imports = code_cell("import math", ("imports",), mlnb={"model": "m"})
    setup = write_notebook([imports, code_cell("m = 1", ("step:a",))])
    with pytest.raises(StageOptionsError, match="belongs to no step"):
        load_pipeline(setup)
    bad = write_notebook([code_cell("m = 1", ("step:a",), mlnb={"model": "not a name"})], "b.ipynb")
    with pytest.raises(StageOptionsError, match="field 'model' must be a variable name"):
        load_pipeline(bad)


# --- inspect shows the prev: dependencies and the inferred ones ---


def _kale_without_complete_prev(write_notebook):
    return write_notebook(
        [
            code_cell("rows = [3, 1, 2]", ("step:load",)),
            code_cell("clean = sorted(rows)", ("step:prepare",)),  # no prev: at all
            code_cell("clf = sum(clean) + len(rows)", ("step:train", "prev:prepare")),
        ]
    )


def test_inspect_table_shows_prev_and_inferred_dependencies(write_notebook) -> None:
    result = mlnb("inspect", str(_kale_without_complete_prev(write_notebook)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = "#  stage  kind  cells  depends on  prev:  inferred  model"
    assert lines[1].split() == header.split()
    rows = {line.split()[1]: line for line in lines[2:5]}
    assert rows["prepare"].split()[4:6] == ["load", "-"]  # inferred only: no prev: tag
    assert rows["prepare"].split()[6] == "load"
    assert rows["train"].split()[-1] == "-"


def test_inspect_json_has_declared_and_inferred_dependencies(write_notebook) -> None:
    result = mlnb("inspect", "--json", str(_kale_without_complete_prev(write_notebook)))
    assert result.returncode == 0, result.stderr
    stages = {s["name"]: s for s in json.loads(result.stdout)["stages"]}
    assert stages["prepare"]["declared_depends_on"] == []
    assert stages["prepare"]["inferred_depends_on"] == ["load"]
    assert stages["train"]["declared_depends_on"] == ["prepare"]
    assert set(stages["train"]["inferred_depends_on"]) == {"load", "prepare"}
    for stage in stages.values():  # a run waits for both kinds
        assert set(stage["declared_depends_on"]) | set(stage["inferred_depends_on"]) == set(
            stage["depends_on"]
        )
