"""A worker's monitor and its real recorder process, without a server around them."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlnb.monitoring import live
from mlnb.serving.info import ServiceInfo

pytestmark = pytest.mark.slow
FEATURES = ["a", "b"]


def service_info(folder: Path) -> ServiceInfo:
    numeric = {"kind": "numeric", "histogram": {"edges": [0.0, 0.5, 1.0], "counts": [5, 5]}}
    return ServiceInfo(
        bento_name="tiny",
        bento_version="v1",
        run_id="r1",
        monitor_dir=folder,
        task="classification",
        classes=["no", "yes"],
        features=[{"name": name, "kind": "numeric"} for name in FEATURES],
        profile={name: numeric for name in FEATURES},
    )


def logged_rows(folder: Path) -> list[dict]:
    files = (folder / "predictions" / "data").glob("data.*.log")
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_answering_waits_for_a_recorder_that_is_far_behind_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    (tmp_path / "prometheus").mkdir()
    monkeypatch.setattr(live, "MAX_BACKLOG_ROWS", 2_000)
    monitor = live.LiveMonitor(service_info(tmp_path / "logs"))
    recorder = monitor._recorder
    assert recorder is not None
    frame = pd.DataFrame(np.random.default_rng(0).random((500, 2)), columns=FEATURES)
    answer = {"predictions": ["yes"] * 500}
    try:
        monitor.answer(frame, answer)
        time.sleep(1.0)  # the recorder has started and been sent the first rows
        os.kill(recorder.pid, signal.SIGSTOP)  # a recorder that has fallen far behind
        answering = threading.Thread(
            target=lambda: [monitor.answer(frame, answer) for _ in range(40)]
        )
        answering.start()
        answering.join(3.0)
        assert answering.is_alive()  # held, not piling up 20,000 rows in the worker
        assert monitor._queued_rows - monitor._sent_rows <= 2_000 + 500
    finally:
        os.kill(recorder.pid, signal.SIGCONT)
    answering.join(30.0)
    assert not answering.is_alive()
    monitor.stop()
    assert recorder.returncode == 0
    rows = logged_rows(tmp_path / "logs")
    assert len(rows) == 41 * 500  # every answered row, none dropped
    assert rows[0]["prediction"] == "yes" and set(rows[0]) >= {"a", "b", "mlnb_request"}


def test_a_stop_signal_sent_while_the_recorder_starts_does_not_lose_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BentoML signals a stopping worker's children too, maybe before the recorder is up."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    (tmp_path / "prometheus").mkdir()
    monitor = live.LiveMonitor(service_info(tmp_path / "logs"))
    recorder = monitor._recorder
    assert recorder is not None
    os.kill(recorder.pid, signal.SIGTERM)  # still starting Python: not yet ignoring it
    os.kill(recorder.pid, signal.SIGINT)
    frame = pd.DataFrame(np.random.default_rng(1).random((30, 2)), columns=FEATURES)
    monitor.answer(frame, {"predictions": ["no"] * 30})
    monitor.stop()
    assert recorder.returncode == 0
    assert len(logged_rows(tmp_path / "logs")) == 30
