"""The notebook contract: a tag and a ``%%mlnb`` line mean the same stage."""

from __future__ import annotations

import pytest

from mlnb.errors import StageOptionsError, TwoStageTagsError, UnknownMagicKindError
from mlnb.pipeline import load_pipeline
from mlnb.tags import StageMark, StageOptions, parse_magic_line, read_cell

from .conftest import code_cell

SETUP = code_cell("import math")
DATA = "values = [math.sqrt(i) for i in range(10)]"
TRAIN = "model = sum(values) / len(values)\nmetrics = {'mean': model}"


@pytest.mark.parametrize(
    ("tag_cell", "magic_cell"),
    [
        (code_cell(DATA, ("mlnb:data",)), code_cell(f"%%mlnb data\n{DATA}")),
        (
            code_cell(TRAIN, ("mlnb:train:fit",), {"version": 1, "model": "model"}),
            code_cell(f"%%mlnb train --name fit --model model\n{TRAIN}"),
        ),
        (
            code_cell(TRAIN, ("mlnb:train",), {"metrics": ["mean", "max"], "outputs": ["model"]}),
            code_cell(f"%%mlnb train --metrics mean,max --outputs model\n{TRAIN}"),
        ),
    ],
)
def test_tag_and_magic_parse_to_the_same_stage(write_notebook, tag_cell, magic_cell) -> None:
    data = code_cell(DATA, ("mlnb:data",))
    cells_tag = [SETUP, data, tag_cell] if tag_cell["source"] != DATA else [SETUP, tag_cell]
    cells_magic = [SETUP, data, magic_cell] if tag_cell["source"] != DATA else [SETUP, magic_cell]
    by_tag = load_pipeline(write_notebook(cells_tag, "tag.ipynb"))
    by_magic = load_pipeline(write_notebook(cells_magic, "magic.ipynb"))
    assert [s.to_json() for s in by_tag.stages] == [s.to_json() for s in by_magic.stages]
    assert by_tag.stages[-1].sources == by_magic.stages[-1].sources  # the magic line is not code


def test_magic_line_round_trips() -> None:
    mark = StageMark("train", "fit", StageOptions("clf", ("accuracy", "f1"), ("clf",)))
    assert (
        mark.magic_line == "%%mlnb train --name fit --model clf --metrics accuracy,f1 --outputs clf"
    )
    assert parse_magic_line(mark.magic_line) == mark
    assert mark.tag == "mlnb:train:fit"
    assert StageMark("data", "data").tag == "mlnb:data"


def test_metadata_is_the_same_object_the_magic_implies() -> None:
    mark = parse_magic_line("%%mlnb train --model clf --metrics auc")
    assert mark.options.to_metadata() == {"version": 1, "model": "clf", "metrics": ["auc"]}
    role = read_cell(0, "x = 1", ["mlnb:train"], {"mlnb": mark.options.to_metadata()})
    assert role.mark == mark


def test_a_cell_with_both_forms_that_agree_is_one_stage() -> None:
    role = read_cell(3, "%%mlnb train --model clf\nclf = 1", ["mlnb:train"], {})
    assert role.role == "stage" and role.mark is not None
    assert role.mark.options.model == "clf"
    assert role.body == "clf = 1"


def test_forms_that_disagree_are_an_error_naming_the_cell() -> None:
    with pytest.raises(TwoStageTagsError) as caught:
        read_cell(3, "%%mlnb train\nclf = 1", ["mlnb:data"], {}, "nb.ipynb")
    assert caught.value.cell is not None and caught.value.cell.index == 3
    with pytest.raises(StageOptionsError, match="disagree on 'model'"):
        read_cell(3, "%%mlnb train --model a\na = 1", [], {"mlnb": {"model": "b"}})


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("%%mlnb", StageOptionsError, "the following arguments are required: kind"),
        ("%%mlnb fit", UnknownMagicKindError, "unknown stage kind 'fit'"),
        ("%%mlnb train --modle x", StageOptionsError, "unrecognized arguments"),
        ("%%mlnb train --name 'two words'", StageOptionsError, "not a valid name"),
    ],
)
def test_bad_magic_lines(line: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment) as caught:
        parse_magic_line(line)
    assert "Fix:" in str(caught.value)


def test_skip_and_parameters_cells(write_notebook) -> None:
    path = write_notebook(
        [
            SETUP,
            code_cell("limit = 10", ("parameters",)),
            code_cell(DATA, ("mlnb:data",)),
            code_cell("print(values)", ("mlnb:skip",)),
            code_cell("limit = 99", ("injected-parameters",)),
            code_cell("total = sum(values[:limit])"),
        ]
    )
    pipeline = load_pipeline(path)
    assert pipeline.parameters_cell == 1
    assert pipeline.parameter_defaults == {"limit": 10}
    assert pipeline.skipped_cells == (3, 4)
    assert pipeline.stages[0].cells == (2, 5)
    assert pipeline.stages[0].uses == ("limit",)
