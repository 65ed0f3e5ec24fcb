"""``templates/prometheus/alerts.yml``: the alerting rules mlnb ships, read as Prometheus reads
them (promtool, where installed) and held to the series a worker exports.

The served side (every name in the rules on a real Bento's ``/metrics``) is in
``tests/test_monitoring_served.py``; here the in-process exposition of
:class:`~mlnb.monitoring.metrics.ServiceMetrics` and the feedback book stands in for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import prometheus_client
import pytest
import yaml

import mlnb
from mlnb.monitoring.feedback import FeedbackMetrics
from mlnb.monitoring.metrics import ServiceMetrics

from .conftest import ROOT

RULES = ROOT / "templates" / "prometheus" / "alerts.yml"
RULE_TESTS = RULES.with_name("alerts_test.yml")
# BentoML's own series the rules read (its HTTP middleware's, on every served Bento)
BENTOML_SERIES = {
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
}
METRIC_NAME = re.compile(r"\b((?:mlnb|bentoml)_[a-zA-Z0-9_]+)")
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not installed (apt-get install prometheus, or Prometheus' release)"


@pytest.fixture
def promtool() -> str:
    """The promtool binary; a skip without it, a failure when ``MLNB_REQUIRE_PROMTOOL=1``
    (CI sets it, so CI cannot pass without checking the rules)."""
    if PROMTOOL is None:
        if os.environ.get("MLNB_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"MLNB_REQUIRE_PROMTOOL=1 but {NO_PROMTOOL}")
        pytest.skip(NO_PROMTOOL)
    return PROMTOOL


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The ``mlnb_*`` and ``bentoml_*`` metric names an expression reads."""
    return set(METRIC_NAME.findall(expr))


def exported_names(exposition: str) -> set[str]:
    """Every sample name of a Prometheus text exposition (``_total``, ``_bucket``, ...)."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def read_by_rules() -> set[str]:
    return set().union(*(metric_names(rule["expr"]) for rule in rules()))


@pytest.fixture(scope="module")
def worker_exposition() -> str:
    """The ``mlnb_*`` series of a classifier and a regressor worker, each after some work."""
    classifier = ServiceMetrics(
        True,
        None,
        "v1",
        service="cancer",
        build={"run": "r1", "git_commit": "abc123", "model_format": "onnx", "git_dirty": "false"},
    )
    classifier.count_rows(4)
    classifier.count_labels({"benign": 3, "malignant": 1})
    classifier.count_rejections({"missing-field": 1})
    classifier.set_drift("mean radius", 0.31, 0.2, True)
    classifier.declare_rules([("mean area", "range")])
    classifier.count_violations({("mean area", "range"): 2})
    regressor = ServiceMetrics(False, [0.0, 1.0, 2.0], "v2", service="house")
    regressor.observe_values(np.array([0.5, 1.5, 3.0]))
    return mlnb_families(prometheus_client.generate_latest().decode())


def mlnb_families(exposition: str) -> str:
    """Only the ``mlnb_*`` families of an exposition: the process's default registry also
    holds what other libraries (jupyter_server, BentoML) registered in this test process."""
    kept = []
    for line in exposition.splitlines():
        name = line.split()[2] if line.startswith("# ") and len(line.split()) > 2 else line
        if name.startswith("mlnb_"):
            kept.append(line)
    return "\n".join(kept) + "\n"


@pytest.fixture(scope="module")
def exposition(worker_exposition: str) -> str:
    """The workers' series and a classifier's and a regressor's feedback book's."""
    text = worker_exposition
    for classification in (True, False):
        registry = prometheus_client.CollectorRegistry()
        FeedbackMetrics(classification, registry).declare("v1", 0.9)
        text += prometheus_client.generate_latest(registry).decode()
    return text


def test_every_rule_waits_names_its_severity_and_says_what_to_do() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= {
        "MlnbFeatureDrift",
        "MlnbRejectedRequests",
        "MlnbSlowPredictions",
        "MlnbServerErrors",
        "MlnbLiveAccuracyDropped",
    }
    for rule in found:
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, rule["alert"]
        assert annotations["runbook"].startswith("README.md, section "), rule["alert"]
        heading = annotations["runbook"].removeprefix("README.md, section ")
        assert f"## {heading}\n" in (ROOT / "README.md").read_text(), heading
        # what to do: a command to run, or the setting to check
        assert re.search(r"`mlnb |\$MLNB_", annotations["description"]), rule["alert"]
    by_name = {rule["alert"]: rule for rule in found}
    assert "histogram_quantile(0.99" in by_name["MlnbSlowPredictions"]["expr"]
    assert "mlnb_feature_drifted" in by_name["MlnbFeatureDrift"]["expr"]
    rejected = by_name["MlnbRejectedRequests"]["expr"]
    assert rejected.index("mlnb_rejected_requests_total") < rejected.index("/")  # over all
    assert 'bentoml_service_request_total{endpoint="/predict"}' in rejected


def test_the_rules_read_only_series_a_worker_exports(exposition: str) -> None:
    ours = {name for name in read_by_rules() if name.startswith("mlnb_")}
    assert len(ours) >= 5, ours
    assert ours <= exported_names(exposition), ours - exported_names(exposition)
    theirs = {name for name in read_by_rules() if name.startswith("bentoml_")}
    assert theirs == BENTOML_SERIES  # on a served Bento's /metrics: test_monitoring_served


def test_a_misspelt_series_is_caught(exposition: str) -> None:
    """The check above is not vacuous: a name no worker exports fails it."""
    ours = {name for name in read_by_rules() if name.startswith("mlnb_")}
    assert not ours | {"mlnb_feature_drift"} <= exported_names(exposition)


def test_every_worker_series_carries_service_name_and_version(worker_exposition: str) -> None:
    lines = [line for line in worker_exposition.splitlines() if line.startswith("mlnb_")]
    assert len({line.split("{")[0] for line in lines}) >= 10
    for line in lines:
        assert 'service_name="' in line and 'version="' in line, line


def test_build_info_names_the_lineage_with_unknown_for_what_was_not_recorded(
    exposition: str,
) -> None:
    infos = [line for line in exposition.splitlines() if line.startswith("mlnb_build_info{")]
    cancer = next(line for line in infos if 'service_name="cancer"' in line)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', cancer))
    assert labels == {
        "service_name": "cancer",
        "version": "v1",
        "run": "r1",
        "git_commit": "abc123",
        "git_dirty": "false",
        "mlnb_version": mlnb.__version__,  # the mlnb serving: the build recorded none
        "model_format": "onnx",
    }
    assert cancer.endswith(" 1.0")
    house = dict(re.findall(r'(\w+)="([^"]*)"', next(i for i in infos if '"house"' in i)))
    assert house["run"] == house["git_commit"] == house["model_format"] == "unknown"
    assert "# TYPE mlnb_build_info gauge" in exposition


def test_promtool_accepts_the_rules_and_their_unit_tests_pass(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_fail_when_a_threshold_moves(tmp_path: Path, promtool: str) -> None:
    """promtool's unit tests hold the thresholds: a rejection rule at 20% no longer fires."""
    moved = RULES.read_text().replace("> 0.05\n        for: 10m", "> 0.2\n        for: 10m")
    assert moved != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(moved)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode != 0 and "MlnbRejectedRequests" in tested.stdout + tested.stderr


def test_promtool_lints_the_workers_series_clean(worker_exposition: str, promtool: str) -> None:
    linted = subprocess.run(
        [promtool, "check", "metrics"], input=worker_exposition, capture_output=True, text=True
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
