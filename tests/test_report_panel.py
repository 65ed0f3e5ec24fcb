"""Run reports (nbconvert) and the in-notebook panel (ipywidgets in a real kernel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

from .conftest import NOTEBOOKS, mlnb

TINY = NOTEBOOKS / "tiny.ipynb"
FAILS = NOTEBOOKS / "tiny_fails.ipynb"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    store = tmp_path_factory.mktemp("report-store")
    ok = json.loads(mlnb("run", str(TINY), "--store", str(store), "--json").stdout)
    failed = json.loads(mlnb("run", str(FAILS), "--store", str(store), "--json").stdout)
    return {"store": store, "ok": ok, "failed": failed}


def test_report_of_a_successful_run(runs: dict, tmp_path: Path) -> None:
    output = tmp_path / "ok.html"
    run_id = runs["ok"]["run_id"]
    result = mlnb("report", run_id, "--store", str(runs["store"]), "-o", str(output))
    assert result.returncode == 0, result.stderr
    page = output.read_text()
    assert f"Run <code>{run_id}</code>" in page and "succeeded" in page
    assert "<th>scale</th><td><code>2.0</code></td>" in page  # parameters
    assert "<th>score</th><td>0.2</td>" in page  # metrics
    assert "Stage <code>data</code>" in page and "Stage <code>train</code>" in page
    assert runs["ok"]["notebook"]["sha256"] in page  # lineage
    assert "_mlnb_run" not in page  # mlnb's injected cells are hidden
    assert "<script src=" not in page  # nothing to fetch: self-contained


def test_report_of_a_failed_run_shows_the_failing_cell(runs: dict, tmp_path: Path) -> None:
    output = tmp_path / "failed.html"
    run_id = runs["failed"]["run_id"]
    assert mlnb("report", run_id, "--store", str(runs["store"]), "-o", str(output)).returncode == 0
    page = output.read_text()
    assert "mlnb-status-failed" in page
    assert "Failed in stage <b>train</b>" in page
    assert "ValueError: the data is bad: small" in page


def test_report_of_a_run_without_an_executed_notebook(runs: dict, tmp_path: Path) -> None:
    """A run whose kernel never started keeps no executed notebook: the report still renders."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(runs["store"], store)
    run_id = runs["failed"]["run_id"]
    executed = store / "runs" / run_id / "notebook.ipynb"
    assert executed.is_file()
    executed.unlink()
    output = tmp_path / "bare.html"
    result = mlnb("report", run_id, "--store", str(store), "-o", str(output))
    assert result.returncode == 0, result.stderr
    page = output.read_text()
    assert f"Run <code>{run_id}</code>" in page and "mlnb-status-failed" in page


def test_report_with_a_users_template(runs: dict, tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "conf.json").write_text('{"base_template": "lab", "mimetypes": {"text/html": true}}')
    (own / "index.html.j2").write_text(
        "{%- extends 'lab/index.html.j2' -%}{% block body_header %}"
        "<h1>OURS {{ resources.mlnb.run_id }}</h1>{% endblock %}"
    )
    output = tmp_path / "mine.html"
    run_id = runs["ok"]["run_id"]
    args = ["report", run_id, "--store", str(runs["store"]), "-o", str(output)]
    assert mlnb(*args, "--template", str(own)).returncode == 0
    assert f"<h1>OURS {run_id}</h1>" in output.read_text()


def test_unknown_run_is_a_clear_error(runs: dict) -> None:
    result = mlnb("report", "nope", "--store", str(runs["store"]))
    assert result.returncode == 2 and "no run 'nope'" in result.stderr


PANEL_CODE = """
import json
%load_ext mlnb
%mlnb panel {notebook}
panel = get_ipython().magics_manager.registry["MlnbMagics"].panel
print(json.dumps({{
    "fields": {{f.name: [f.kind, f.default, list(f.choices)] for f in panel.fields}},
    "widgets": {{n: type(w).__name__ for n, w in panel.inputs.items()}},
    "stages": panel.stages.value,
}}))
"""

CLICK_CODE = """
panel.inputs["scale"].value = 3.5
panel.inputs["label"].value = "large"
panel.run_button.click()
started_busy = panel.busy
await panel.settled(180)  # on the kernel's own loop, which follows the run
print(json.dumps({
    "busy_after_click": started_busy,
    "buttons_disabled": [panel.run_button.disabled, panel.build_button.disabled],
    "status": panel.status.value,
    "bar": [panel.bar.value, panel.bar.max, panel.bar.bar_style],
    "record": panel.last_record,
    "history": panel.history.value,
    "stages": panel.stages.value,
}))
"""


def _execute(client, code: str, comms: list[dict] | None = None) -> str:
    chunks: list[str] = []

    def collect(msg: dict) -> None:
        if msg["msg_type"] == "comm_msg" and comms is not None:
            comms.append(msg["content"]["data"])
        if msg["msg_type"] == "stream":
            chunks.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            chunks.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=240, output_hook=collect)
    assert reply["content"]["status"] == "ok", "".join(chunks)
    return "".join(chunks)


def test_panel_in_a_real_kernel_runs_with_the_forms_parameters(tmp_path: Path) -> None:
    notebook = tmp_path / "tiny.ipynb"
    notebook.write_text(TINY.read_text())
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        shown = json.loads(_execute(client, PANEL_CODE.format(notebook=notebook)).splitlines()[-1])
        assert shown["fields"] == {
            "scale": ["float", 2.0, []],
            "label": ["choice", "small", ["small", "large"]],
            "verbose": ["bool", False, []],
        }
        assert shown["widgets"] == {
            "scale": "FloatText",
            "label": "Dropdown",
            "verbose": "Checkbox",
        }
        assert "train" in shown["stages"]
        updates: list[dict] = []  # widget state the kernel sent to the front end
        done = json.loads(_execute(client, CLICK_CODE, updates).splitlines()[-1])
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert done["busy_after_click"] is True  # the run went to a subprocess; the kernel was free
    record = done["record"]
    assert record["status"] == "succeeded"
    assert record["parameters"]["scale"] == 3.5 and record["parameters"]["label"] == "large"
    assert done["bar"] == [2, 2, "success"]
    assert done["status"].startswith(f"run {record['run_id']} succeeded in ")
    assert done["status"].endswith(" s (2 ran)")
    assert done["buttons_disabled"] == [False, False]
    # ... and the front end was told: the end status and the buttons back left the kernel.
    sent = [u.get("state") or {} for u in updates if u.get("method") == "update"]
    assert any(str(state.get("value")) == done["status"] for state in sent), sent
    assert sum(1 for state in sent if state.get("disabled") is False) >= 2, sent
    assert record["run_id"] in done["history"]
    assert "ran" in done["stages"]
