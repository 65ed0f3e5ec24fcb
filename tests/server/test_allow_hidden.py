"""With ``ContentsManager.allow_hidden = True`` JupyterLab serves ``.mlnb/``, so a run's
executed notebook is named by the path JupyterLab opens in place (no download needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .test_run_files import NOTEBOOK, RUN_ID, a_run, fetch


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"mlnb.server": True}},
        "ContentsManager": {"allow_hidden": True},
    }


async def test_the_executed_notebook_opens_in_place_when_hidden_files_are_served(
    jp_fetch: Any, root: Path
) -> None:
    a_run(root)
    response = await fetch(jp_fetch, "runs", params=NOTEBOOK)
    (listed,) = json.loads(response.body)["runs"]
    assert listed["executed_notebook_path"] == f".mlnb/runs/{RUN_ID}/notebook.ipynb"
    contents = await jp_fetch("api", "contents", *listed["executed_notebook_path"].split("/"))
    assert json.loads(contents.body)["type"] == "notebook"
