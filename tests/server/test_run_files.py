"""What a run left, through a real Jupyter server: its HTML report (rendered by ``mlnb report``
in a subprocess, sandboxed, escaped), its executed notebook (a download, or a path JupyterLab
opens when the Contents API serves it), and the refusals: unknown runs, files that point out
of the store, no token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlnb.store import Store
from tests.conftest import code_cell, notebook_json

from .test_routes import assert_error

RUN_ID = "20261202-000000-abcdef"
NOTEBOOK = {"path": "breast_cancer.ipynb"}


def a_run(root: Path, store: Path | None = None, run_id: str = RUN_ID) -> Path:
    """A finished run of breast_cancer.ipynb with an executed notebook; its run folder."""
    runs = Store(store) if store else Store.for_notebook(root / "breast_cancer.ipynb")
    record = {
        "run_id": run_id,
        "status": "succeeded",
        "started_at": "2026-12-02T00:00:00+00:00",
        "finished_at": "2026-12-02T00:00:09+00:00",
        "notebook": {"path": str(root / "breast_cancer.ipynb")},
        "parameters": {"note": "<script>alert(1)</script>"},
        "stages": [{"name": "load<b>", "kind": "data", "status": "ran", "cells": [0]}],
        "metrics": {"accuracy": 0.9},
        "model": None,
        "executed_notebook": f"runs/{run_id}/notebook.ipynb",
    }
    runs.create_run(record)
    executed = notebook_json([code_cell("answer = 42", tags=("mlnb:data",))])
    executed["cells"][0]["id"] = "answer"
    executed["cells"][0]["metadata"]["mlnb_run"] = {"cell": 0}
    (runs.run_dir(run_id) / "notebook.ipynb").write_text(json.dumps(executed))
    runs.close()
    return runs.run_dir(run_id)


async def fetch(jp_fetch: Any, route: str, **kwargs: Any) -> Any:
    return await jp_fetch("mlnb", *route.split("/"), raise_error=False, **kwargs)


async def test_the_report_is_the_runs_page_sandboxed_and_escaped(jp_fetch: Any, root: Path) -> None:
    a_run(root)
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/report", params=NOTEBOOK)
    assert response.code == 200, response.body[-2000:]
    assert response.headers["Content-Type"].startswith("text/html")
    assert "sandbox allow-scripts" in response.headers["Content-Security-Policy"]
    page = response.body.decode()
    assert RUN_ID in page
    assert '<span class="n">answer</span>' in page  # the executed notebook's cell
    assert "load&lt;b&gt;" in page and "load<b>" not in page
    assert "<script>alert(1)</script>" not in page
    assert not list(root.rglob("report-*.html"))  # nothing left beside the notebook


async def test_the_executed_notebook_downloads_and_lab_opens_it_only_when_it_may(
    jp_fetch: Any, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_run(root)
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/notebook", params=NOTEBOOK)
    assert response.code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="breast_cancer-{RUN_ID}.ipynb"'
    )
    assert json.loads(response.body)["cells"][0]["source"] == "answer = 42"

    # The default store is .mlnb/ beside the notebook: hidden, so the Contents API refuses it
    # and the sidebar offers the download instead.
    response = await fetch(jp_fetch, "runs", params=NOTEBOOK)
    (listed,) = json.loads(response.body)["runs"]
    assert listed["executed_notebook_path"] is None
    response = await fetch(jp_fetch, f"runs/{RUN_ID}", params=NOTEBOOK)
    assert json.loads(response.body)["executed_notebook_path"] is None

    # A store in a visible folder under the root: JupyterLab opens the notebook in place.
    monkeypatch.setenv("MLNB_STORE", str(root / "store"))
    a_run(root, root / "store", run_id="20261202-000001-abcdef")
    response = await fetch(jp_fetch, "runs", params=NOTEBOOK)
    (listed,) = json.loads(response.body)["runs"]
    assert listed["executed_notebook_path"] == "store/runs/20261202-000001-abcdef/notebook.ipynb"
    contents = await jp_fetch("api", "contents", *listed["executed_notebook_path"].split("/"))
    assert json.loads(contents.body)["type"] == "notebook"


async def test_a_run_whose_kernel_never_started_has_neither_report_nor_notebook(
    jp_fetch: Any, root: Path
) -> None:
    run_dir = a_run(root)
    (run_dir / "notebook.ipynb").unlink()
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/report", params=NOTEBOOK)
    assert response.code == 404
    assert "no executed notebook" in response.body.decode()
    assert f"mlnb runs show {RUN_ID}" in response.body.decode()
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/notebook", params=NOTEBOOK)
    payload = json.loads(response.body)
    assert_error(payload, 404, "run-not-found")
    assert "no executed notebook" in payload["message"]


async def test_files_pointing_out_of_the_store_are_refused(
    jp_fetch: Any, root: Path, tmp_path: Path
) -> None:
    run_dir = a_run(root)
    outside = tmp_path / "secret.ipynb"
    outside.write_text(json.dumps(notebook_json([code_cell("token = 'secret'")])))
    (run_dir / "notebook.ipynb").unlink()
    (run_dir / "notebook.ipynb").symlink_to(outside)
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/notebook", params=NOTEBOOK)
    assert response.code == 403
    assert_error(json.loads(response.body), 403, "path-outside-root")
    assert b"secret" not in response.body
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/report", params=NOTEBOOK)
    assert response.code == 403
    assert "secret" not in response.body.decode()
    response = await fetch(jp_fetch, "runs", params=NOTEBOOK)
    assert json.loads(response.body)["runs"][0]["executed_notebook_path"] is None


async def test_unknown_runs_bad_ids_and_no_token_are_refused(jp_fetch: Any, root: Path) -> None:
    response = await fetch(jp_fetch, "runs/20260101-000000-000000/report", params=NOTEBOOK)
    assert response.code == 404
    page = response.body.decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert "run-not-found" in page and "Fix:" in page
    response = await fetch(jp_fetch, "runs/x&y'z/report", params=NOTEBOOK)
    assert response.code == 400
    assert "x&amp;y&#x27;z" in response.body.decode()
    response = await fetch(jp_fetch, "runs/20260101-000000-000000/notebook", params=NOTEBOOK)
    assert_error(json.loads(response.body), 404, "run-not-found")
    a_run(root)
    # Without a token: the page sends the browser to log in, as Jupyter's pages do; the
    # download is refused as the API is.
    headers = {"Authorization": ""}
    route = f"runs/{RUN_ID}/report"
    response = await fetch(
        jp_fetch, route, params=NOTEBOOK, headers=headers, follow_redirects=False
    )
    assert response.code == 302 and "/login" in response.headers["Location"]
    response = await fetch(jp_fetch, f"runs/{RUN_ID}/notebook", params=NOTEBOOK, headers=headers)
    assert response.code == 403 and b"answer" not in response.body
