"""A build's preparation (issue 19): each notebook cell is parsed once, and the files it
renders come from one frozen :class:`~mlnb.bento.plan.BentoPlan`.

The build runs in process up to BentoML: the model store and ``bentoml build`` are stubbed,
so what is counted is the build's own reading of the notebook (the precheck of the notebook
as it is now, the run's pipeline, the serve code, the credential scan, the local modules).
Before, ``mlnb build`` parsed each stage and setup cell four times (two pipelines and two
local-module scans), and the serve-code extraction and the credential scans parsed each again.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb import analysis
from mlnb.bento import bentoml_store, builder
from mlnb.bento.context import service_context, service_spec
from mlnb.bento.plan import BentoPlan
from mlnb.pipeline import load_pipeline

from .conftest import code_cell, mlnb, notebook_json

# pathspec 0.12+ deprecates the "gitwildmatch" patterns the bentofile check reads (as BentoML
# does); a real build runs in a child process, where the warning is no error.
pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")

CELLS = [
    code_cell(
        "import helpers\nimport pandas as pd\nfrom sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression"
    ),
    code_cell("C = 1.0", ("parameters",)),
    code_cell(
        "frame = load_iris(as_frame=True)\nX, y = frame.data, frame.target\n"
        "X_train, X_test, y_train, y_test = X[::2], X[1::2], y[::2], y[1::2]",
        ("mlnb:data:load",),
    ),
    code_cell(
        "model = LogisticRegression(C=C, max_iter=500).fit(X_train, y_train)\n"
        "accuracy = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
        {"version": 1, "model": "model", "metrics": ["accuracy"]},
    ),
    code_cell(
        "# one label per row\ndef predict(frame):\n    return helpers.labels(model.predict(frame))"
        "\n\npredict(X_test.head())",
        ("mlnb:serve",),
    ),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notebook with a local module and a serve stage, run once (a real kernel)."""
    folder = tmp_path_factory.mktemp("plan")
    notebook = folder / "plan.ipynb"
    notebook.write_text(json.dumps(notebook_json(CELLS)))
    (folder / "helpers.py").write_text("def labels(values):\n    return [int(v) for v in values]\n")
    done = mlnb("run", str(notebook))
    assert done.returncode == 0, done.stderr
    return notebook


@pytest.fixture
def prepared(ran: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Counters of every parse while ``build`` is called, and what it rendered from."""
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    monkeypatch.setattr(bentoml_store, "store_model", lambda *a, **k: True)
    monkeypatch.setattr(bentoml_store, "build_bento", lambda *a, **k: True)
    cells: collections.Counter[str] = collections.Counter()  # parse_cell, per source
    direct: collections.Counter[str] = collections.Counter()  # ast.parse of a cell's text
    real_cell, real_parse = analysis.parse_cell, ast.parse
    sources = {cell["source"] for cell in CELLS}
    inside = [0]

    def parse_cell(source: str) -> Any:
        cells[source] += 1
        inside[0] += 1
        try:
            return real_cell(source)
        finally:
            inside[0] -= 1

    def parse(source: Any, *args: Any, **kwargs: Any) -> Any:
        if not inside[0] and isinstance(source, str):
            text = source.rstrip("\n")
            for cell in sources:
                if text and text in (cell, analysis.python_source(cell)):
                    direct[cell] += 1
        return real_parse(source, *args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("mlnb") and (
            getattr(module, "parse_cell", None) is real_cell
        ):
            monkeypatch.setattr(module, "parse_cell", parse_cell)
    monkeypatch.setattr(ast, "parse", parse)
    plans: list[BentoPlan] = []
    real_render = builder._render

    def render(plan: BentoPlan, *args: Any) -> dict[str, str]:
        plans.append(plan)
        return real_render(plan, *args)

    monkeypatch.setattr(builder, "_render", render)
    result = builder.build(str(ran))
    return {"result": result, "cells": dict(cells), "direct": dict(direct), "plans": plans}


def test_a_build_parses_each_cell_once(ran: Path, prepared: dict[str, Any]) -> None:
    pipeline = load_pipeline(ran)
    held = {p.source for p in pipeline.parsed.values()}
    assert len(held) == 4  # the setup cell and the three stages' cells
    assert prepared["cells"] == {source: 1 for source in held}
    # The serve code and the credential scan read the pipeline's parse. The parameters cell
    # has no tree in the pipeline: its reading parses it once, and the credential scan once
    # for the notebook as it is now and once for the run's cells.
    assert prepared["direct"] == {CELLS[1]["source"]: 3}
    assert prepared["result"].format in ("onnx", "native")


def test_the_build_renders_from_one_frozen_plan(prepared: dict[str, Any]) -> None:
    (plan,) = prepared["plans"]
    result = prepared["result"]
    assert plan.tag == result.bento and plan.model_tag == result.model
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    written = json.loads((result.build_dir / "mlnb_service.json").read_text())
    assert written == json.loads(json.dumps(service_spec(plan)))
    assert written["monitor_dir"] == plan.monitor_dir == f"mlnb-monitoring/plan/{plan.version}"
    assert written["classes"] == [0, 1, 2] and plan.local_modules == ("helpers",)
    context = service_context(plan)
    assert context["bento_version"] == plan.version and context["run_id"] == plan.run_id
    assert context["functions"] == {"predict": True, "preprocess": False, "postprocess": False}
    assert "helpers.labels" in (result.build_dir / "mlnb_serve_code.py").read_text()


def test_the_build_leaves_the_shared_trees_as_they_were(ran: Path) -> None:
    """The serve code and the scan read the pipeline's trees: they never change them."""
    pipeline = load_pipeline(ran)
    before = {i: (ast.dump(p.ipython), ast.dump(p.tree)) for i, p in pipeline.parsed.items()}
    builder._precheck(pipeline, allow_side_effects=False)
    after = {i: (ast.dump(p.ipython), ast.dump(p.tree)) for i, p in pipeline.parsed.items()}
    assert after == before
