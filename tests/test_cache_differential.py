"""The cache's one promise, stated as a property: a cached run equals a fresh one.

For each notebook of a corpus and every single-cell edit of it (each numeric literal of each
stage cell, changed), the edited notebook is run twice: reusing the store that every earlier
edit of the same notebook ran in, and with ``--no-cache`` in a store of its own. The two must
agree on status, the failing stage, every metric and every saved data value. The edits are
not picked to pass: they are all the literals there are, in the order they stand.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlnb.run.runner import run_notebook

from .conftest import NOTEBOOKS

CORPUS = sorted((NOTEBOOKS / "cache").glob("*.ipynb"))
_MAX_EDITS = int(os.environ.get("MLNB_DIFFERENTIAL_EDITS", "12"))


def literal_edits(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(what was edited, the edited notebook)`` for each numeric literal of a stage cell."""
    started = False
    for index, cell in enumerate(document["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        source = "".join(cell["source"])
        started = started or any(t.startswith("mlnb:") for t in tags)
        if cell["cell_type"] != "code" or not started or "parameters" in tags:
            continue
        lines = source.splitlines(keepends=True)
        body_start = 1 if source.startswith("%") else 0  # a magic first line stays as it is
        try:
            tree = ast.parse("".join(lines[body_start:]))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
                continue
            row = body_start + node.lineno - 1
            line = lines[row]
            new = repr(node.value + 1 if isinstance(node.value, int) else node.value + 0.5)
            edited_line = line[: node.col_offset] + new + line[node.end_col_offset :]
            edited = json.loads(json.dumps(document))
            edited["cells"][index]["source"] = "".join(
                [*lines[:row], edited_line, *lines[row + 1 :]]
            )
            yield f"cell {index} line {row + 1}: {node.value!r} -> {new}", edited


def outcome(record: dict[str, Any], store: Path) -> dict[str, Any]:
    """What a run produced, independent of whether its stages ran or were reused."""
    values = {}
    for stage in record["stages"]:
        for name, ref in (stage.get("outputs") or {}).items():
            if ref.get("format") in ("parquet", "parquet-series", "npy"):
                values[f"{stage['name']}.{name}"] = ref["sha256"]
    error = record.get("error") or {}
    return {
        "status": record["status"],
        "failed_stage": error.get("stage"),
        "error": error.get("ename"),
        "metrics": {k: round(v, 9) for k, v in sorted(record["metrics"].items())},
        "values": values,
    }


@pytest.mark.slow
@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_a_cached_run_after_any_single_cell_edit_equals_a_fresh_run(
    source: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    shutil.copytree(source.parent, folder)
    notebook = folder / source.name
    original = json.loads(notebook.read_text())
    cached_store = tmp_path / "cached-store"
    run_notebook(notebook, store=cached_store)

    edits = list(literal_edits(original))[:_MAX_EDITS]
    assert edits, f"{source.name} has no numeric literal to edit"
    for number, (what, edited) in enumerate(edits):
        notebook.write_text(json.dumps(edited))
        cached = run_notebook(notebook, store=cached_store)
        fresh_store = tmp_path / f"fresh-{number}"
        fresh = run_notebook(notebook, store=fresh_store, no_cache=True)
        assert outcome(cached, cached_store) == outcome(fresh, fresh_store), (
            f"{source.name}, {what}: the cached run differs from a --no-cache run\n"
            f"stages: {[(s['name'], s['status'], s['reason']) for s in cached['stages']]}"
        )


@pytest.mark.slow
def test_a_change_in_place_no_reading_foresaw_is_corrected_in_the_same_command(
    tmp_path: Path,
) -> None:
    """A helper function drops rows of its argument: only the run can see it. The stage after
    it was reused from before the edit, so the run corrects itself and says why."""
    from .conftest import code_cell, mlnb, notebook_json

    def write(prepare: str) -> Path:
        cells = [
            code_cell("import pandas as pd\ndef clean(df):\n    df.dropna(inplace=True)"),
            code_cell("X = pd.DataFrame({'a': [1.0, None, 3.0, 4.0]})", ("mlnb:data",)),
            code_cell(prepare, ("mlnb:data:prepare",)),
            code_cell("n_rows = len(X)", ("mlnb:train",), {"version": 1, "metrics": ["n_rows"]}),
        ]
        path = tmp_path / "notebook.ipynb"
        path.write_text(json.dumps(notebook_json(cells)))
        return path

    store = str(tmp_path / "store")
    assert mlnb("run", str(write("k = 1")), "--store", store).returncode == 0
    result = mlnb("run", str(write("clean(X)\nk = 1")), "--store", store)
    assert result.returncode == 0, result.stderr
    assert "note: stage 'prepare' changed 'X' in place" in result.stderr
    assert "metrics: n_rows=3" in result.stdout + result.stderr
    listed = json.loads(mlnb("runs", "--store", store, "--json").stdout)
    newest, corrected = listed[0], listed[1]
    assert newest["metrics"] == {"n_rows": 3.0}
    first = json.loads(mlnb("runs", "show", corrected["run_id"], "--store", store, "--json").stdout)
    assert first["superseded_by"] == newest["run_id"]
    # The next plan knows the change: nothing runs, and the result stays right.
    again = mlnb("run", str(write("clean(X)\nk = 1")), "--store", store, "--json")
    record = json.loads(again.stdout)
    assert [s["status"] for s in record["stages"]] == ["cached"] * 3
    assert record["metrics"] == {"n_rows": 3.0}
