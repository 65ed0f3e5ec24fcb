"""The in-notebook panel (``%mlnb``) rendered by JupyterLab's widget manager in Chromium.

A notebook cell runs ``%load_ext mlnb`` and ``%mlnb panel breast_cancer.ipynb``; the panel's
widgets render in the cell output, the Run button starts a run out of the kernel and the panel
shows it finish. The screenshot goes to docs/panel.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT, code_cell, notebook_json

from .conftest import Lab

pytestmark = pytest.mark.slow
SCREENSHOT = ROOT / "docs" / "panel.png"


VIEWPORT = {"width": 1300, "height": 1300}  # read by the page fixture in conftest.py
TIMEOUT_MS = 60_000


def _widgets_frontend_installed() -> bool:
    """jupyterlab_widgets' frontend, where JupyterLab looks (a venv's prefix may lack it)."""
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(folder) / "@jupyter-widgets" / "jupyterlab-manager").is_dir()
        for folder in jupyter_path("labextensions")
    )


@pytest.mark.skipif(
    not _widgets_frontend_installed(),
    reason="jupyterlab_widgets' labextension is not on this environment's Jupyter path",
)
def test_the_panel_renders_in_a_notebook_and_runs(page: Any, lab: Lab) -> None:
    cells = [code_cell("%load_ext mlnb\n%mlnb panel breast_cancer.ipynb")]
    (lab.root / "panel.ipynb").write_text(json.dumps(notebook_json(cells)))
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
    run = output.locator(".widget-button", has_text="Run")
    run.wait_for(timeout=180_000)
    assert output.locator(".widget-html-content", has_text="breast_cancer.ipynb").count() == 1
    for name in ("test_size", "seed", "C", "max_iter"):
        assert output.locator(".widget-label", has_text=name).count() >= 1
    assert output.locator("td", has_text="fit").count() >= 1

    run.click()
    status = output.locator(".widget-label", has_text="succeeded")
    status.wait_for(timeout=240_000)
    ran = output.locator("td").filter(has_text=re.compile(r"^ran$"))
    expect(ran).to_have_count(3)  # the stage table's last status, once the panel refreshed
    expect(output.locator("td").filter(has_text=re.compile(r"^succeeded$"))).to_have_count(1)
    output.screenshot(path=str(SCREENSHOT))
