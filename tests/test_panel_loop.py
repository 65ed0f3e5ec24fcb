"""The panel's state machine (events in, what it shows out) and its hand-off to the kernel's
event loop, without a browser: the pure :func:`step` on hand-made events, then the panel driving
real ``mlnb run`` processes from an asyncio loop, as a kernel's loop drives it (issue 20, item 3).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlnb.panel.loop import KernelLoop, NoKernelLoopError, follow
from mlnb.panel.state import (
    BuildStarted,
    CommandEnded,
    CommandProcess,
    PanelState,
    RecordSeen,
    RunStarted,
    step,
)
from mlnb.panel.widgets import MlnbPanel

from .conftest import code_cell, notebook_json


def record(status: str, stages: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "status": status,
        "seconds": 0.05,
        "stages": [{"name": name, "status": s} for name, s in stages.items()],
        **extra,
    }


CACHED = record("succeeded", {"load": "cached", "fit": "cached", "serve": "cached"})
FAILED = record(
    "failed",
    {"load": "failed", "fit": "not-run"},
    error={"stage": "load", "cell_index": 3, "ename": "ValueError", "evalue": "math domain error"},
)


def started() -> PanelState:
    return step(PanelState(), RunStarted("r1", 3, "nb.ipynb"))


def test_run_started_is_busy_and_says_it_runs_the_saved_file() -> None:
    state = started()
    assert state.busy and not state.buttons_enabled
    assert state.status == (
        "runs nb.ipynb as saved on disk: save it (Ctrl+S) to include unsaved edits; "
        "starting a kernel..."
    )
    assert (state.done, state.total, state.bar_style) == (0, 3, "info")


def test_a_run_that_ends_before_the_first_poll_ends_right() -> None:
    ended = step(started(), CommandEnded(0, json.dumps(CACHED), "", CACHED))
    assert not ended.busy and ended.buttons_enabled
    assert ended.status == "run r1 succeeded in 0.05 s (3 cached)"
    assert (ended.done, ended.total, ended.bar_style, ended.error) == (3, 3, "success", "")
    assert ended.history_version == 1  # the view reloads the history


def test_a_failed_run_ends_with_the_stage_and_cell_in_the_error() -> None:
    seen = step(started(), RecordSeen(record("running", {"load": "running", "fit": "not-run"})))
    assert seen.status == "running stage load" and seen.busy
    ended = step(seen, CommandEnded(1, json.dumps(FAILED), "", FAILED))
    assert ended.buttons_enabled and ended.bar_style == "danger"
    assert ended.status == "run r1 failed in 0.05 s (1 failed, 1 not-run)"
    assert "stage 'load'" in ended.error and "cell 4" in ended.error  # 1-based for people
    assert "ValueError: math domain error" in ended.error


def test_a_run_that_wrote_no_record_says_the_exit_code_and_stderr() -> None:
    ended = step(started(), CommandEnded(2, "", "mlnb: error: no such notebook\nFix: ...", None))
    assert ended.status == "run r1 failed (exit code 2)"
    assert ended.error.startswith("mlnb: error: no such notebook")
    assert ended.buttons_enabled


def test_late_and_doubled_events_change_nothing() -> None:
    ended = step(started(), CommandEnded(0, "", "", CACHED))
    assert step(ended, RecordSeen(record("running", {"load": "running"}))) == ended
    assert step(ended, CommandEnded(1, "", "boom", None)) == ended


def test_a_build_ends_with_its_bento_or_its_error() -> None:
    building = step(PanelState(), BuildStarted())
    assert building.busy and building.status.startswith("building a Bento")
    built = step(building, CommandEnded(0, json.dumps({"bento": "nb:v1", "format": "onnx"}), ""))
    assert (built.status, built.bar_style, built.busy) == ("built nb:v1 (onnx)", "success", False)
    failed = step(building, CommandEnded(2, "", "mlnb: error: no successful run", None))
    assert failed.status == "build failed" and failed.error.startswith("mlnb: error")
    same = {"bento": "nb:v1", "format": "onnx", "reused": True, "reused_from_run": "r1"}
    reused = step(building, CommandEnded(0, json.dumps(same), ""))
    assert reused.status == "reused the existing Bento nb:v1 (built from run r1; same content)"


running = st.builds(
    RecordSeen,
    st.one_of(
        st.none(),
        st.builds(
            lambda n: record("running", {f"s{i}": "ran" for i in range(n)}),
            st.integers(0, 5),
        ),
    ),
)


@given(st.lists(running, max_size=6), st.sampled_from([(0, CACHED), (1, FAILED), (2, None)]))
def test_every_run_ends_idle_with_the_history_refreshed_once(
    polls: list[RecordSeen], end: tuple[int, dict[str, Any] | None]
) -> None:
    state = started()
    for poll in polls:
        state = step(state, poll)
        assert state.busy and 0 <= state.done <= state.total
    ended = step(state, CommandEnded(end[0], "", "stderr", end[1]))
    assert ended.buttons_enabled and ended.history_version == 1
    assert ended.bar_style == ("success" if end[0] == 0 else "danger")
    assert ended.status.startswith("run r1 ")


# --- the hand-off, with real processes on an asyncio loop ---


def test_follow_reports_a_process_that_ends_before_the_first_poll(tmp_path: Path) -> None:
    events: list[Any] = []
    command = CommandProcess(["run", str(tmp_path / "missing.ipynb"), "--json"]).start()
    command.process.wait(60)  # type: ignore[union-attr]  # ended before anyone polled

    async def main() -> None:
        await follow(command, events.append, lambda: None, poll_seconds=0.05)

    asyncio.run(main())
    assert [type(e).__name__ for e in events] == ["CommandEnded"]
    assert events[0].returncode == 2 and "missing.ipynb" in events[0].stderr


def test_widgets_refuse_changes_from_another_thread() -> None:
    async def main() -> KernelLoop:
        loop = KernelLoop.capture()
        assert loop is not None and loop.on_loop()
        return loop

    loop = asyncio.run(main())
    failures: list[BaseException] = []

    def off_loop() -> None:
        try:
            loop.check()
        except RuntimeError as error:
            failures.append(error)

    thread = threading.Thread(target=off_loop, name="not-the-kernel")
    thread.start()
    thread.join()
    assert len(failures) == 1 and "'not-the-kernel'" in str(failures[0])


def write_pipeline(folder: Path) -> Path:
    cells = [
        code_cell("import math"),
        code_cell("scale = 2.0", tags=("parameters",)),
        code_cell("values = [math.sqrt(scale) * i for i in range(5)]", tags=("mlnb:data",)),
        code_cell("model = sum(values)\nmetrics = {'total': model}", tags=("mlnb:train",)),
    ]
    notebook = folder / "loop.ipynb"
    notebook.write_text(json.dumps(notebook_json(cells)))
    return notebook


def test_a_panel_without_a_kernel_loop_says_where_it_runs(tmp_path: Path) -> None:
    panel = MlnbPanel(write_pipeline(tmp_path), store=str(tmp_path / "store"))
    with pytest.raises(NoKernelLoopError, match="%mlnb in a notebook"):
        panel.start_run()


@pytest.mark.slow
def test_normal_cached_and_failed_runs_each_end_with_the_buttons_back(tmp_path: Path) -> None:
    """Clicks from another thread (as ipykernel 7 takes them on a subshell thread), the work
    handed to the loop, each run's end shown there: status, bar, buttons, history."""
    notebook = write_pipeline(tmp_path)
    seen: list[dict[str, Any]] = []

    async def click_and_settle(panel: MlnbPanel) -> dict[str, Any]:
        clicker = threading.Thread(target=panel.run_button.click, name="subshell-like")
        clicker.start()
        clicker.join()
        await asyncio.sleep(0.01)
        assert panel.busy and panel.run_button.disabled
        await panel.settled(120)
        shown = {
            "status": panel.status.value,
            "buttons": [panel.run_button.disabled, panel.build_button.disabled],
            "bar": [panel.bar.value, panel.bar.max, panel.bar.bar_style],
            "history": panel.history.value,
            "error": panel.error.value,
            "run_id": panel.state.run_id,
        }
        seen.append(shown)
        return shown

    async def main() -> None:
        panel = MlnbPanel(notebook, store=str(tmp_path / "store"))
        assert "<td style='padding:2px 8px'>3</td>" in panel.stages.value  # cells 1-based
        normal = await click_and_settle(panel)
        cached = await click_and_settle(panel)
        panel.inputs["scale"].value = -1.0  # math.sqrt(-1): the data stage raises
        failed = await click_and_settle(panel)
        for shown in (normal, cached, failed):
            assert shown["buttons"] == [False, False], shown
            assert shown["run_id"] in shown["history"], shown
        assert normal["status"].startswith(f"run {normal['run_id']} succeeded in ")
        assert normal["status"].endswith("(2 ran)") and normal["bar"] == [2, 2, "success"]
        assert cached["status"].endswith("(2 cached)") and cached["bar"] == [2, 2, "success"]
        assert failed["status"].startswith(f"run {failed['run_id']} failed in ")
        assert failed["bar"][2] == "danger"
        assert "stage &#39;data&#39;, cell 3" in failed["error"], failed["error"]
        assert "ValueError" in failed["error"] and "math domain error" in failed["error"]

    asyncio.run(main())
    assert len(seen) == 3


def test_a_value_mlnb_run_would_not_take_is_said_and_nothing_starts(tmp_path: Path) -> None:
    cells = [
        code_cell("limit = None", tags=("parameters",)),
        code_cell("values = [limit]", tags=("mlnb:data",)),
    ]
    notebook = tmp_path / "none.ipynb"
    notebook.write_text(json.dumps(notebook_json(cells)))

    async def main() -> None:
        panel = MlnbPanel(notebook, store=str(tmp_path / "store"))
        panel.inputs["limit"].value = "nan"  # typed as -p types it: a float NaN
        assert panel.start_run() is None
        assert not panel.busy and not panel.run_button.disabled
        assert "expects None, a finite number, a boolean or a string, got NaN" in panel.error.value
        assert not (tmp_path / "store").exists() or not list((tmp_path / "store").rglob("run.json"))

    asyncio.run(main())
