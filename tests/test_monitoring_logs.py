"""The monitoring logs a worker writes, as other tools and ``mlnb monitor`` read them.

A worker's monitor (a thread, :class:`mlnb.monitoring.live.LiveMonitor`) without a server
around it: Arrow segments, what pandas and pyarrow read back, rotation, a torn tail, a dead
worker's partial segment, backpressure and shutdown, the streamed summary and the export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from mlnb.monitoring import live, segments
from mlnb.monitoring.alerts import MonitorSettings
from mlnb.reporting.logs import open_monitor_folder
from mlnb.reporting.summary import summarise
from mlnb.run.profile import column_profile
from mlnb.serving.info import ServiceInfo

RNG = np.random.default_rng(0)
FLOATS = ["a", "b"]


@pytest.fixture(autouse=True)
def prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multiprocess metrics folder, as BentoML gives its workers."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))


def float_info(folder: Path, training: pd.DataFrame) -> ServiceInfo:
    return ServiceInfo(
        bento_name="tiny",
        bento_version="v1",
        run_id="r1",
        monitor_dir=folder,
        task="classification",
        classes=["no", "yes"],
        features=[{"name": n, "dtype": "float64", "kind": "float"} for n in training.columns],
        profile={n: column_profile(training[n]) for n in training.columns},
        prediction_profile={"kind": "categorical", "frequencies": {"no": 0.5, "yes": 0.5}},
    )


def training_frame(rows: int = 2000) -> pd.DataFrame:
    return pd.DataFrame({"a": RNG.normal(size=rows), "b": RNG.lognormal(size=rows)})


def answer_of(frame: pd.DataFrame) -> dict:
    """What the breast cancer serve code answers: a dict per row."""
    return {
        "predictions": [
            {"diagnosis": "yes" if x > 0 else "no", "probability": 0.5} for x in frame["a"]
        ]
    }


def complete_segments(folder: Path) -> list[Path]:
    return [p for p in segments.segments(folder) if not segments.is_partial(p)]


def test_answered_rows_read_back_exactly_with_pyarrow_and_pandas(tmp_path: Path) -> None:
    training = training_frame()
    monitor = live.LiveMonitor(float_info(tmp_path / "logs", training), MonitorSettings())
    sent = [training.iloc[i : i + 1 + i % 7].reset_index(drop=True) for i in range(0, 700, 7)]
    for frame in sent:
        monitor.answer(frame, answer_of(frame))
    monitor.stop()
    folder = tmp_path / "logs" / "predictions"
    assert not [p for p in segments.segments(folder) if segments.is_partial(p)]
    table = ds.dataset(folder, format="arrow").to_table()  # the folder as it is
    logged = table.to_pandas()
    expected = pd.concat(sent, ignore_index=True)
    assert len(logged) == len(expected)
    pd.testing.assert_frame_equal(logged[FLOATS], expected[FLOATS])  # every float, bit for bit
    assert list(logged["prediction"]) == ["yes" if x > 0 else "no" for x in expected["a"]]
    sizes = logged.groupby("request_id", sort=False).size().tolist()
    assert sizes == [len(f) for f in sent]  # one id per request, its rows together
    assert str(logged["time"].dtype) == "datetime64[us, UTC]"
    one = pd.read_feather(complete_segments(folder)[0])  # pandas reads a segment directly
    assert list(one.columns) == ["time", "request_id", "a", "b", "prediction"]
    import duckdb
    import polars

    dataset = ds.dataset(folder, format="arrow")  # noqa: F841 - DuckDB finds it by name
    (counted,) = duckdb.sql("SELECT count(*), sum(a) FROM dataset").fetchall()
    assert counted[0] == len(expected)
    assert counted[1] == pytest.approx(expected["a"].sum())
    scanned = polars.scan_ipc(str(folder / "*.arrow")).select(polars.col("b").sum()).collect()
    assert scanned.item() == pytest.approx(expected["b"].sum())


def test_columns_of_every_kind_keep_their_types(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-03-01 12:30", None, "2024-03-02 00:00"]),
            "took": pd.to_timedelta(["1h", "2s", None]),
            "colour": pd.Categorical(["red", None, "blue"]),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "name": ['a "quoted", comma', "é ü", None],
            "x": [0.5, np.nan, 1e308],
        }
    )
    features = [
        {"name": "when", "dtype": "datetime64[ns]", "kind": "datetime"},
        {"name": "took", "dtype": "timedelta64[ns]", "kind": "timedelta"},
        {"name": "colour", "dtype": "category", "kind": "category"},
        {"name": "count", "dtype": "Int64", "kind": "int"},
        {"name": "flag", "dtype": "bool", "kind": "bool"},
        {"name": "name", "dtype": "object", "kind": "string"},
        {"name": "x", "dtype": "float64", "kind": "float"},
    ]
    info = ServiceInfo(
        "tiny", "v1", "r1", tmp_path / "logs", "regression", None, features, profile=None
    )
    monitor = live.LiveMonitor(info, MonitorSettings())
    monitor.answer(frame, {"predictions": [1.5, None, 2.5]})
    monitor.answer(frame.iloc[:1], {"predictions": [float("nan")]})
    monitor.stop()
    logged = ds.dataset(tmp_path / "logs" / "predictions", format="arrow").to_table()
    types = {f.name: str(f.type) for f in logged.schema}
    assert types["when"] == "timestamp[us]" and types["took"] == "duration[us]"
    assert types["count"] == "int64" and types["flag"] == "bool" and types["colour"] == "string"
    rows = logged.to_pylist()
    assert rows[1]["when"] is None and rows[2]["took"] is None and rows[1]["colour"] is None
    assert rows[1]["count"] is None and rows[2]["count"] == 3
    assert rows[0]["name"] == 'a "quoted", comma' and rows[1]["name"] == "é ü"
    assert [r["prediction"] for r in rows[:3]] == [1.5, None, 2.5]
    lines = subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", "export", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    exported = [json.loads(line, parse_constant=lambda c: pytest.fail(c)) for line in lines]
    assert len(exported) == 4 and list(exported[0])[:2] == ["timestamp", "request_id"]
    assert exported[0]["took"] == 3600.0 and exported[1]["x"] is None  # NaN as null
    assert exported[0]["when"].startswith("2024-03-01T12:30")


def test_segments_rotate_and_a_reader_sees_whole_batches_of_the_open_one(tmp_path: Path) -> None:
    schema = pa.schema([("v", pa.int64())])
    writer = segments.SegmentWriter(tmp_path, schema, rotate_seconds=10.0)
    for second in range(25):  # three intervals of ten seconds
        writer.write(pa.record_batch([pa.array([second])], schema=schema), now=1e9 + second)
    found = segments.segments(tmp_path)
    assert [segments.is_partial(p) for p in found] == [False, False, True]
    read = [v for p in found for b in segments.read_segment(p) for v in b["v"].to_pylist()]
    assert read == list(range(25))  # the open segment's batches too
    partial = found[-1]
    data = partial.read_bytes()
    partial.write_bytes(data[:-7])  # a batch torn in the middle of its write
    torn = [v for b in segments.read_segment(partial) for v in b["v"].to_pylist()]
    assert torn == list(range(20, 24))
    writer.close()


def test_a_dead_workers_partial_segment_is_sealed_by_the_next_worker(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    schema = pa.schema([("v", pa.int64())])
    writer = segments.SegmentWriter(tmp_path, schema, worker=pid)
    writer.write(pa.record_batch([pa.array([1, 2])], schema=schema))
    writer.write(pa.record_batch([pa.array([3])], schema=schema))
    writer._file.close()  # the worker was killed: no footer, no rename
    assert segments.is_partial(segments.segments(tmp_path)[0])
    segments.SegmentWriter(tmp_path, schema)  # the next worker starts
    (sealed,) = segments.segments(tmp_path)
    assert not segments.is_partial(sealed)
    assert pd.read_feather(sealed)["v"].tolist() == [1, 2, 3]


def test_answering_waits_for_logs_that_are_far_behind_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "MAX_BACKLOG_ROWS", 2_000)
    training = training_frame()
    monitor = live.LiveMonitor(float_info(tmp_path / "logs", training), MonitorSettings())
    disk = threading.Event()  # a disk that stops answering
    writer = monitor._predictions
    original = writer.write

    def slow_write(batch: pa.RecordBatch, now: float | None = None) -> None:
        disk.wait(30)
        original(batch, now)

    monkeypatch.setattr(writer, "write", slow_write)
    frame = training.iloc[:500].reset_index(drop=True)
    answer = answer_of(frame)
    answering = threading.Thread(target=lambda: [monitor.answer(frame, answer) for _ in range(40)])
    answering.start()
    answering.join(3.0)
    assert answering.is_alive()  # held, not piling up 20,000 rows in the worker
    assert monitor._queued_rows - monitor._logged_rows <= 2_000 + 2 * 500
    disk.set()
    answering.join(30.0)
    assert not answering.is_alive()
    monitor.stop()
    logged = ds.dataset(tmp_path / "logs" / "predictions", format="arrow").count_rows()
    assert logged == 40 * 500  # every answered row, none dropped


def test_rows_answered_right_before_stop_are_all_in_complete_segments(tmp_path: Path) -> None:
    training = training_frame()
    monitor = live.LiveMonitor(float_info(tmp_path / "logs", training), MonitorSettings())
    frame = training.iloc[:3].reset_index(drop=True)
    for _ in range(333):
        monitor.answer(frame, answer_of(frame))
    monitor.stop()  # within the flush interval of the last answer
    monitor.stop()  # BentoML's on_shutdown, then atexit: the second does nothing
    folder = tmp_path / "logs" / "predictions"
    assert len(complete_segments(folder)) == len(segments.segments(folder)) == 1
    assert ds.dataset(folder, format="arrow").count_rows() == 999


def test_summary_and_drift_over_time_from_a_log_of_many_segments(tmp_path: Path) -> None:
    training = training_frame(5000)
    info = float_info(tmp_path / "logs", training)
    monitor = live.LiveMonitor(info, MonitorSettings(rotate_seconds=0.0))  # a segment a flush
    live_rows = training.sample(3000, replace=True, random_state=1).reset_index(drop=True)
    live_rows.loc[1500:, "b"] *= 3.0  # the second half drifts
    for start in range(0, 3000, 10):
        frame = live_rows.iloc[start : start + 10].reset_index(drop=True)
        monitor.answer(frame, answer_of(frame))
        if start % 500 == 490:
            monitor.flush()  # six segments, in time order
            time.sleep(0.05)
    monitor.stop()
    assert len(segments.segments(tmp_path / "logs" / "predictions")) >= 6
    summary = summarise(open_monitor_folder(tmp_path / "logs"), periods=3)
    assert summary.rows_logged == 3000 and summary.requests == 300
    assert summary.window_rows == 1000  # the newest thousand rows: all drifted
    assert summary.drifted_features == ["b"]
    over_time = summary.drift_over_time
    assert len(over_time) == 3 and all(p["rows"] >= 200 for p in over_time)
    assert over_time[0]["psi"]["b"] < 0.1 < 0.2 < over_time[-1]["psi"]["b"]
    assert over_time[0]["start"] < over_time[-1]["end"]


def test_a_folder_of_an_older_mlnb_json_lines_is_summarised(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    data = folder / "predictions" / "data"
    data.mkdir(parents=True)
    training = training_frame()
    profile = {n: column_profile(training[n]) for n in training.columns}
    (folder / "reference.json").write_text(
        json.dumps({"bento": "old:v0", "features": profile, "window": 1000})
    )
    lines = []
    for i, (a, b) in enumerate(training.to_numpy()[:400]):
        moment = f"2026-01-01T00:00:{i // 100:02d}.{i % 100:06d}+00:00"
        record = {"timestamp": moment, "mlnb_request": f"7-{i // 4}", "a": a, "b": b}
        lines.append(json.dumps({**record, "prediction": "no"}))
    (data / "data.1.log").write_text("\n".join([*lines, "{torn"]) + "\n")
    summary = summarise(open_monitor_folder(folder))
    assert summary.rows_logged == 400 and summary.requests == 100
    assert summary.unreadable_lines == 1
    assert summary.drifted_features == [] and summary.first is not None


@pytest.mark.slow
def test_mlnb_monitor_memory_does_not_grow_with_the_log(tmp_path: Path) -> None:
    """A 520 MB log (2.2 million rows of 30 floats) is summarised within 300 MB."""
    names = [f"f{i}" for i in range(30)]
    training = pd.DataFrame(RNG.normal(size=(2000, 30)), columns=names)
    info = float_info(tmp_path / "logs", training)
    live.write_reference(info, MonitorSettings())
    schema = pa.schema(
        [("time", pa.timestamp("us", tz="UTC")), ("request_id", pa.string())]
        + [(n, pa.float64()) for n in names]
        + [("prediction", pa.string())]
    )
    writer = segments.SegmentWriter(tmp_path / "logs" / "predictions", schema)
    rows = 100_000
    for part in range(22):
        matrix = RNG.normal(size=(30, rows))
        batch = pa.record_batch(
            [
                pa.array(np.arange(rows) + part * rows + 1_700_000_000_000_000).cast(
                    schema.field("time").type
                ),
                pa.array([f"1-{part}-{i // 8}" for i in range(rows)]),
                *(pa.array(column) for column in matrix),
                pa.array(["yes", "no"] * (rows // 2)),
            ],
            schema=schema,
        )
        writer.write(batch)
    writer.close()
    size = sum(p.stat().st_size for p in (tmp_path / "logs" / "predictions").iterdir())
    assert size > 500e6
    # VmHWM is this process's own peak; ru_maxrss would also count the pytest process it
    # was forked from (Linux keeps the larger of the two across exec).
    code = (
        "import runpy, sys; sys.argv = ['mlnb', 'monitor', sys.argv[1], '--json']\n"
        "try: runpy.run_module('mlnb', run_name='__main__')\nexcept SystemExit: pass\n"
        "print(open('/proc/self/status').read(), file=sys.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    summary = json.loads(result.stdout)
    assert summary["rows_logged"] == 22 * rows
    (peak,) = [line for line in result.stderr.splitlines() if line.startswith("VmHWM:")]
    peak_mb = int(peak.split()[1]) / 1024
    print(f"mlnb monitor: {size / 1e6:.0f} MB log, peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 300, f"mlnb monitor peaked at {peak_mb:.0f} MB"
