"""One parse and one read of the index per command (issue 19): each cell's source is parsed
once however many times the keys, the lineage and the kernel's notebook read it, and planning
a run reads the store's index in one transaction whose SELECTs do not grow with the stages."""

from __future__ import annotations

import collections
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlnb import analysis
from mlnb.pipeline import load_pipeline
from mlnb.run.params import run_parameters
from mlnb.run.plan import make_plan
from mlnb.store import Store

from .conftest import EXAMPLES, NOTEBOOKS, code_cell, mlnb, notebook_json

# 3 stages; 5 stages that change values in place; 6 stages that read a file and a module.
CORPUS = ["breast_cancer", "passengers", "files"]
FILES_NOTEBOOK = [
    code_cell("import helpers"),
    code_cell("k = 2", ("parameters",)),
    code_cell("rows = open('rows.txt').read().split()", ("mlnb:data:load",)),
    code_cell("n = len(rows)", ("mlnb:data:count",)),
    code_cell("scaled = [helpers.double(int(r)) * k for r in rows]", ("mlnb:data:scale",)),
    code_cell(
        "model = sum(scaled)\nmetrics = {'total': model}",
        ("mlnb:train:fit",),
        {"version": 1, "model": "model", "metrics": ["total"]},
    ),
    code_cell("extra = model + n", ("mlnb:data:extra",)),
    code_cell("last = extra * 2", ("mlnb:data:last",)),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each notebook of the corpus in its own folder, run once (a real kernel)."""
    found = {}
    for name in CORPUS:
        folder = tmp_path_factory.mktemp(name)
        if name == "files":
            notebook = folder / "files.ipynb"
            notebook.write_text(json.dumps(notebook_json(FILES_NOTEBOOK)))
            (folder / "rows.txt").write_text("1 2 3\n")
            (folder / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
        else:
            source = EXAMPLES / f"{name}.ipynb"
            source = source if source.exists() else NOTEBOOKS / "cache" / f"{name}.ipynb"
            notebook = folder / source.name
            shutil.copy(source, notebook)
        done = mlnb("run", str(notebook))
        assert done.returncode == 0, done.stderr
        found[name] = notebook
    return found


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Counts calls of the one parse function, wherever a module holds it by name."""
    counts: collections.Counter[str] = collections.Counter()
    real = analysis.parse_cell

    def counting(source: str) -> Any:
        counts[source] += 1
        return real(source)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("mlnb") and (
            getattr(module, "parse_cell", None) is real
        ):
            monkeypatch.setattr(module, "parse_cell", counting)
    return counts


@pytest.fixture
def statements() -> Iterator[tuple[list[str], Any]]:
    """(the SQL statements run on a store's connection, a function that opens a store and
    starts tracing it)."""
    seen: list[str] = []
    stores: list[Store] = []

    def traced(notebook: Path) -> Store:
        store = Store.for_notebook(notebook)
        conn = store._connect(create=False)  # opening checks the index: not planning
        assert conn is not None
        conn.set_trace_callback(seen.append)
        stores.append(store)
        return store

    yield seen, traced
    for store in stores:
        store.close()


def _plan(notebook: Path, store: Store, **given: str) -> Any:
    pipeline = load_pipeline(notebook)
    values = run_parameters(pipeline, list(given.items()))
    return make_plan(pipeline, values.values, values.given, store)


def _shape(seen: list[str]) -> list[str]:
    return [s.split()[0] for s in seen]


@pytest.mark.parametrize("name", CORPUS)
def test_one_run_parses_each_cell_once(name: str, ran: dict[str, Path], parses) -> None:
    from mlnb.run.assemble import assemble
    from mlnb.run.runner import _Lineage, _read_document, run_notebook

    notebook = ran[name]
    record = run_notebook(notebook)  # nothing changed: in process, no kernel
    assert record["status"] == "succeeded"
    assert {s["status"] for s in record["stages"]} == {"cached"}
    counted = dict(parses)
    pipeline = load_pipeline(notebook)
    sources = [*pipeline.setup_sources, *(c for s in pipeline.stages for c in s.sources)]
    assert len(pipeline.parsed) == len(sources) >= 4
    assert counted == {source: 1 for source in sources}

    # A run that executes reads the cells again for the kernel's notebook and the lineage,
    # and a second plan (after a change seen in place) reads them too: from the one parse.
    parses.clear()
    with Store.for_notebook(notebook) as store:
        for _ in range(2):
            plan = make_plan(pipeline, pipeline.parameter_defaults, {}, store, no_cache=True)
    assemble(_read_document(plan), plan, {"kernel": "python3"})
    assert _Lineage(plan).modules
    assert not parses, parses


@pytest.mark.parametrize("name", CORPUS)
def test_a_no_change_plan_reads_the_index_in_one_transaction(name, ran, statements) -> None:
    seen, traced = statements
    plan = _plan(ran[name], traced(ran[name]))
    assert plan.all_cached
    # The notebook's entries with the fingerprints of the files its code names, then the
    # fingerprints of what the reused entries read and saved: the same for 3, 5 or 6 stages.
    assert _shape(seen) == ["BEGIN", "SELECT", "SELECT", "COMMIT"], seen
    assert "stage_cache WHERE notebook" in seen[1]


def test_a_changed_parameter_adds_one_lookup(ran, statements) -> None:
    seen, traced = statements
    notebook = ran["breast_cancer"]
    plan = _plan(notebook, traced(notebook), C="0.25")
    assert [s.action for s in plan.stages] == ["cached", "run", "run"]
    assert plan.stage("fit").reason == "parameter C changed (1.0 -> 0.25)"
    # The new keys are not among the notebook's entries: one SELECT looks them up.
    assert _shape(seen) == ["BEGIN", "SELECT", "SELECT", "SELECT", "COMMIT"], seen
    assert "WHERE cache_key IN" in seen[2]


def test_a_copy_of_the_notebook_reuses_the_originals_results(ran, statements) -> None:
    """Keys name no notebook: the lookup by key reaches another notebook's entries, as the
    cache always has."""
    seen, traced = statements
    original = ran["files"]
    copy = original.with_name("copy_of_files.ipynb")
    shutil.copy(original, copy)
    plan = _plan(copy, traced(copy))
    assert plan.all_cached
    assert _shape(seen) == ["BEGIN", "SELECT", "SELECT", "SELECT", "COMMIT"], seen


def test_the_plan_trees_are_never_changed(ran) -> None:
    """The parse is shared by the whole command: planning twice leaves every tree as the
    notebook's reading made it."""
    import ast

    pipeline = load_pipeline(ran["passengers"])
    before = {i: (ast.dump(p.ipython), ast.dump(p.tree)) for i, p in pipeline.parsed.items()}
    store = Store.for_notebook(ran["passengers"])
    for _ in range(2):
        make_plan(pipeline, pipeline.parameter_defaults, {}, store)
    store.close()
    after = {i: (ast.dump(p.ipython), ast.dump(p.tree)) for i, p in pipeline.parsed.items()}
    assert after == before
