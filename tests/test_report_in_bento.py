"""``mlnb build`` puts the report of the run it builds from into the Bento."""

from __future__ import annotations

from pathlib import Path

import pytest

from .build_support import project

pytestmark = pytest.mark.slow


def test_the_bento_carries_its_runs_report() -> None:
    the_project = project()
    built = the_project.build("breast_cancer.ipynb")
    name, version = built["bento"].split(":")
    bento = Path(the_project.env["BENTOML_HOME"]) / "bentos" / name / version
    report = bento / "src" / "report.html"
    assert report.is_file(), sorted(p.name for p in (bento / "src").iterdir())
    page = report.read_text()
    assert f"Run <code>{built['run_id']}</code>" in page
    assert "<th>accuracy</th>" in page and "Stage <code>fit</code>" in page
    assert "<h2>Global importance</h2>" in page and "linear SHAP (exact)" in page
