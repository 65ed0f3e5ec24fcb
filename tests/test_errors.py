"""Every validation error, from a folder of broken notebooks: each names the cell and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlnb import errors
from mlnb.errors import MlnbError
from mlnb.pipeline import load_pipeline

from .conftest import NOTEBOOKS

BROKEN = sorted((NOTEBOOKS / "broken").glob("*.ipynb"))
ERROR_CODES = {
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, MlnbError) and cls is not MlnbError
}


def _expected_cell(path: Path) -> int | None:
    try:
        return json.loads(path.read_text())["metadata"]["mlnb_test"]["cell"]
    except (ValueError, KeyError):
        return None


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_notebook_gives_its_error(path: Path) -> None:
    with pytest.raises(MlnbError) as caught:
        load_pipeline(path)
    error = caught.value
    assert error.code == path.stem
    assert error.notebook == str(path)
    assert "Fix:" in str(error) and error.fix
    expected_cell = _expected_cell(path)
    if expected_cell is not None:
        assert error.cell is not None and error.cell.index == expected_cell
        # People read 1-based numbers, as JupyterLab's status bar counts (markdown included)
        assert f"cell {expected_cell + 1} (" in str(error)
    payload = error.to_json()
    assert payload["error"] == path.stem and payload["message"] == error.message
    if expected_cell is not None:  # JSON keeps the 0-based index, under both names for now
        assert payload["cell_index"] == payload["cell"] == expected_cell


def test_every_notebook_error_has_a_broken_notebook() -> None:
    covered = {p.stem for p in BROKEN}
    # Errors raised by later commands (runs, builds) are tested with those commands.
    notebook_errors = {
        "notebook-unreadable",
        "notebook-format",
        "unknown-tag",
        "unknown-magic-kind",
        "bad-stage-options",
        "two-stage-tags",
        "duplicate-stage",
        "undefined-name",
        "serve-without-train",
        "stage-cycle",
        "unknown-stage",
        "syntax-error",
        "mixed-tags",
        "parameters-syntax-error",
    }
    assert notebook_errors <= ERROR_CODES
    assert notebook_errors <= covered


def test_missing_file_and_not_a_notebook(tmp_path: Path) -> None:
    with pytest.raises(errors.NotebookReadError, match="no such file"):
        load_pipeline(tmp_path / "absent.ipynb")
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    with pytest.raises(errors.NotebookReadError, match="no 'nbformat' field"):
        load_pipeline(tmp_path / "list.ipynb")


def test_used_before_defined_names_the_later_stage(write_notebook) -> None:
    from .conftest import code_cell

    path = write_notebook(
        [
            code_cell("model = weights * 2", ("mlnb:train",)),
            code_cell("weights = 3", ("mlnb:data",)),
        ]
    )
    with pytest.raises(errors.UndefinedNameError) as caught:
        load_pipeline(path)
    assert "before any stage defines it" in caught.value.message
    assert "stage 'data' defines 'weights' later" in str(caught.value.fix)
