"""The sidebar as a user meets it: a real JupyterLab in headless Chromium.

Opens the breast cancer example, opens the mlnb panel, sees the stages and their DAG, jumps to
a cell, tags a cell as a new stage, sets a parameter, runs the pipeline, watches it go and
finish, finds the run in the history with its data contract verdicts, computes the model's top
features, and builds a Bento from it. Then a broken notebook
shows its error beside the stage. The panel's screenshot goes to docs/sidebar.png.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mlnb.pipeline import load_pipeline
from tests.conftest import ROOT

from .conftest import Lab

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 180_000
SCREENSHOT = ROOT / "docs" / "sidebar.png"


VIEWPORT = {"width": 1400, "height": 1400}  # read by the page fixture in conftest.py
TIMEOUT_MS = 30_000


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").first.wait_for()
    tab = page.locator('.jp-SideBar [data-id="mlnb-sidebar"]')
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.locator("#mlnb-sidebar .mlnb-body").wait_for()


def stage_names(page: Any) -> list[str]:
    return page.locator("#mlnb-sidebar .mlnb-stage .mlnb-stage-name").all_inner_texts()


def cells(page: Any) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def test_the_sidebar_shows_tags_and_runs_the_pipeline(page: Any, lab: Lab) -> None:
    open_notebook(page, lab, "breast_cancer.ipynb")
    sidebar = page.locator("#mlnb-sidebar")

    # The stages in order, with kind and cells, and their DAG; no version warning.
    page.wait_for_function("document.querySelectorAll('#mlnb-sidebar .mlnb-stage').length === 3")
    assert stage_names(page) == ["load", "fit", "serve"]
    assert sidebar.locator(".mlnb-stage .mlnb-kind").all_inner_texts() == [
        "data",
        "train",
        "serve",
    ]
    assert sidebar.locator(".mlnb-stage .mlnb-cells").all_inner_texts() == [
        "cells 4-5",
        "cells 7-8",
        "cells 10-11",
    ]
    assert sidebar.locator(".mlnb-dag .mlnb-dag-node").count() == 3
    assert sidebar.locator(".mlnb-dag .mlnb-dag-edge").count() == 3
    assert sidebar.locator(".mlnb-warning").count() == 0

    # Clicking a stage's cells selects its first cell in the notebook.
    sidebar.locator('.mlnb-stage[data-stage="fit"] .mlnb-cells').click()
    active = cells(page).nth(7)
    page.wait_for_function(
        "el => el.classList.contains('jp-mod-active')", arg=active.element_handle()
    )
    assert "make_pipeline" in active.inner_text()

    # Tag cell 5 (the split inside the data stage) as its own data stage named "split".
    cells(page).nth(5).locator(".jp-InputPrompt").click()
    sidebar.locator(".mlnb-tagging h3").filter(has_text="Active cell 5").wait_for()
    sidebar.locator(".mlnb-stage-name-input").fill("split")
    sidebar.locator(".mlnb-tag-data").click()
    page.wait_for_function("document.querySelectorAll('#mlnb-sidebar .mlnb-stage').length === 4")
    assert stage_names(page) == ["load", "split", "fit", "serve"]
    assert sidebar.locator(".mlnb-tagging .mlnb-kind").inner_text() == "data"

    # A parameter from the form; a bad value is caught before anything is sent.
    c_field = sidebar.locator('.mlnb-param[data-param="C"] input')
    c_field.fill("lots")
    sidebar.locator('.mlnb-param[data-param="C"] .mlnb-field-error').wait_for()
    assert sidebar.locator(".mlnb-run-button").is_disabled()
    c_field.fill("0.5")
    assert sidebar.locator(".mlnb-run-button").is_enabled()

    # Run: it saves the notebook, starts, shows live status, and finishes.
    sidebar.locator(".mlnb-run-button").click()
    sidebar.locator(".mlnb-live.mlnb-live-starting, .mlnb-live.mlnb-live-running").wait_for()
    sidebar.locator(".mlnb-live.mlnb-live-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    live = sidebar.locator(".mlnb-live")
    assert live.locator(".mlnb-chip.mlnb-status-ran").count() == 4
    assert "accuracy" in live.locator(".mlnb-metrics").inner_text()

    run_id = live.get_attribute("data-run")
    history = sidebar.locator(f'.mlnb-run[data-run="{run_id}"]')
    history.wait_for()
    assert "C=0.5" in history.inner_text()
    assert history.locator(".mlnb-status-succeeded").count() >= 1

    # Each data stage's contract verdict (this first run learns the contract), then the
    # model's top features: not computed yet, computed on request with a status meanwhile.
    contracts = sidebar.locator(f'.mlnb-contracts[data-run="{run_id}"]')
    contracts.wait_for()
    assert contracts.locator(".mlnb-contract .mlnb-stage-name").all_inner_texts() == [
        "load",
        "split",
    ]
    for status in contracts.locator(".mlnb-contract-status").all_inner_texts():
        assert status in ("learned", "passed"), status
    features = sidebar.locator(f'.mlnb-features[data-run="{run_id}"]')
    features.locator(".mlnb-features-compute").click()
    sidebar.locator(".mlnb-features-computed .mlnb-feature").first.wait_for(timeout=TIMEOUT_MS)
    assert features.locator(".mlnb-feature").count() == 10
    assert "linear SHAP (exact)" in features.locator(".mlnb-features-note").inner_text()

    # Build: a BentoML service from that run; its tag shows in the run's history.
    sidebar.locator(".mlnb-build-button").click()
    sidebar.locator(".mlnb-build.mlnb-build-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    bento = sidebar.locator(".mlnb-build .mlnb-bento").inner_text()
    assert bento.startswith("breast_cancer:")
    history.locator(".mlnb-bento").filter(has_text=bento).wait_for()

    # The tag reached the file exactly as the contract says, and mlnb reads it.
    saved = json.loads((lab.root / "breast_cancer.ipynb").read_text())
    assert saved["cells"][5]["metadata"]["tags"] == ["mlnb:data:split"]
    assert saved["cells"][5]["metadata"]["mlnb"] == {"version": 1}
    pipeline = load_pipeline(lab.root / "breast_cancer.ipynb")
    assert [s.name for s in pipeline.stages] == ["load", "split", "fit", "serve"]
    record = json.loads((lab.root / ".mlnb" / "runs" / run_id / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["parameters"]["C"] == 0.5
    assert [b["bento"] for b in record["builds"]] == [bento]

    # Widen the panel for the picture: drag the split handle next to the left sidebar.
    box = sidebar.bounding_box()
    page.mouse.move(box["x"] + box["width"] + 2, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 380, box["y"] + 300, steps=5)
    page.mouse.up()
    sidebar.locator(".mlnb-body").evaluate("el => el.parentElement.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    sidebar.locator(".mlnb-body").screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000


def test_a_validation_error_shows_beside_its_stage(page: Any, lab: Lab) -> None:
    open_notebook(page, lab, "broken.ipynb")
    box = page.locator('#mlnb-sidebar .mlnb-stage-error[data-stage="data"] .mlnb-error-box')
    box.wait_for()
    assert re.search(r"uses 'x'", box.inner_text())
    assert "Fix:" in box.inner_text()
    assert stage_names(page) == ["data", "train"]
    assert page.locator("#mlnb-sidebar .mlnb-run-button").is_disabled()
