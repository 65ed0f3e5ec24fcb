"""`mlnb monitor RELEASE`: a release's two versions compared offline, from its monitoring folder.

The folders are written here with the writers the services use: each version's
``reference.json`` by :func:`mlnb.monitoring.live.write_reference`, its predictions by
:class:`PredictionRecords` and :class:`SegmentWriter` (the release's request ids in
``request_id``), and the release's ``traffic/`` and ``feedback/`` logs as Arrow segments of
the shapes the release spec fixes. Every figure is checked against pandas on the same rows.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from mlnb.bento.reference import prediction_profile
from mlnb.monitoring import live
from mlnb.monitoring.alerts import MonitorSettings
from mlnb.monitoring.feedback_log import FEEDBACK_SCHEMA
from mlnb.monitoring.records import (
    REJECTIONS_SCHEMA,
    REQUEST,
    Answered,
    PredictionRecords,
    Rejected,
    rejections_batch,
)
from mlnb.monitoring.segments import SegmentWriter
from mlnb.reporting.feedback_log import live_metrics
from mlnb.reporting.release_report import render_release_report
from mlnb.reporting.release_summary import ReleaseSummary, summarise_release
from mlnb.run.profile import column_profile
from mlnb.serving.info import ServiceInfo
from mlnb.serving.release import traffic_schema

LONG = "petal width (cm) measured at the stem, after the first frost"
HOSTILE = '<img src=x onerror="alert(1)">&amp;'
START = 1_790_000_000.0  # seconds since the epoch: late 2026
TRAFFIC_SCHEMA = traffic_schema()  # what the release's worker writes


@pytest.fixture(autouse=True)
def prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))


# --- writing a release folder ------------------------------------------------------------


@dataclass
class Version:
    info: ServiceInfo
    records: PredictionRecords
    worker: int


def version(root: Path, role: str, task: str, training: pd.DataFrame, predictions: list) -> Version:
    """A version's monitoring folder with its reference.json, as its service writes it."""
    classification = task == "classification"
    features = [{"name": n, "dtype": "float64", "kind": "float"} for n in training.columns]
    info = ServiceInfo(
        bento_name="demo",
        bento_version=f"{role}1",
        run_id=f"run-{role}",
        monitor_dir=root / role,
        task=task,
        classes=["no", "yes"] if classification else None,
        features=features,
        profile={n: column_profile(training[n]) for n in training.columns},
        prediction_profile=prediction_profile(predictions, classification),
    )
    live.write_reference(info, MonitorSettings())
    records = PredictionRecords(features, classification)
    worker = 4000 + len(role)
    records.start(worker)
    return Version(info, records, worker)


def log_predictions(v: Version, requests: list[tuple[str, pd.DataFrame, list]], at: float) -> None:
    """One segment of a version's predictions log: one batch per 50 requests."""
    writer = SegmentWriter(
        Path(v.info.monitor_dir) / "predictions", v.records.schema, worker=v.worker
    )
    for start in range(0, len(requests), 50):
        chunk = requests[start : start + 50]
        answered = [
            Answered(at + (start + i) * 0.01, frame, preds, len(frame))
            for i, (_, frame, preds) in enumerate(chunk)
        ]
        batch = v.records.build(answered).batch
        ids = [rid for rid, frame, _ in chunk for _ in range(len(frame))]
        batch = batch.set_column(1, REQUEST, pa.array(ids, pa.string()))
        writer.write(batch, now=at)
    writer.close()


def log_rows(folder: Path, schema: pa.Schema, rows: list[dict], at: float, worker: int) -> None:
    writer = SegmentWriter(folder, schema, worker=worker)
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    columns["time"] = [round(t * 1e6) for t in columns["time"]]
    arrays = [
        pa.array(columns[f.name], pa.int64()).cast(f.type)
        if f.name == "time"
        else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema), now=at)
    writer.close()


def write_release_files(root: Path, mode: str, task: str, metrics: dict) -> None:
    release = {
        "release": "demo-release:r1",
        "mode": mode,
        "percent": 30.0 if mode == "canary" else None,
        "key": "customer" if mode == "canary" else None,
        "task": task,
        "versions": {
            role: {"tag": f"demo:{role}1", "run_id": f"run-{role}", "metrics": metrics[role]}
            for role in ("primary", "candidate")
        },
        "promote_if": ["agreement>=0.98", "p99<=1.2x"],
        "rollback_if": ["errors>0.05"],
        "after": 500,
    }
    (root / "release.json").write_text(json.dumps(release))
    if mode == "canary":  # still running, no switch yet
        routing = {"answering": "primary", "percent": 30.0, "switch": 0, "time": ""}
        (root / "routing.json").write_text(json.dumps(routing))
        return
    (root / "routing.json").write_text(
        json.dumps(
            {
                "answering": "primary",
                "percent": None,
                "switch": 2,
                "time": "2026-09-21T14:13:35+00:00",
            }
        )
    )
    switches = [
        {
            "time": "2026-09-21T14:13:25+00:00",
            "action": "promote",
            "from": "primary",
            "to": "candidate",
            "by": "auto",
            "why": "agreement>=0.98 and p99<=1.2x after 500 requests",
            "figures": {"agreement": 0.985, "p99_ratio": 1.1},
        },
        {
            "time": "2026-09-21T14:13:35+00:00",
            "action": "rollback",
            "from": "candidate",
            "to": "primary",
            "by": "ana@laptop",
            "why": "live accuracy fell",
            "figures": {"accuracy": 0.81},
        },
    ]
    (root / "switches.jsonl").write_text("".join(json.dumps(s) + "\n" for s in switches))


def requests_of(training: pd.DataFrame, count: int, rng: np.random.Generator, ids: str = "req-"):
    frames = []
    for i in range(count):
        rows = 1 + i % 3
        frame = pd.DataFrame({name: rng.normal(size=rows) for name in training.columns})
        frames.append((f"{ids}{i}", frame))
    return frames


def classify(frame: pd.DataFrame, cut: float) -> list:
    return ["yes" if x > cut else "no" for x in frame["a"]]


def regress(frame: pd.DataFrame, shift: float) -> list:
    return [float(2 * a + b + shift) for a, b in zip(frame["a"], frame[LONG], strict=True)]


def shadow_release(
    root: Path, task: str, *, request_ids: str = "req-", count: int = 400, bad_label: bool = True
) -> Path:
    """A shadow release: the primary answers every request, the candidate shadows most of them
    (some shadow calls fail, some are refused), a few requests are refused by the primary,
    half the requests get labels back, with a correction, an unknown request and a bad row."""
    rng = np.random.default_rng(1 if task == "classification" else 2)
    training = pd.DataFrame({"a": rng.normal(size=3000), LONG: rng.normal(size=3000)})
    shifted = training.assign(a=training["a"] + 1.5)  # the candidate's training data
    classification = task == "classification"

    def predict(frame: pd.DataFrame, role: str) -> list:
        if classification:
            return classify(frame, 0.0 if role == "primary" else 0.15)
        shift = 0.0 if role == "primary" else 0.3
        return regress(frame, shift + (rng.normal(0, 0.05) if role == "candidate" else 0.0))

    primary = version(root, "primary", task, training, predict(training, "primary"))
    candidate = version(root, "candidate", task, shifted, predict(shifted, "candidate"))
    requests = requests_of(training, count, rng, request_ids)
    traffic, answers, shadows, labels = [], [], [], []
    for i, (rid, frame) in enumerate(requests):
        at = START + i * 0.05
        traffic.append(
            {
                "time": at,
                "request_id": rid,
                "version": "primary",
                "role": "answer",
                "status": 200,
                "latency_ms": float(rng.lognormal(1.0, 0.5)),
                "rows": len(frame),
            }
        )
        answers.append((rid, frame, predict(frame, "primary")))
        status, error = 200, None
        if i % 25 == 3:
            status, error = 0, "shadow call timed out"
        elif i % 40 == 7:
            status, error = 500, "candidate failed"
        elif i % 97 == 11:
            status, error = 422, "missing field"
        traffic.append(
            {
                "time": at + 0.01,
                "request_id": rid,
                "version": "candidate",
                "role": "shadow",
                "status": status,
                "latency_ms": float(rng.lognormal(1.4, 0.6)),
                "rows": len(frame),
                "error": error,
            }
        )
        if status == 200:
            shadows.append((rid, frame, predict(frame, "candidate")))
        if i % 2 == 0:
            for row, value in enumerate(frame["a"]):
                truth = value + rng.normal(0, 0.3)
                if classification:
                    labels.append({"label": "yes" if truth > 0.1 else "no", "value": None})
                else:
                    number = float(2 * value + frame[LONG].iloc[row] + rng.normal(0, 0.2))
                    labels.append({"label": repr(number), "value": number})
                labels[-1].update(time=at + 1, request_id=rid, row=row)
    for k in range(5):  # refused by the primary: in the traffic and in its rejections log
        traffic.append(
            {
                "time": START + k,
                "request_id": f"bad-{k}",
                "version": "primary",
                "role": "answer",
                "status": 422,
                "latency_ms": 0.5,
                "rows": 0,
                "error": "missing field",
            }
        )
    rejected = [Rejected(START + k, "missing-field", 422, "a", None, "no a") for k in range(5)]
    writer = SegmentWriter(root / "primary" / "rejections", REJECTIONS_SCHEMA, worker=4100)
    writer.write(rejections_batch(rejected), now=START)
    writer.close()
    half = len(answers) // 2
    log_predictions(primary, answers[:half], START)
    log_predictions(primary, answers[half:], START + 60)
    log_predictions(candidate, shadows, START + 1)
    log_rows(root / "traffic", TRAFFIC_SCHEMA, traffic, START, 4200)
    first = labels[0]
    labels.append(
        {
            **first,
            "time": first["time"] + 5,
            "label": "no" if first["label"] == "yes" else "yes",
            "value": None if classification else (first["value"] or 0) + 1,
        }
    )
    labels.append(
        {"time": START + 9, "request_id": "never-seen", "row": 0, "label": "yes", "value": 1.0}
    )
    if bad_label:
        labels.append({"time": START + 9, "request_id": None, "row": 0, "label": "yes", "value": 1})
    log_rows(root / "feedback", FEEDBACK_SCHEMA, labels, START + 2, 4300)
    metrics = (
        {"primary": {"accuracy": 0.95}, "candidate": {"accuracy": 0.96}}
        if classification
        else {"primary": {"r2": 0.9, "mae": 0.5}, "candidate": {"r2": 0.91, "mae": 0.45}}
    )
    write_release_files(root, "shadow", task, metrics)
    return root


def canary_release(root: Path, percent: float = 30.0) -> Path:
    """A canary release of a classifier: about ``percent`` % of customers answered by the
    candidate (sticky per customer), each request labelled afterwards."""
    rng = np.random.default_rng(3)
    training = pd.DataFrame({"a": rng.normal(size=3000), LONG: rng.normal(size=3000)})
    cuts = {"primary": 0.0, "candidate": 0.2}
    versions = {
        role: version(root, role, "classification", training, classify(training, cut))
        for role, cut in cuts.items()
    }
    answers: dict[str, list] = {"primary": [], "candidate": []}
    traffic, labels = [], []
    for i, (rid, frame) in enumerate(requests_of(training, 300, rng, "c-")):
        customer = i % 37
        role = "candidate" if (customer * 7919) % 100 < percent else "primary"
        at = START + i * 0.1
        traffic.append(
            {
                "time": at,
                "request_id": rid,
                "version": role,
                "role": "answer",
                "status": 200,
                "latency_ms": float(rng.lognormal(1.0 if role == "primary" else 1.2, 0.4)),
                "rows": len(frame),
            }
        )
        answers[role].append((rid, frame, classify(frame, cuts[role])))
        for row, value in enumerate(frame["a"]):
            labels.append(
                {
                    "time": at + 2,
                    "request_id": rid,
                    "row": row,
                    "label": "yes" if value + rng.normal(0, 0.3) > 0.1 else "no",
                }
            )
    for role, v in versions.items():
        log_predictions(v, answers[role], START)
    log_rows(root / "traffic", TRAFFIC_SCHEMA, traffic, START, 4200)
    log_rows(root / "feedback", FEEDBACK_SCHEMA, labels, START, 4300)
    metrics = {"primary": {"accuracy": 0.95}, "candidate": {"accuracy": 0.97}}
    write_release_files(root, "canary", "classification", metrics)
    return root


# --- the same figures computed with pandas ---------------------------------------------------


def read_log(folder: Path) -> pd.DataFrame:
    return ds.dataset(str(folder), format="arrow").to_table().to_pandas()


def predictions_of(root: Path, role: str) -> pd.DataFrame:
    frame = read_log(root / role / "predictions")
    return frame.assign(row=frame.groupby("request_id").cumcount())


def first_labels(root: Path) -> pd.DataFrame:
    """Each labelled row's first label, in the log's order (a later one does not count)."""
    labels = read_log(root / "feedback").dropna(subset=["request_id"])
    return labels.drop_duplicates(["request_id", "row"], keep="first")


def calls(traffic: pd.DataFrame, version: str, role: str) -> pd.DataFrame:
    return traffic[(traffic["version"] == version) & (traffic["role"] == role)]


@pytest.fixture
def classifier(tmp_path: Path) -> Path:
    return shadow_release(tmp_path / "R", "classification")


@pytest.fixture
def regressor(tmp_path: Path) -> Path:
    return shadow_release(tmp_path / "R", "regression")


def test_a_shadow_classifier_s_figures_are_pandas_figures_on_the_same_rows(
    classifier: Path,
) -> None:
    summary = summarise_release(classifier)
    traffic = read_log(classifier / "traffic")
    p, c = summary.versions["primary"], summary.versions["candidate"]
    answers = calls(traffic, "primary", "answer")
    shadows = calls(traffic, "candidate", "shadow")
    assert p.answered == int(answers["status"].eq(200).sum()) == 400
    assert c.shadowed == int(shadows["status"].eq(200).sum())
    assert c.errors == int((shadows["status"].eq(0) | shadows["status"].ge(500)).sum()) > 0
    assert p.rejected == len(read_log(classifier / "primary" / "rejections")) == 5
    assert c.rejected == int(shadows["status"].between(400, 499).sum())
    for v, frame in ((p, answers), (c, shadows)):
        role = "answer" if v is p else "shadow"
        latency = v.traffic[role].latency
        assert latency.quantile(0.5) == pytest.approx(frame["latency_ms"].quantile(0.5))
        assert latency.quantile(0.99) == pytest.approx(frame["latency_ms"].quantile(0.99))
    primary, candidate = (
        predictions_of(classifier, "primary"),
        predictions_of(classifier, "candidate"),
    )
    for v, frame in ((p, primary), (c, candidate)):
        shares = frame["prediction"].value_counts(normalize=True)
        assert v.predictions["shares"] == pytest.approx(shares.round(6).to_dict())
    both = primary.merge(candidate, on=["request_id", "row"])
    agreement = summary.agreement
    assert agreement is not None and agreement.matched == len(both)
    expected = (both["prediction_x"] == both["prediction_y"]).mean()
    assert agreement.rate == pytest.approx(expected) and 0.5 < expected < 1
    assert agreement.primary_only == len(primary) - len(both)
    assert len(agreement.examples) == 10
    labels = first_labels(classifier)
    for v, frame in ((p, primary), (c, candidate)):
        scored = labels.merge(frame, on=["request_id", "row"])
        assert v.live is not None and v.live.labelled == len(scored)
        assert v.live.recent == pytest.approx((scored["label"] == scored["prediction"]).mean())
    assert (p.training_metric, c.training_metric) == (0.95, 0.96)
    assert summary.feedback is not None and summary.feedback.unmatched == 1
    assert summary.feedback.repeated == 1 and summary.feedback.bad == 1
    # drift against each version's own training profile: the candidate trained on shifted a
    assert p.drifted_features == [] and c.drifted_features == ["a"]
    assert [s["action"] for s in summary.switches] == ["promote", "rollback"]
    assert summary.routing == {
        "answering": "primary",
        "percent": None,
        "switch": 2,
        "time": "2026-09-21T14:13:35+00:00",
    }
    assert summary.problems == [
        "feedback: 1 label row(s) without a request id, row or label were not counted"
    ]
    json.dumps(summary.to_json(), allow_nan=False)


def test_a_shadow_regressor_s_differences_and_mae_are_pandas_figures(regressor: Path) -> None:
    summary = summarise_release(regressor)
    primary, candidate = (
        predictions_of(regressor, "primary"),
        predictions_of(regressor, "candidate"),
    )
    both = primary.merge(candidate, on=["request_id", "row"])
    difference = both["prediction_y"] - both["prediction_x"]
    data = summary.to_json()["agreement"]
    assert data["kind"] == "values" and data["matched_rows"] == len(both)
    figures = data["differences"]
    assert figures["mean"] == pytest.approx(difference.mean(), abs=1e-6)
    assert figures["mean_abs"] == pytest.approx(difference.abs().mean(), abs=1e-6)
    for name, q in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
        assert figures[name] == pytest.approx(difference.quantile(q), abs=1e-6)
    assert figures["mean"] == pytest.approx(0.3, abs=0.05)
    examples = data["examples"]
    assert abs(examples[0]["difference"]) == pytest.approx(difference.abs().max(), abs=1e-6)
    labels = first_labels(regressor)
    for role, frame in (("primary", primary), ("candidate", candidate)):
        v = summary.versions[role]
        scored = labels.merge(frame, on=["request_id", "row"])
        assert v.live is not None and v.live.metric == "mae"
        assert v.live.recent == pytest.approx((scored["value"] - scored["prediction"]).abs().mean())
        quantiles = v.predictions["quantiles"]
        assert quantiles["p50"] == pytest.approx(frame["prediction"].median(), abs=1e-6)
        assert quantiles["p95"] == pytest.approx(frame["prediction"].quantile(0.95), abs=1e-6)
    assert summary.versions["candidate"].training_metric == 0.45
    histogram = summary.prediction_histogram
    assert histogram is not None and sum(histogram["primary"]) == pytest.approx(1.0)
    assert len(histogram["edges"]) == len(histogram["candidate"]) + 1


def test_a_canary_release_counts_each_version_s_own_answers(tmp_path: Path) -> None:
    root = canary_release(tmp_path / "R")
    summary = summarise_release(root)
    traffic = read_log(root / "traffic")
    answered = traffic.groupby("version").size()
    assert summary.agreement is None and summary.mode == "canary"
    assert summary.candidate_share == pytest.approx(answered["candidate"] / answered.sum())
    labels = first_labels(root)
    for role in ("primary", "candidate"):
        v = summary.versions[role]
        assert v.answered == answered[role] and v.shadowed == 0
        scored = labels.merge(predictions_of(root, role), on=["request_id", "row"])
        assert v.live is not None and v.live.labelled == len(scored) > 0
        assert v.live.recent == pytest.approx((scored["label"] == scored["prediction"]).mean())
        latency = calls(traffic, role, "answer")["latency_ms"]
        assert v.traffic["answer"].latency.quantile(0.99) == pytest.approx(latency.quantile(0.99))
    assert summary.feedback is not None and summary.feedback.unmatched == 0
    from mlnb.cli.monitor_release import render_release_text

    text = render_release_text(summary)
    assert "(canary 30% by customer; logs: " in text
    assert "answering now: both (30% to the candidate)" in text
    assert "70% of requests" in text and "30% of requests" in text
    assert "candidate share of answered requests: " in text and "switches: none" in text
    assert "agreement" not in text
    html = render_release_report(summary)
    assert "both, 30.0 % to the candidate" in html and "No switches yet." in html


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("window", [500, 60])
def test_live_figures_are_those_of_the_feedback_module(
    tmp_path: Path, task: str, window: int
) -> None:
    """The same labels judged by the partitioned join here and by
    :func:`mlnb.reporting.feedback_log.live_metrics` (which ``/metrics`` mirrors): the
    figure over the newest ``window`` labels, the counts and the alert."""
    root = shadow_release(tmp_path / "R", task, bad_label=False)
    summary = summarise_release(root, window=window, margin=0.0, min_labels=10)
    theirs = live_metrics(root, window=window, margin=0.0, min_labels=10)
    assert summary.feedback is not None
    for role in ("primary", "candidate"):
        mine = summary.to_json()["versions"][role]["live"]
        for key in ("metric", "training", "labels", "window", "alerting"):
            assert mine[key] == theirs[role][key], key
        assert mine["live"] == pytest.approx(theirs[role]["live"], abs=1e-6)
        assert mine["unmatched"] == theirs[role]["unmatched"]
    if window == 60:  # pandas: the newest 60 joined labels, in the log's order
        labels = first_labels(root)
        scored = labels.merge(predictions_of(root, "primary"), on=["request_id", "row"])
        newest = scored.tail(60)
        if task == "classification":
            expected = (newest["label"] == newest["prediction"]).mean()
        else:
            expected = (newest["value"] - newest["prediction"]).abs().mean()
        assert summary.versions["primary"].live is not None
        assert summary.versions["primary"].live.recent == pytest.approx(expected)


def test_partitioned_and_sampled_the_figures_stay_those_of_pandas(classifier: Path) -> None:
    """Partitions of 100 rows (about 16 of them) and samples of 150 latencies give the
    same row-by-row figures; quantiles come from a uniform sample."""
    whole = summarise_release(classifier)
    parts = summarise_release(classifier, partition_rows=100, sample_size=150)
    assert parts.agreement is not None and whole.agreement is not None
    assert parts.agreement.to_json() == whole.agreement.to_json()
    for role in ("primary", "candidate"):
        a, b = whole.versions[role], parts.versions[role]
        assert a.live is not None and b.live is not None
        assert (a.live.labelled, a.live.value) == (b.live.labelled, b.live.value)
        assert a.predictions["shares"] == b.predictions["shares"]
    sampled = parts.versions["primary"].traffic["answer"].latency
    assert not sampled.exact and len(sampled.values) == 150 and sampled.count == 405
    exact = whole.versions["primary"].traffic["answer"].latency
    assert sampled.mean == pytest.approx(exact.mean)
    assert sampled.quantile(0.5) == pytest.approx(exact.quantile(0.5), rel=0.25)


def test_a_request_s_rows_split_across_chunks_keep_their_positions() -> None:
    from mlnb.reporting.release_join import join_release

    def table(ids: list[str], predictions: list[str]) -> pa.Table:
        return pa.table({"request_id": ids, "prediction": predictions})

    primary = [table(["a", "a"], ["x", "y"]), table(["a", "b"], ["z", "x"])]
    candidate = [table(["a", "a", "a", "b", "c", "c", "d"], ["x", "y", "q", "x", "x", "x", "x"])]
    repeated = table(["c", "c"], ["x", "x"])  # a caller that sent request id c twice
    joined = join_release(
        {"primary": [*primary, repeated, table(["d"], ["x"]), repeated], "candidate": candidate},
        None,
        classification=True,
        shadow=True,
        expected_rows=12,
        partition_rows=2,
    )
    agreement = joined.agreement
    assert agreement is not None
    assert (agreement.matched, agreement.equal, agreement.ambiguous) == (5, 4, 4)
    assert (agreement.primary_only, agreement.candidate_only) == (0, 2)
    assert agreement.examples == [{"request_id": "a", "row": 2, "primary": "z", "candidate": "q"}]


# --- damaged and missing parts: counted and reported -------------------------------------


def complete_segments(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.arrow"))


def test_a_damaged_segment_is_reported_and_the_rest_counted(classifier: Path) -> None:
    segment = complete_segments(classifier / "primary" / "predictions")[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # flip bytes inside a batch
    data[-20:] = b"\x00" * 20  # and break the footer
    segment.write_bytes(bytes(data))
    summary = summarise_release(classifier)
    damaged = [p for p in summary.problems if segment.name in p]
    assert damaged and all(
        p.startswith("primary: a log segment could not be read") for p in damaged
    )
    second = complete_segments(classifier / "primary" / "predictions")[1]
    rows = len(pd.read_feather(second))
    assert summary.versions["primary"].rows_logged == rows  # the whole second segment
    assert summary.agreement is not None and summary.agreement.matched <= rows


def test_missing_parts_are_named_not_raised(classifier: Path) -> None:
    import shutil

    shutil.rmtree(classifier / "candidate")
    shutil.rmtree(classifier / "traffic")
    (classifier / "switches.jsonl").unlink()
    (classifier / "routing.json").unlink()
    summary = summarise_release(classifier)
    assert "candidate/ is missing: this version has logged nothing yet" in summary.problems
    assert any(p.startswith("traffic/ is missing") for p in summary.problems)
    assert summary.versions["primary"].answered == 0  # answers are counted from traffic/
    assert summary.versions["primary"].rows_logged == 799
    assert summary.agreement is not None and summary.agreement.matched == 0
    assert summary.agreement.rate is None and summary.switches == [] and summary.routing is None
    json.dumps(summary.to_json(), allow_nan=False)


def test_bad_rows_bad_lines_and_a_damaged_release_file_are_counted(classifier: Path) -> None:
    odd = [
        {
            "time": START,
            "request_id": "z1",
            "version": "third",
            "role": "answer",
            "status": 200,
            "latency_ms": 1.0,
            "rows": 1,
        },
        {
            "time": START,
            "request_id": "z2",
            "version": "primary",
            "role": "answer",
            "status": None,
            "latency_ms": 1.0,
            "rows": 1,
        },
        {
            "time": START,
            "request_id": "z3",
            "version": "primary",
            "role": "answer",
            "status": 200,
            "latency_ms": None,
            "rows": 1,
        },
    ]
    log_rows(classifier / "traffic", TRAFFIC_SCHEMA, odd, START + 600, 4201)
    with (classifier / "switches.jsonl").open("ab") as handle:
        handle.write(b"not json\n[1, 2]\n" + b'{"action": "' + b"x" * 300_000 + b'"}\n')
    (classifier / "release.json").write_text('{"release": "demo-release:r1", "mode": ')
    reference = classifier / "candidate" / "reference.json"
    reference.write_text(json.dumps({"features": ["not", "profiles"]}))
    other = pa.schema(
        [("time", pa.string()), ("request_id", pa.int64()), ("prediction", pa.int8())]
    )
    writer = SegmentWriter(classifier / "primary" / "predictions", other, worker=4998)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["yesterday"]), pa.array([7]), pa.array([1], pa.int8())], schema=other
    )
    writer.write(batch, now=START + 900)  # a segment of another tool's, with other types
    writer.close()
    summary = summarise_release(classifier)
    problems = "\n".join(summary.problems)
    assert "traffic: 2 row(s) without a known version, role or HTTP status" in problems
    assert "switches.jsonl: 3 line(s) are not switch records" in problems
    assert "release.json could not be read" in problems
    assert "candidate: no drift" in problems
    assert "primary: its logs could not be summarised (no drift)" in problems
    primary = summary.versions["primary"].traffic["answer"]
    assert primary.calls == 401 + 5 and primary.bad_latency == 1
    assert summary.mode is None and summary.agreement is not None  # shadow calls seen
    assert summary.switches_total == 2 and summary.versions["candidate"].drift == []
    assert summary.task == "classification"  # from the primary's reference


def test_predictions_without_a_usable_value_are_counted(tmp_path: Path) -> None:
    root = shadow_release(tmp_path / "R", "regression", count=40)
    v = Version(
        info=ServiceInfo(
            "demo",
            "primary1",
            "run-primary",
            root / "primary",
            "regression",
            None,
            [{"name": n, "dtype": "float64", "kind": "float"} for n in ("a", LONG)],
            None,
        ),
        records=PredictionRecords(
            [{"name": n, "dtype": "float64", "kind": "float"} for n in ("a", LONG)], False
        ),
        worker=4999,
    )
    frame = pd.DataFrame({"a": [1.0, 2.0], LONG: [0.0, 0.0]})
    log_predictions(v, [("nan-1", frame, [float("nan"), None])], START + 900)
    summary = summarise_release(root)
    assert "primary: 2 logged row(s) have no usable prediction" in summary.problems
    assert summary.versions["primary"].predictions["rows"] == len(
        predictions_of(root, "primary").dropna(subset=["prediction"])
    )


def test_a_folder_without_release_json_is_refused_with_the_fix(tmp_path: Path) -> None:
    from mlnb.reporting.logs import MonitorLogError

    with pytest.raises(MonitorLogError, match=r"no release\.json") as raised:
        summarise_release(tmp_path)
    assert raised.value.fix


# --- the report and the command ------------------------------------------------------------


def test_the_report_escapes_hostile_names_and_keeps_them_whole(tmp_path: Path) -> None:
    root = shadow_release(tmp_path / "R", "classification", request_ids=HOSTILE, count=120)
    training = pd.DataFrame({HOSTILE: np.random.default_rng(5).normal(size=500)})
    reference = json.loads((root / "candidate" / "reference.json").read_text())
    reference["features"][HOSTILE] = column_profile(training[HOSTILE])
    (root / "candidate" / "reference.json").write_text(json.dumps(reference))
    with (root / "switches.jsonl").open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "time": "2026-09-21T14:13:36+00:00",
                    "action": "promote",
                    "from": "primary",
                    "to": "candidate",
                    "by": HOSTILE,
                    "why": f"</td><script>alert(1)</script>{HOSTILE}",
                    "figures": {HOSTILE: 1},
                }
            )
            + "\n"
        )
    summary = summarise_release(root)
    assert summary.agreement is not None and summary.agreement.examples
    assert summary.agreement.examples[0]["request_id"].startswith(HOSTILE)
    html = render_release_report(summary)
    assert HOSTILE not in html and "<script>" not in html and 'onerror="' not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;amp;" in html
    assert LONG in html  # whole in the drift table
    assert "…" not in html  # never cut short in a chart
    for section in (
        "Side by side",
        "Agreement on the same rows",
        "Latency",
        "Predictions",
        "Live accuracy against training",
        "Drift against",
        "Switches",
    ):
        assert section in html


def svg_label_rows(svg: str) -> list[float]:
    return [float(y) for y in re.findall(r'<text x="10" y="([\d.]+)" font-size="12">', svg)]


def test_chart_labels_are_whole_and_never_share_a_line() -> None:
    from mlnb.reporting.release_charts import grouped_bars, switch_timeline

    names = [LONG * 2, "b", "c" * 200, HOSTILE]
    svg = str(grouped_bars(names, {"primary": [0.1, -0.2, None, 0.3], "candidate": [1, 2, 3, 4]}))
    rows = svg_label_rows(svg)
    assert len(rows) > len(names) and len(set(rows)) == len(rows)  # long names wrap
    assert all(b - a >= 15 for a, b in itertools.pairwise(rows))
    switches = [
        {
            "time": f"2026-09-21T10:00:{s:02d}+00:00",
            "action": "promote",
            "from": "primary",
            "to": "candidate",
        }
        for s in (0, 1, 2, 40)
    ]
    timeline = str(
        switch_timeline("2026-09-21T09:59:00+00:00", "2026-09-21T10:01:00+00:00", switches)
    )
    numbers = re.findall(
        r'<text x="([\d.]+)" y="([\d.]+)" font-size="11" text-anchor="middle"', timeline
    )
    placed = [(float(x), float(y)) for x, y in numbers]
    assert len(placed) == 4
    for i, (x1, y1) in enumerate(placed):
        for x2, y2 in placed[i + 1 :]:
            assert abs(x1 - x2) >= 16 or y1 != y2  # close switches are stacked


def run_mlnb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_command_prints_text_json_and_writes_the_report(
    classifier: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    (store / "monitoring" / "demo-release").mkdir(parents=True)
    (store / "monitoring" / "demo-release" / "r1").symlink_to(classifier)
    report = tmp_path / "report.html"
    text = run_mlnb("demo-release:r1", "--store", str(store), "-o", str(report))
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert out.startswith("Release demo-release:r1  (shadow; logs: ")
    assert "agreement: 0.9" in out and "requests answered      400" in out
    assert "switches (2):" in out and f"report: {report}" in out
    assert "<svg" in report.read_text() and not list(tmp_path.glob(".report.html*"))
    printed = run_mlnb(str(classifier), "--json")
    assert printed.returncode == 0, printed.stderr
    data = json.loads(printed.stdout)
    assert data == json.loads(json.dumps(summarise_release(classifier).to_json()))
    assert data["versions"]["candidate"]["traffic"]["shadow"]["latency_ms"]["p99"] > 0
    refused = run_mlnb(str(tmp_path / "nothing"), "--json")
    assert refused.returncode == 2 and "neither a folder nor a Bento tag" in refused.stderr


def test_an_ordinary_monitoring_folder_is_still_summarised_as_before(classifier: Path) -> None:
    from mlnb.cli import main

    assert isinstance(summarise_release(classifier), ReleaseSummary)
    assert main(["monitor", str(classifier / "primary"), "--json"]) == 0
