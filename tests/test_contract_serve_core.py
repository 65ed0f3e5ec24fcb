"""The data contract's soft rules at serve time, without a server: counting, windows, alerts,
the worker's monitor and ``mlnb monitor`` on its folder."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlnb.monitoring import live
from mlnb.monitoring.alerts import ContractAlerts, MonitorSettings, breaking
from mlnb.monitoring.contract_rules import (
    ContractCounter,
    FeatureRules,
    WindowVerdict,
    compile_rules,
    violation_masks,
)
from mlnb.reporting.logs import open_monitor_folder
from mlnb.reporting.reference import reference_problem
from mlnb.reporting.summary import summarise
from mlnb.serving.info import ServiceInfo

CONTRACT = {
    "version": 1,
    "contract": "demo.contract.yaml",
    "sha256": "0" * 64,
    "features": {
        "x": {"min": 0.0, "max": 10.0, "null_share": 0.05},
        "n": {"min": 1, "max": 5, "null_share": 0.0},
        "colour": {"categories": ["red", "green"], "null_share": 0.2},
        "when": {"min": "2020-01-01T00:00:00", "max": "2021-06-30T00:00:00", "null_share": 0.0},
        "zoned": {"max": "2021-01-01T00:00:00+01:00", "null_share": 0.0},
    },
}
FEATURES = [
    {"name": "x", "dtype": "float64", "kind": "float", "nullable": True},
    {"name": "n", "dtype": "int64", "kind": "int", "nullable": False},
    {"name": "colour", "dtype": "object", "kind": "string", "nullable": True},
    {"name": "when", "dtype": "datetime64[ns]", "kind": "datetime", "nullable": True},
    {"name": "zoned", "dtype": "datetime64[ns, UTC]", "kind": "datetime", "nullable": False},
]


def rules_of(name: str) -> FeatureRules:
    return next(r for r in compile_rules(CONTRACT, FEATURES) if r.name == name)


def counts(rules: FeatureRules, values: object) -> dict[str, int]:
    return {rule: int(mask.sum()) for rule, mask in violation_masks(rules, values).items()}


def test_rules_compile_for_each_kind_and_leave_out_what_cannot_be_broken() -> None:
    compiled = {r.name: r for r in compile_rules(CONTRACT, FEATURES)}
    assert compiled["x"].rules == ("range", "null_share")
    # a null share of 0 on a field the request schema refuses missing values in: no rule
    assert compiled["n"].rules == ("range",) and compiled["zoned"].rules == ("range",)
    assert compiled["colour"].rules == ("category", "null_share")
    assert compiled["when"].low == 1577836800 * 10**6  # an instant, in microseconds
    assert compiled["zoned"].high == (1609459200 - 3600) * 10**6  # its offset applied
    assert compile_rules(None, FEATURES) == [] and compile_rules({}, FEATURES) == []
    odd = {"features": {"x": {"min": "low", "max": float("nan"), "null_share": 2.0}}}
    assert compile_rules(odd, FEATURES) == []  # nothing that fits: left out, not guessed


def test_range_counts_values_outside_and_never_a_missing_one() -> None:
    rules = rules_of("x")
    values = np.array([-0.1, 0.0, 5.0, 10.0, 10.5, np.nan, np.inf, -np.inf])
    assert counts(rules, values) == {"range": 4, "null_share": 1}
    as_arrow = pa.array([-0.1, 0.0, None, 10.5, float("nan")])  # the log read back
    assert counts(rules, as_arrow) == {"range": 2, "null_share": 2}
    chunked = pa.chunked_array([pa.array([-1.0, 1.0]), pa.array([11.0])])
    assert counts(rules, chunked) == {"range": 2, "null_share": 0}
    assert counts(rules_of("n"), pa.array([0, 1, 5, 6, None], type=pa.int64())) == {"range": 2}
    only_max = FeatureRules("m", "float", high=1.0)
    assert counts(only_max, np.array([-1e9, 2.0])) == {"range": 1}


def test_datetimes_are_compared_as_instants_in_the_columns_unit() -> None:
    when = pa.array(
        np.array(["2019-12-31T23:59:59", "2020-01-01", "2021-06-30", "2021-07-01", "NaT"]).astype(
            "datetime64[us]"
        )
    )
    assert counts(rules_of("when"), when) == {"range": 2, "null_share": 1}
    in_ns = when.cast(pa.timestamp("ns"))
    assert counts(rules_of("when"), in_ns) == {"range": 2, "null_share": 1}
    zoned = pa.array(
        pd.to_datetime(["2020-12-31T22:59:59Z", "2020-12-31T23:00:01Z"]), pa.timestamp("us", "UTC")
    )
    assert counts(rules_of("zoned"), zoned) == {"range": 1}


def test_categories_count_present_values_outside_them() -> None:
    colour = rules_of("colour")
    values = pa.array(["red", "blue", None, "green", "Red", ""])
    assert counts(colour, values) == {"category": 3, "null_share": 1}
    numbers = FeatureRules("k", "int", categories=(1, 2))
    assert counts(numbers, pa.array([1, 3, None], pa.int64())) == {"category": 1}
    assert counts(numbers, np.array([1.0, 2.5, np.nan])) == {"category": 1}
    text_only = FeatureRules("k", "int", categories=("a",))  # no value of the column is one
    assert counts(text_only, pa.array([1, None], pa.int64())) == {"category": 1}


def test_an_empty_batch_counts_nothing_and_keeps_the_window() -> None:
    counter = ContractCounter(compile_rules(CONTRACT, FEATURES), window=4)
    counter.add({"x": np.array([np.nan, np.nan])}, 2)
    empty = counter.add({"x": np.zeros(0)}, 0)
    assert empty.violations == {} and empty.windows == [] and counter.filled == 2
    assert counter.add({}, 0).windows == []


def test_a_feature_the_batch_lacks_counts_as_missing() -> None:
    counter = ContractCounter([rules_of("x")], window=3)
    checked = counter.add({}, 3)
    assert checked.windows[0].missing == {"x": 3}
    assert checked.violations == {("x", "null_share"): 1}


def test_null_share_breaks_only_beyond_three_standard_errors_of_the_limit() -> None:
    window = 1000
    limit = 1000 * 0.05 + 3 * math.sqrt(1000 * 0.05 * 0.95)  # 70.7 missing values
    for missing, broken in ((50, 0), (70, 0), (71, 1), (1000, 1)):
        counter = ContractCounter([rules_of("x")], window)
        values = np.ones(window)
        values[:missing] = np.nan
        verdict = counter.add({"x": values}, window).windows[0]
        assert verdict.violations[("x", "null_share")] == broken, (missing, limit)
    none_allowed = FeatureRules("y", "float", null_share=0.0)
    one = np.ones(window)
    one[7] = np.nan
    assert ContractCounter([none_allowed], window).add({"y": one}, window).violations == {
        ("y", "null_share"): 1
    }
    anything = FeatureRules("y", "float", null_share=1.0)
    assert anything.rules == ()  # a limit of 1: nothing to count


def naive(rules: list[FeatureRules], batches: list[np.ndarray], window: int):
    """Row by row, window by window: the reference the vectorised counter must agree with."""
    rows = np.concatenate(batches) if batches else np.zeros(0)
    totals: dict[tuple[str, str], int] = {}
    verdicts = []
    for rule in rules:
        for name in rule.rules:
            totals[(rule.name, name)] = 0
    for value in rows.tolist():
        for rule in rules:
            if value == value and not rule.low <= value <= rule.high:  # type: ignore[operator]
                totals[(rule.name, "range")] += 1
    for start in range(0, len(rows) - window + 1, window):
        part = rows[start : start + window]
        verdict = {}
        for rule in rules:
            verdict[(rule.name, "range")] = int(
                sum(1 for v in part if v == v and not rule.low <= v <= rule.high)  # type: ignore[operator]
            )
            missing = int(np.isnan(part).sum())
            broken = int(missing > rule.null_limit(window))
            verdict[(rule.name, "null_share")] = broken
            totals[(rule.name, "null_share")] += broken
        verdicts.append(verdict)
    return totals, verdicts


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), max_size=12),
    window=st.integers(1, 25),
    share=st.sampled_from([0.0, 0.1, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_any_split_into_batches_counts_as_row_by_row(
    sizes: list[int], window: int, share: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rules = [
        FeatureRules("x", "float", low=-1.0, high=1.0, null_share=share),
        FeatureRules("y", "float", low=0.0, high=0.5, null_share=0.2),
    ]
    batches = []
    for size in sizes:
        values = rng.normal(size=size)
        values[rng.random(size) < 0.2] = np.nan
        batches.append(values)
    counter = ContractCounter(rules, window)
    verdicts = []
    for values in batches:
        checked = counter.add({"x": values, "y": values}, len(values))
        verdicts.extend(w.violations for w in checked.windows)
        assert all(w.rows == window for w in checked.windows)
    totals, expected = naive(rules, batches, window)
    assert counter.totals == totals
    assert verdicts == expected


def test_an_alert_says_when_a_rule_starts_breaking_once_and_again_after_it_stopped() -> None:
    bad = WindowVerdict(100, {("x", "range"): 6, ("x", "null_share"): 0}, {"x": 2})
    fine = WindowVerdict(100, {("x", "range"): 5, ("x", "null_share"): 0}, {"x": 2})
    nulls = WindowVerdict(100, {("x", "range"): 0, ("x", "null_share"): 1}, {"x": 40})
    assert [a["rule"] for a in breaking(bad, 0.05)] == ["range"]
    assert breaking(fine, 0.05) == []  # 5 % is not more than 5 %
    assert breaking(nulls, 0.05) == [
        {"feature": "x", "rule": "null_share", "rows": 100, "missing": 40}
    ]
    Receiver.received.clear()
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        alerts = ContractAlerts("demo:v1", f"http://127.0.0.1:{hook.server_address[1]}/", 0.05)
        alerts.update([bad, bad, fine, bad])
        deadline = time.monotonic() + 10
        while len(Receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        hook.shutdown()
        hook.server_close()
    assert len(Receiver.received) == 2  # started, stopped, started again
    assert Receiver.received[0] == {
        "bento": "demo:v1",
        "alert": "contract",
        "feature": "x",
        "rule": "range",
        "rows": 100,
        "violations": 6,
        "share": 0.06,
        "threshold": 0.05,
    }


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A multiprocess metrics folder, as BentoML gives its workers."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))


def info_of(folder: Path, contract: dict | None) -> ServiceInfo:
    return ServiceInfo(
        "demo", "v1", "r1", folder, "regression", None, FEATURES, None, None, contract
    )


def frame_of(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 11, rows)
    x[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "n": rng.integers(0, 7, rows),
            "colour": rng.choice(np.array(["red", "green", "blue", None], dtype=object), rows),
            "when": pd.to_datetime("2019-06-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D"),
            "zoned": pd.to_datetime("2020-12-01", utc=True)
            + pd.to_timedelta(rng.integers(0, 60, rows), "D"),
        }
    )


def expected_counts(frame: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {
        ("x", "range"): int(((frame["x"] < 0) | (frame["x"] > 10)).sum()),
        ("n", "range"): int(((frame["n"] < 1) | (frame["n"] > 5)).sum()),
        ("colour", "category"): int((frame["colour"] == "blue").sum()),
        ("when", "range"): int(
            ((frame["when"] < "2020-01-01") | (frame["when"] > "2021-06-30")).sum()
        ),
        ("zoned", "range"): int((frame["zoned"] > pd.Timestamp("2020-12-31T23:00Z")).sum()),
    }


@pytest.mark.usefixtures("prometheus")
def test_the_monitor_counts_answered_rows_and_mlnb_monitor_counts_the_same(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "logs"
    settings_ = MonitorSettings(contract_window=100)
    monitor = live.LiveMonitor(info_of(folder, CONTRACT), settings_)
    sent = [frame_of(13 + i % 5, seed=i) for i in range(40)]
    for frame in sent:
        monitor.answer(frame, {"predictions": [1.0] * len(frame)})
    monitor.stop()
    whole = pd.concat(sent, ignore_index=True)
    expected = expected_counts(whole)
    totals = monitor.contract.totals
    assert {k: v for k, v in totals.items() if k[1] != "null_share"} == expected
    series = monitor.metrics.violations
    version = monitor.metrics.version  # every mlnb_* series carries the Bento and its version
    assert version == "v1" and monitor.metrics.service == "demo"
    counted = series.labels(
        feature="x", rule="range", service_name="demo", version=version
    )._value.get()
    assert counted == expected[("x", "range")]
    summary = summarise(open_monitor_folder(folder))
    assert summary.contract is not None
    found = summary.to_json()["contract"]
    assert found["contract"] == "demo.contract.yaml" and found["window"] == 100
    assert found["rows"] == len(whole) and found["windows"] == len(whole) // 100
    for (feature, rule), count in totals.items():
        assert found["violations"][feature][rule] == count, (feature, rule)
    assert {(a["feature"], a["rule"]) for a in found["alerting"]} >= {("colour", "category")}
    reference = json.loads((folder / "reference.json").read_text())
    assert reference_problem(reference) is None and reference["contract"] == CONTRACT


@pytest.mark.usefixtures("prometheus")
def test_a_service_without_contract_rules_monitors_as_before(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    monitor = live.LiveMonitor(info_of(folder, None), MonitorSettings())
    frame = frame_of(20, seed=1)
    monitor.answer(frame, {"predictions": [1.0] * 20})
    monitor.stop()
    assert monitor.contract.rules == []
    summary = summarise(open_monitor_folder(folder))
    assert summary.rows_logged == 20 and summary.to_json()["contract"] is None
    from mlnb.cli.monitor import render_text

    assert "no data contract checks" in render_text(summary, str(folder))


def test_a_reference_with_a_malformed_contract_is_named() -> None:
    assert "'contract'" in str(reference_problem({"contract": ["x"]}))
    assert "'contract'" in str(reference_problem({"contract": {"features": {"x": 1}}}))
    assert "'contract_window'" in str(reference_problem({"contract_window": 0.5}))
    assert reference_problem({"contract": None}) is None


CONTRACT_YAML = """\
mlnb_contract: 1
stages:
  load:
    X_train:
      type: DataFrame
      rows: [10, 40]
      null_share: {{x: 0.05}}
      warn: [rows]
      schema:
        schema_type: dataframe
        api: pandas
        columns:
          x: {{dtype: float64, nullable: true, greater_than_or_equal_to: 0.0,
              less_than_or_equal_to: {high}}}
          colour: {{dtype: object, isin: [green, red]}}
"""


def build_inputs(tmp_path: Path, text: str | None):
    from mlnb.bento.inputs import BuildInputs
    from mlnb.run.outputs import write_object
    from mlnb.store import Store

    store = Store(tmp_path / ".mlnb")
    run: dict = {
        "run_id": "r1",
        "training_data": {"columns": ["x", "colour"], "variable": "X_train"},
    }
    if text is not None:
        sha, relative = write_object(store.root, lambda handle: handle.write(text.encode()))
        run["contract"] = {
            "file": str(tmp_path / "demo.contract.yaml"),
            "sha256": sha,
            "object": {"path": relative, "sha256": sha},
        }
    return BuildInputs(store, run, None, False)  # type: ignore[arg-type]


def test_the_build_takes_the_runs_stored_contract_and_its_rules_make_the_version(
    tmp_path: Path,
) -> None:
    from mlnb.bento.context import serve_contract
    from mlnb.bento.version import content_version

    said: list[str] = []
    rules = serve_contract(build_inputs(tmp_path, CONTRACT_YAML.format(high=10.0)), said.append)
    assert rules is not None and rules["contract"] == "demo.contract.yaml"
    assert rules["features"] == {
        "x": {"min": 0.0, "max": 10.0, "null_share": 0.05},
        "colour": {"categories": ["green", "red"], "null_share": 0.0},
    }
    assert said == [
        "data contract demo.contract.yaml: 2 of 2 input columns checked at serve time "
        "(counted, never refused)"
    ]
    edited = serve_contract(build_inputs(tmp_path, CONTRACT_YAML.format(high=12.0)), said.append)
    assert content_version(contract=rules) != content_version(contract=edited)
    assert serve_contract(build_inputs(tmp_path, None), said.append) is None
    assert said[-1] == "no data contract in the run: the service counts no contract violations"


def test_a_damaged_contract_object_stops_the_build_naming_it(tmp_path: Path) -> None:
    from mlnb.bento.context import serve_contract
    from mlnb.errors import MlnbError

    inputs = build_inputs(tmp_path, CONTRACT_YAML.format(high=10.0))
    stored = inputs.store.resolve(inputs.run["contract"]["object"]["path"])
    stored.chmod(0o644)
    stored.write_text(stored.read_text().replace("10.0", "99.0"))
    with pytest.raises(MlnbError, match="the data contract of run r1"):
        serve_contract(inputs, lambda message: None)


@pytest.mark.usefixtures("prometheus")
def test_the_reports_contract_section_escapes_what_came_from_requests(tmp_path: Path) -> None:
    from mlnb.reporting.report import render_report

    name = "<script>alert(1)</script>"
    contract = {"contract": "<b>c</b>.yaml", "features": {name: {"min": 0.0, "max": 1.0}}}
    features = [{"name": name, "dtype": "float64", "kind": "float", "nullable": False}]
    info = ServiceInfo(
        "demo", "v1", "r1", tmp_path / "logs", "regression", None, features, None, None, contract
    )
    monitor = live.LiveMonitor(info, MonitorSettings(contract_window=2))
    frame = pd.DataFrame({name: [5.0, 0.5, 7.0]})
    monitor.answer(frame, {"predictions": [1.0, 2.0, 3.0]})
    monitor.stop()
    logs = open_monitor_folder(tmp_path / "logs")
    page = render_report(logs, summarise(logs))
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;c" in page
    assert "2 violation(s) over 3 rows" in page
