"""Kale-tagged notebooks load as stages named after their steps."""

from __future__ import annotations

from mlnb.pipeline import load_pipeline

from .conftest import NOTEBOOKS, code_cell


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
    assert three.name == "three" and three.depends_on == ("two", "one")


def test_mlnb_tags_win_over_kale_tags(write_notebook) -> None:
    path = write_notebook([code_cell("a = 1", ("mlnb:data", "step:one"))])
    pipeline = load_pipeline(path)
    assert pipeline.flavour == "mlnb"
    assert pipeline.stages[0].kind == "data"
