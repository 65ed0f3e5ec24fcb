"""Drift scores and the monitor report on a monitoring folder, as copied from another machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlnb.bento.reference import prediction_profile
from mlnb.monitoring.drift import feature_drift, psi
from mlnb.reporting.logs import open_monitor_folder
from mlnb.reporting.summary import summarise
from mlnb.run.profile import column_profile

RNG = np.random.default_rng(0)


def numeric_profile(values: np.ndarray, bins: int = 10) -> dict:
    """A feature's profile as older versions wrote it: deciles and a histogram, no fine bins."""
    counts, edges = np.histogram(values, bins=bins)
    return {
        "kind": "numeric",
        "dtype": "float64",
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "quantiles": np.quantile(values, np.linspace(0, 1, 11)).tolist(),
    }


def test_psi_is_zero_for_equal_and_large_for_shifted() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([50, 50], [90, 10]) > 0.2


def test_numeric_drift_flags_a_shift_not_a_resample() -> None:
    train = RNG.normal(0, 1, 5000)
    profile = numeric_profile(train)
    same = feature_drift("x", profile, RNG.normal(0, 1, 500))
    shifted = feature_drift("x", profile, RNG.normal(1.5, 1, 500))
    assert not same.drifted and same.psi is not None and same.psi < 0.1
    assert shifted.drifted and shifted.ks is not None and shifted.ks > 0.4
    assert same.ks is not None and same.ks < 0.1


def test_ks_of_a_profile_from_this_version_is_scipys_two_sample_value() -> None:
    from scipy.stats import ks_2samp

    train = RNG.uniform(0, 1, 10000)
    live = RNG.uniform(0.5, 1.5, 400)
    drift = feature_drift("x", column_profile(pd.Series(train)), live)
    exact = ks_2samp(train, live, method="asymp").statistic
    assert drift.ks == pytest.approx(exact, abs=0.02) and drift.ks == pytest.approx(0.5, abs=0.08)


def test_categorical_drift_and_unseen_categories() -> None:
    profile = {"kind": "categorical", "frequencies": {"a": 0.5, "b": 0.5}}
    steady = feature_drift("c", profile, ["a", "b"] * 150)
    unseen = feature_drift("c", profile, ["z"] * 300)
    assert steady.psi == pytest.approx(0.0, abs=1e-6) and not steady.drifted
    assert unseen.drifted


def test_too_few_rows_gives_no_score() -> None:
    result = feature_drift("x", numeric_profile(RNG.normal(size=100)), [0.1, 0.2])
    assert result.psi is None and not result.drifted


def write_monitor_folder(folder: Path, rows: list[dict], rejections: list[dict]) -> Path:
    train = {"a": RNG.normal(0, 1, 3000), "b": RNG.normal(5, 2, 3000)}
    reference = {
        "bento": "demo:v1",
        "run_id": "r1",
        "task": "classification",
        "features": {name: numeric_profile(values) for name, values in train.items()},
        "prediction": {"kind": "categorical", "frequencies": {"0": 0.5, "1": 0.5}},
        "default_threshold": 0.2,
        "window": 1000,
    }
    folder.mkdir(parents=True)
    (folder / "reference.json").write_text(json.dumps(reference))
    for monitor, records in (("predictions", rows), ("rejections", rejections)):
        (folder / monitor / "data").mkdir(parents=True)
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (folder / monitor / "data" / "data.0.log").write_text(lines)
    return folder


def make_rows(n: int, shift_b: float, start: int = 0) -> list[dict]:
    return [
        {
            "a": float(RNG.normal(0, 1)),
            "b": float(RNG.normal(5 + shift_b, 2)),
            "prediction": str(i % 2),
            "request_id": str((start + i) // 4),
            "timestamp": f"2026-11-25T10:{(start + i) // 600:02d}:{(start + i) // 10 % 60:02d}",
        }
        for i in range(n)
    ]


@pytest.fixture
def drifted_folder(tmp_path: Path) -> Path:
    rows = make_rows(600, 0.0) + make_rows(600, 4.0, start=600)
    rejections = [{"reason": "missing-field", "request_id": "x1"}]
    return write_monitor_folder(tmp_path / "logs", rows, rejections)


def test_summary_flags_only_the_shifted_feature(drifted_folder: Path) -> None:
    summary = summarise(open_monitor_folder(drifted_folder))
    assert summary.rows_logged == 1200
    assert summary.requests == 300
    assert summary.rejected_requests == 1
    assert summary.drifted_features == ["b"]
    assert len(summary.drift_over_time) >= 4  # 1,200 rows: periods of ~250
    first, last = summary.drift_over_time[0], summary.drift_over_time[-1]
    assert first["psi"]["b"] < 0.2 < last["psi"]["b"]


def test_monitor_cli_json_text_and_report(drifted_folder: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "mlnb", "monitor", str(drifted_folder)]
    as_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    payload = json.loads(as_json.stdout)
    assert payload["rows_logged"] == 1200 and payload["requests"] == 300
    assert payload["drifted_features"] == ["b"]
    assert payload["features"]["a"]["psi"] < 0.2 < payload["features"]["b"]["psi"]
    text = subprocess.run([*cmd, "-o", str(report)], capture_output=True, text=True, check=True)
    assert "drifted features: b" in text.stdout
    html = report.read_text()
    assert "<svg" in html and "PSI per feature over time" in html
    assert "Drifted, highest PSI first: b" in html
    assert "http" not in html.replace("http://www.w3.org", "")


def test_monitor_names_what_is_wrong(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mlnb", "monitor", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "has no reference.json" in result.stderr and "Traceback" not in result.stderr


def test_bare_nan_lines_are_counted_not_trusted(drifted_folder: Path) -> None:
    data = drifted_folder / "predictions" / "data" / "data.0.log"
    data.write_text(data.read_text() + '{"a": NaN, "b": 1.0}\n')
    summary = summarise(open_monitor_folder(drifted_folder))
    assert summary.unreadable_lines == 1 and summary.rows_logged == 1200


def test_prediction_profile_is_class_frequencies_or_a_histogram() -> None:
    classes = prediction_profile([1, 0, 1, {"label": 1, "score": 0.9}], classification=True)
    assert classes is not None and classes["kind"] == "categorical"
    assert classes["frequencies"] == {"1": 0.75, "0": 0.25}
    values = prediction_profile([0.5, 1.5, float("nan"), [2.5]], classification=False)
    assert values is not None and values["kind"] == "numeric"
    assert sum(values["histogram"]["counts"]) == 3 and values["nan_fraction"] == 0.25
    assert prediction_profile([None, None], classification=True) is None
