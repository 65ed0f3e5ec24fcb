"""The panel's history links (issue 20, item 4): the report and the executed notebook, as the
Jupyter server that started the kernel serves them. The browser test follows them for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlnb.panel.links import ServerPlace, run_links, server_place
from mlnb.panel.widgets import MlnbPanel, _links_html
from mlnb.store import Store

from .conftest import NOTEBOOKS


def info_file(folder: Path, pid: int, **info: object) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"jpserver-{pid}.json").write_text(json.dumps(info))
    return {"JPY_PARENT_PID": str(pid), "JUPYTER_RUNTIME_DIR": str(folder)}


def test_the_server_that_started_the_kernel_is_found_by_its_pid(tmp_path: Path) -> None:
    env = info_file(tmp_path / "runtime", 4242, root_dir=str(tmp_path), base_url="/user/ana")
    assert server_place(env) == ServerPlace(tmp_path, "/user/ana/")
    assert server_place({**env, "JPY_PARENT_PID": "4243"}) is None  # another server's file
    assert server_place({}) is None  # a kernel no Jupyter server started
    (tmp_path / "runtime" / "jpserver-4242.json").write_text("{not json")
    assert server_place(env) is None


def record(store: Path, run_id: str = "r1") -> dict[str, str]:
    return {
        "run_id": run_id,
        "store": str(store),
        "executed_notebook": f"runs/{run_id}/notebook.ipynb",
    }


def test_a_hidden_store_gives_the_report_and_a_download(tmp_path: Path) -> None:
    place = ServerPlace(tmp_path, "/")
    notebook = tmp_path / "work" / "my nb.ipynb"
    links = run_links(record(tmp_path / "work" / ".mlnb"), notebook, place)
    assert [(link.text, link.href, link.lab_path) for link in links] == [
        ("report", "/mlnb/runs/r1/report?path=work/my%20nb.ipynb", None),
        ("notebook", "/mlnb/runs/r1/notebook?path=work/my%20nb.ipynb", None),
    ]
    assert "hidden folders such as .mlnb" in links[1].title


def test_a_visible_store_opens_the_executed_notebook_in_jupyterlab(tmp_path: Path) -> None:
    place = ServerPlace(tmp_path, "/base/")
    links = run_links(record(tmp_path / "stores" / "nb"), tmp_path / "nb.ipynb", place)
    assert links[1].lab_path == "stores/nb/runs/r1/notebook.ipynb"
    assert links[1].href == "/base/lab/tree/stores/nb/runs/r1/notebook.ipynb"


def test_no_links_without_a_server_outside_its_root_or_without_a_kernel(tmp_path: Path) -> None:
    never_started = {**record(tmp_path), "executed_notebook": None}
    assert run_links(never_started, tmp_path / "nb.ipynb", ServerPlace(tmp_path, "/")) == []
    assert run_links(record(tmp_path), tmp_path / "nb.ipynb", None) == []
    assert (
        run_links(record(tmp_path), Path("/elsewhere/nb.ipynb"), ServerPlace(tmp_path, "/")) == []
    )


def test_links_are_escaped_and_only_lab_paths_use_the_command_linker(tmp_path: Path) -> None:
    place = ServerPlace(tmp_path, "/")
    hostile = record(tmp_path / "s'><script>", run_id="r'<b>")
    html = str(_links_html(run_links(hostile, tmp_path / "nb.ipynb", place)))
    assert "<script>" not in html and "<b>" not in html
    assert "/mlnb/runs/r%27%3Cb%3E/report?path=nb.ipynb" in html
    assert html.count("data-commandlinker-command='docmanager:open'") == 1
    assert "data-commandlinker-args='{&#34;path&#34;: " in html


def test_the_history_rows_link_each_run(tmp_path: Path) -> None:
    notebook = tmp_path / "tiny.ipynb"
    shutil.copy(NOTEBOOKS / "tiny.ipynb", notebook)
    store = Store(tmp_path / ".mlnb")
    run = {
        "run_id": "r7",
        "status": "succeeded",
        "started_at": "2026-12-02T00:00:00+00:00",
        "stages": [],
        "notebook": {"path": str(notebook.resolve())},
        **record(store.root, "r7"),
    }
    store.create_run(run)
    store.index_run(run)
    panel = MlnbPanel(notebook, store=str(store.root))
    panel.server = ServerPlace(tmp_path, "/")
    panel.refresh()
    assert "<th style='text-align:left;padding:2px 8px'>open</th>" in panel.history.value
    assert "href='/mlnb/runs/r7/report?path=tiny.ipynb'" in panel.history.value
    assert "href='/mlnb/runs/r7/notebook?path=tiny.ipynb'" in panel.history.value
