"""What the recorder writes and keeps: JSON lines (bentoml.monitor), timestamps, the window."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

from mlnb.monitoring.jsonlines import JsonLinesMonitor, json_fragments
from mlnb.monitoring.recorder import iso_times
from mlnb.monitoring.window import RecentRows

AWKWARD_FLOATS = [1e-05, 1e20, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, 100.0, -7.25]


def read_lines(folder: Path, name: str) -> list[dict]:
    files = sorted((folder / name / "data").glob("data.*.log"))
    return [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in the log"))
        for path in files
        for line in path.read_text().splitlines()
    ]


def test_columns_logged_with_bentoml_monitor_read_back_exactly(tmp_path: Path) -> None:
    import bentoml

    floats = np.array(AWKWARD_FLOATS)
    columns = {
        "x": floats,  # a numpy column, encoded whole
        "n": np.arange(len(floats)) - 3,
        "flag": np.array([True, False] * 4 + [True]),
        "text": ['a "quoted", comma', "é ü", "", "x", "y", "z", "\n", "\\", "}"],
        "mixed": [None, 1, 2.5, "s", np.float32(0.5), True, {"k": 1}, [1, 2], "t"],
    }
    options = {"log_path": str(tmp_path)}
    with bentoml.monitor("demo", monitor_class=JsonLinesMonitor, monitor_options=options) as mon:
        for name, values in columns.items():
            mon.log_batch(values, name, "feature", "numerical")
    rows = read_lines(tmp_path, "demo")
    assert [row["x"] for row in rows] == AWKWARD_FLOATS
    assert [row["n"] for row in rows] == list(range(-3, 6))
    assert [row["text"] for row in rows] == columns["text"]
    assert [row["mixed"] for row in rows] == [None, 1, 2.5, "s", 0.5, True, {"k": 1}, [1, 2], "t"]
    assert rows[0]["flag"] is True and list(rows[0]) == list(columns)
    schema = json.loads((tmp_path / "demo" / "schema").glob("schema.*.log").__next__().read_text())
    assert [column["name"] for column in schema["columns"]] == list(columns)


def test_nan_and_infinity_are_written_as_null_never_bare(tmp_path: Path) -> None:
    import bentoml

    options = {"log_path": str(tmp_path)}
    with bentoml.monitor("nan", monitor_class=JsonLinesMonitor, monitor_options=options) as mon:
        mon.log_batch(np.array([1.0, np.nan, np.inf]), "a", "feature", "numerical")
        mon.log_batch([float("nan"), 2.0, float("-inf")], "b", "feature", "numerical")
        mon.log_batch(["x", float("nan"), None], "c", "feature", "categorical")
    rows = read_lines(tmp_path, "nan")
    assert [(r["a"], r["b"], r["c"]) for r in rows] == [
        (1.0, None, "x"),
        (None, 2.0, None),
        (None, None, None),
    ]


def test_a_column_logged_in_parts_keeps_every_value_in_order(tmp_path: Path) -> None:
    monitor = JsonLinesMonitor("parts", log_path=str(tmp_path))
    monitor.start_record()
    monitor.log_batch(np.array([1.0, 2.0]), "a", "feature", "numerical")
    monitor.log_batch([3.0], "a", "feature", "numerical")
    monitor.log_batch(np.array([4.0]), "a", "feature", "numerical")
    assert [json.loads(v) for v in json_fragments(monitor._columns["a"])] == [1.0, 2.0, 3.0, 4.0]


def test_timestamps_are_utc_iso_with_microseconds_across_second_boundaries() -> None:
    start = datetime.datetime(2026, 12, 31, 23, 59, 58, tzinfo=datetime.timezone.utc).timestamp()
    times = [start + step * 0.123457 for step in range(40)]  # past midnight into a new year
    times += [start + 0.9999996, start + 0.0000005, start + 0.0000015]  # rounding, half even
    expected = [
        datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="microseconds")
        for t in times
    ]
    assert iso_times(times) == expected
    in_order = iso_times(sorted(times))
    assert sorted(in_order) == in_order  # text order is time order


def test_the_window_keeps_the_last_rows_of_each_feature() -> None:
    window = RecentRows(5)
    window.add(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    window.add(["a", "b"], np.array([[7.0, np.nan], [9.0, 10.0]]))
    window.add(["a", "b"], np.empty((0, 2)))
    assert window.columns() == {"a": [1.0, 3.0, 5.0, 7.0, 9.0], "b": [2.0, 4.0, 6.0, None, 10.0]}
    window.add(["a", "c"], np.array([[11.0, "x"], [13.0, None]], dtype=object))  # schema changed
    columns = window.columns({"a", "c"})
    assert columns == {"a": [5.0, 7.0, 9.0, 11.0, 13.0], "c": ["x", None]}
    for _ in range(100):  # old batches are let go
        window.add(["a", "b"], np.ones((3, 2)))
    assert window.columns()["a"] == [1.0] * 5 and len(window._chunks) <= 3
