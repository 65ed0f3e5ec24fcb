"""The sidebar as a user meets it: a real JupyterLab with its default settings in headless
Chromium (no overrides.json: the news question is answered No, as a person answers it).

Opens the breast cancer example, opens the mlnb panel, sees the stages and their DAG with cell
numbers as JupyterLab counts them (from 1), sees each stage's badge on its cells, jumps to a
cell, tags a cell as a new stage, sets a parameter, runs the pipeline (the sidebar says it saved
the notebook first), watches it go and finish, finds the run in the history with its data
contract verdicts, opens its report and its executed notebook, computes the model's top
features, and builds a Bento from it. Then the same sidebar in JupyterLab's dark theme, chosen
from the Settings menu: every chip, stage kind, DAG label and badge keeps a WCAG contrast of
4.5 in both themes. Then a broken notebook shows its error beside the stage. The panel's
screenshots go to docs/sidebar.png and docs/sidebar-dark.png.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mlnb.pipeline import load_pipeline
from tests.conftest import ROOT

from .conftest import Lab, answer_the_news_question
from .contrast import poor_contrast

pytestmark = pytest.mark.slow
RUN_TIMEOUT_MS = 180_000
SCREENSHOT = ROOT / "docs" / "sidebar.png"
DARK_SCREENSHOT = ROOT / "docs" / "sidebar-dark.png"
BADGES_SCREENSHOT = ROOT / "docs" / "sidebar-badges.png"


# Read by the page fixture in conftest.py; tall enough for the whole sidebar in its picture.
VIEWPORT = {"width": 1400, "height": 2000}
TIMEOUT_MS = 30_000
# Text that must read in every theme: each selector must match something.
READABLE = (
    "#mlnb-sidebar .mlnb-chip",
    "#mlnb-sidebar .mlnb-kind",
    "#mlnb-sidebar .mlnb-dag-node text",
    ".jp-NotebookPanel:not(.lm-mod-hidden) .mlnb-badged",
)


def open_notebook(page: Any, lab: Lab, name: str) -> None:
    answer_the_news_question(page)
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


def badges(page: Any) -> dict[int, str]:
    """The stage badge each cell wears (by 0-based index), as the page draws it."""
    found = cells(page).evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)"
    )
    return {i: json.loads(text) for i, text in enumerate(found) if text not in ("none", "normal")}


def choose_theme(page: Any, name: str) -> None:
    """Settings > Theme > NAME, as a person picks it; wait until the sidebar wears it."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(name)}$")).click()
    page.wait_for_function(
        "name => document.body.dataset.jpThemeName === name", arg=name, timeout=TIMEOUT_MS
    )
    light = "true" if "Light" in name else "false"
    page.wait_for_function(
        """light => {
          const sidebar = document.querySelector('#mlnb-sidebar');
          const ground = getComputedStyle(sidebar).backgroundColor;
          const [r, g, b] = ground.match(/[0-9.]+/g).map(Number);
          const bright = (r + g + b) / 3 > 128;
          return document.body.dataset.jpThemeLight === light && bright === (light === 'true');
        }""",
        arg=light,
        timeout=TIMEOUT_MS,
    )


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
    # Cells numbered as JupyterLab's status bar counts them: cells[4] is "Cell 5".
    assert sidebar.locator(".mlnb-stage .mlnb-cells").all_inner_texts() == [
        "cells 5-6",
        "cells 8-9",
        "cells 11-12",
    ]
    assert sidebar.locator(".mlnb-dag .mlnb-dag-node").count() == 3
    assert sidebar.locator(".mlnb-dag .mlnb-dag-edge").count() == 3
    assert sidebar.locator(".mlnb-warning").count() == 0

    # Each cell of a stage wears its badge in the notebook; the setup and parameters cells too.
    page.wait_for_function(
        "document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .mlnb-badged')"
        ".length === 8"
    )
    assert badges(page) == {
        1: "setup",
        2: "parameters",
        4: "data: load",
        5: "data: load",
        7: "train: fit",
        8: "train: fit",
        10: "serve",
        11: "serve",
    }
    assert cells(page).nth(4).get_attribute("data-mlnb-badge-part") == "opens"
    assert cells(page).nth(5).get_attribute("data-mlnb-badge-part") == "continues"

    # Clicking a stage's cells selects its first cell in the notebook.
    sidebar.locator('.mlnb-stage[data-stage="fit"] .mlnb-cells').click()
    active = cells(page).nth(7)
    page.wait_for_function(
        "el => el.classList.contains('jp-mod-active')", arg=active.element_handle()
    )
    assert "make_pipeline" in active.inner_text()

    # Tag cells[5] (the split inside the data stage, "Cell 6" to JupyterLab) as its own data
    # stage named "split": its badge follows.
    cells(page).nth(5).locator(".jp-InputPrompt").click()
    sidebar.locator(".mlnb-tagging h3").filter(has_text="Active cell 6").wait_for()
    sidebar.locator(".mlnb-stage-name-input").fill("split")
    sidebar.locator(".mlnb-tag-data").click()
    page.wait_for_function("document.querySelectorAll('#mlnb-sidebar .mlnb-stage').length === 4")
    assert stage_names(page) == ["load", "split", "fit", "serve"]
    assert sidebar.locator(".mlnb-tagging .mlnb-kind").inner_text() == "data"
    assert sidebar.locator('.mlnb-stage[data-stage="split"] .mlnb-cells').inner_text() == "cell 6"
    page.wait_for_function(
        "el => getComputedStyle(el, '::before').content === '\"data: split\"'",
        arg=cells(page).nth(5).element_handle(),
    )
    assert badges(page)[4] == "data: load" and badges(page)[5] == "data: split"
    cells(page).nth(1).scroll_into_view_if_needed()
    top, bottom = cells(page).nth(1).bounding_box(), cells(page).nth(8).bounding_box()
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").bounding_box()
    clip = {"x": notebook["x"], "y": top["y"], "width": min(notebook["width"], 760)}
    clip["height"] = bottom["y"] + bottom["height"] - top["y"]
    page.screenshot(path=str(BADGES_SCREENSHOT), clip=clip)

    # A parameter from the form; a bad value is caught before anything is sent.
    c_field = sidebar.locator('.mlnb-param[data-param="C"] input')
    c_field.fill("lots")
    sidebar.locator('.mlnb-param[data-param="C"] .mlnb-field-error').wait_for()
    assert sidebar.locator(".mlnb-run-button").is_disabled()
    c_field.fill("0.5")
    assert sidebar.locator(".mlnb-run-button").is_enabled()

    # Run: it saves the notebook (and says so), starts, shows live status, and finishes.
    note = sidebar.locator(".mlnb-run-note")
    assert note.inner_text() == ""
    sidebar.locator(".mlnb-run-button").click()
    sidebar.locator(".mlnb-live.mlnb-live-starting, .mlnb-live.mlnb-live-running").wait_for()
    assert note.inner_text() == "saved breast_cancer.ipynb; running…"
    sidebar.locator(".mlnb-live.mlnb-live-succeeded").wait_for(timeout=RUN_TIMEOUT_MS)
    live = sidebar.locator(".mlnb-live")
    assert live.locator(".mlnb-chip.mlnb-status-ran").count() == 4
    assert "accuracy" in live.locator(".mlnb-metrics").inner_text()

    run_id = live.get_attribute("data-run")
    assert note.inner_text() == f"saved breast_cancer.ipynb before run {run_id}"
    history = sidebar.locator(f'.mlnb-run[data-run="{run_id}"]')
    history.wait_for()
    assert "C=0.5" in history.inner_text()
    assert history.locator(".mlnb-status-succeeded").count() >= 1

    # The run's report opens in the main area, showing the run; the executed notebook (in the
    # hidden .mlnb/ folder, which JupyterLab's Contents API does not serve) is a download.
    history.locator(".mlnb-report-link").click()
    report = page.locator(f'.mlnb-report[id="mlnb-report-{run_id}"]')
    report.wait_for()
    page.locator(".lm-TabBar-tabLabel", has_text=f"Report {run_id}").wait_for()
    frame = page.frame_locator(f'.mlnb-report[id="mlnb-report-{run_id}"] iframe')
    frame.locator("body", has_text=run_id).wait_for(timeout=RUN_TIMEOUT_MS)
    assert "accuracy" in frame.locator("body").inner_text()
    executed = history.locator("a.mlnb-executed-link")
    assert executed.get_attribute("download") is not None
    download = page.request.get(executed.evaluate("a => a.href"))
    assert download.ok, download.status
    assert f"breast_cancer-{run_id}.ipynb" in download.headers["content-disposition"]
    assert len(json.loads(download.body())["cells"]) >= 12
    page.locator(".lm-TabBar-tab", has_text="breast_cancer.ipynb").click()

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

    # Readable in the light theme and in the dark one, chosen from the Settings menu: the
    # status chips, stage kinds, DAG labels and cell badges all keep a contrast of 4.5.
    for theme, picture in (("JupyterLab Light", SCREENSHOT), ("JupyterLab Dark", DARK_SCREENSHOT)):
        if theme != "JupyterLab Light":
            choose_theme(page, theme)
        assert sidebar.locator(".mlnb-dag-node.mlnb-status-ran text").count() == 4
        for selector in READABLE:
            assert poor_contrast(page, selector) == [], f"{theme}: {selector}"
        sidebar.locator(".mlnb-body").screenshot(path=str(picture))
        assert picture.stat().st_size > 10_000
    # The measure catches what the old style did in the dark theme: the pastel
    # --jp-success-color3 chip, the same in both themes, under the dark theme's light text.
    sidebar.locator(".mlnb-body").evaluate(
        """body => {
          const old = document.createElement('span');
          old.className = 'mlnb-probe';
          old.style.background = 'var(--jp-success-color3)';
          old.textContent = 'ran';
          body.appendChild(old);
        }"""
    )
    (found,) = poor_contrast(page, "#mlnb-sidebar .mlnb-probe")
    assert found.startswith("mlnb-probe ran: 1.")
    sidebar.locator(".mlnb-probe").evaluate("el => el.remove()")
    choose_theme(page, "JupyterLab Light")


def test_a_validation_error_shows_beside_its_stage(page: Any, lab: Lab) -> None:
    open_notebook(page, lab, "broken.ipynb")
    box = page.locator('#mlnb-sidebar .mlnb-stage-error[data-stage="data"] .mlnb-error-box')
    box.wait_for()
    assert re.search(r"uses 'x'", box.inner_text())
    assert "Fix:" in box.inner_text()
    assert stage_names(page) == ["data", "train"]
    assert page.locator("#mlnb-sidebar .mlnb-run-button").is_disabled()

    # The error names cells[1] as a person counts it, and goes there; the stages found before
    # validation failed still badge their cells.
    go = box.locator(".mlnb-go-to-cell")
    assert go.inner_text() == "go to cell 2"
    go.click()
    page.wait_for_function(
        "el => el.classList.contains('jp-mod-active')", arg=cells(page).nth(1).element_handle()
    )
    page.wait_for_function(
        "document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .mlnb-badged')"
        ".length === 2"
    )
    assert badges(page) == {1: "data", 2: "train"}

    # A %%mlnb first line typed into a cell opens a stage there: its badge follows the text.
    cells(page).nth(0).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("%%mlnb data --name prep\n")
    page.wait_for_function(
        "el => getComputedStyle(el, '::before').content === '\"data: prep\"'",
        arg=cells(page).nth(0).element_handle(),
    )
    assert stage_names(page)[0] == "prep"
