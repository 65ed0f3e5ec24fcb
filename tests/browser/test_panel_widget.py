"""The in-notebook panel (``%mlnb``) rendered by JupyterLab's widget manager in Chromium, in a
JupyterLab with its default settings (no ``overrides.json``; the news question is answered as
a person answers it).

A notebook cell runs ``%load_ext mlnb`` and ``%mlnb panel breast_cancer.ipynb``; the panel's
widgets render in the cell output. Three runs from the Run button, each ending with its status,
the buttons back and a history row within seconds of the run's end: a normal run, the same run
again (every stage from the cache, well under a few seconds), and a run whose parameter makes
the data stage raise. The history's links serve the report and the executed notebook. The
screenshot (after the cached run) goes to docs/panel.png.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import NOTEBOOKS, ROOT, code_cell, notebook_json

from .conftest import Lab, answer_the_news_question

pytestmark = pytest.mark.slow
SCREENSHOT = ROOT / "docs" / "panel.png"


VIEWPORT = {"width": 1300, "height": 1300}  # read by the page fixture in conftest.py
TIMEOUT_MS = 60_000
ENDED = re.compile(r"^run (\S+) (succeeded|failed) in [0-9.]+ s \(.*\)$")
SETTLED_MS = 3_000  # buttons and history follow the end status within this


def _widgets_frontend_installed() -> bool:
    """jupyterlab_widgets' frontend, where JupyterLab looks (a venv's prefix may lack it)."""
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(folder) / "@jupyter-widgets" / "jupyterlab-manager").is_dir()
        for folder in jupyter_path("labextensions")
    )


def _run_and_wait(output: Any, limit_ms: int) -> tuple[str, str, float]:
    """Click Run; wait for the panel to say the run ended; (run id, status, seconds taken)."""
    status = output.locator(".mlnb-panel-status")
    before = status.inner_text()
    run = output.locator(".mlnb-panel-run")
    expect(run).to_be_enabled()
    started = time.monotonic()
    run.click()
    expect(status).not_to_have_text(before)
    expect(status).to_have_text(ENDED, timeout=limit_ms)
    text = status.inner_text()
    seconds = time.monotonic() - started
    found = ENDED.match(text)
    assert found is not None, text
    run_id = found.group(1)
    # Within seconds of the end: both buttons back and the history row there.
    expect(run).to_be_enabled(timeout=SETTLED_MS)
    expect(output.locator(".mlnb-panel-build")).to_be_enabled(timeout=SETTLED_MS)
    row = output.locator(".mlnb-panel-history tr", has_text=run_id)
    expect(row).to_have_count(1, timeout=SETTLED_MS)
    return run_id, text, seconds


@pytest.mark.skipif(
    not _widgets_frontend_installed(),
    reason="jupyterlab_widgets' labextension is not on this environment's Jupyter path",
)
def test_the_panel_runs_three_ways_and_never_sticks(page: Any, lab: Lab) -> None:
    cells = [code_cell("%load_ext mlnb\n%mlnb panel breast_cancer.ipynb")]
    (lab.root / "panel.ipynb").write_text(json.dumps(notebook_json(cells)))  # has a kernelspec
    answer_the_news_question(page)
    page.goto(f"{lab.url}/lab/tree/panel.ipynb?token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    notebook.locator(".jp-Cell").first.wait_for()
    # Shift+Enter before the session has a kernel opens JupyterLab's "Select Kernel" dialog:
    # wait, as a person does, until the toolbar names the kernel and it is idle.
    expect(notebook.locator(".jp-Toolbar-kernelName").first).to_have_text("Python 3 (ipykernel)")
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle"
    )
    notebook.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    prompt = notebook.locator(".jp-Cell").first.locator(".jp-InputPrompt")
    expect(prompt).not_to_have_text(re.compile(r"\[\s*\]"))

    output = notebook.locator(".jp-Cell").first.locator(".jp-OutputArea")
    run = output.locator(".mlnb-panel-run")
    run.wait_for(timeout=180_000)
    assert output.locator(".widget-html-content", has_text="breast_cancer.ipynb").count() == 1
    for name in ("test_size", "seed", "C", "max_iter"):
        assert output.locator(".widget-label", has_text=name).count() >= 1
    assert output.locator("td", has_text="fit").count() >= 1
    expect(output.locator("td").filter(has_text=re.compile(r"^5-6$"))).to_have_count(1)  # 1-based
    assert "as saved on disk" in (run.get_attribute("title") or "")

    # 1. A normal run: every stage runs.
    first, text, _ = _run_and_wait(output, 240_000)
    assert " succeeded in " in text and text.endswith("(3 ran)"), text
    expect(output.locator("td").filter(has_text=re.compile(r"^ran$"))).to_have_count(3)

    # 2. The same run again: every stage from the cache; it ends in seconds, not a minute.
    second, text, seconds = _run_and_wait(output, 30_000)
    assert second != first and text.endswith("(3 cached)"), text
    assert seconds < 30, seconds
    expect(output.locator("td").filter(has_text=re.compile(r"^cached$"))).to_have_count(3)
    output.screenshot(path=str(SCREENSHOT))

    # 3. A parameter that makes the data stage raise (train_test_split refuses test_size=5).
    test_size = output.locator(".widget-text", has_text="test_size").locator("input")
    test_size.fill("5")
    test_size.press("Tab")  # FloatText sends its value when it loses focus
    third, text, _ = _run_and_wait(output, 120_000)
    assert " failed in " in text, text
    error = output.locator(".mlnb-panel-error")
    expect(error).to_contain_text("stage 'load', cell 6")  # 1-based, as JupyterLab's status bar
    expect(error).to_contain_text("test_size")
    history = output.locator(".mlnb-panel-history tr")
    expect(history).to_have_count(4)  # the header and three runs

    # The history's links: the report (mlnb's server renders it) and the executed notebook
    # (downloaded: JupyterLab does not open files in the hidden .mlnb folder).
    row = output.locator(".mlnb-panel-history tr", has_text=third)
    report = row.get_by_role("link", name="report", exact=True)
    executed = row.get_by_role("link", name="notebook", exact=True)
    headers = {"Authorization": f"token {lab.token}"}
    answer = page.request.get(
        lab.url + report.get_attribute("href"), headers=headers, timeout=180_000
    )
    assert answer.status == 200, answer.text()[:2000]
    assert third in answer.text() and "Failed in stage <b>load</b>" in answer.text()
    answer = page.request.get(lab.url + executed.get_attribute("href"), headers=headers)
    assert answer.status == 200, answer.text()[:2000]
    assert json.loads(answer.body())["cells"] and "test_size" in answer.text()


@pytest.mark.skipif(
    not _widgets_frontend_installed(),
    reason="jupyterlab_widgets' labextension is not on this environment's Jupyter path",
)
def test_a_visible_stores_executed_notebook_opens_in_jupyterlab(page: Any, lab: Lab) -> None:
    """With the store in a folder JupyterLab shows (``$MLNB_STORE``), the history's notebook
    link opens the executed notebook in a tab of the same JupyterLab."""
    shutil.copy(NOTEBOOKS / "tiny.ipynb", lab.root / "tiny.ipynb")
    source = (
        'import os\nos.environ["MLNB_STORE"] = os.path.abspath("visible-store")\n'
        "%load_ext mlnb\n%mlnb panel tiny.ipynb"
    )
    (lab.root / "tiny-panel.ipynb").write_text(json.dumps(notebook_json([code_cell(source)])))
    # ?reset: JupyterLab's own way to start from an empty workspace (the first test's notebook
    # would be restored beside this one otherwise)
    page.goto(f"{lab.url}/lab/tree/tiny-panel.ipynb?reset&token={lab.token}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell")).to_have_count(1)
    expect(notebook.locator(".jp-Toolbar-kernelName").first).to_have_text("Python 3 (ipykernel)")
    expect(notebook.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle"
    )
    notebook.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    output = notebook.locator(".jp-Cell").first.locator(".jp-OutputArea")
    output.locator(".mlnb-panel-run").wait_for(timeout=120_000)
    run_id, text, _ = _run_and_wait(output, 120_000)
    assert " succeeded in " in text, text
    link = output.locator(".mlnb-panel-history tr", has_text=run_id).get_by_role(
        "link", name="notebook", exact=True
    )
    assert link.get_attribute("data-commandlinker-command") == "docmanager:open"
    link.click()
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="notebook.ipynb")
    expect(tab).to_have_count(1, timeout=30_000)
    opened = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(opened.locator(".jp-Cell").first).to_be_visible()
    assert len(page.context.pages) == 1  # opened in this JupyterLab, not a new browser tab
