"""Labels fed back to a served Bento over real HTTP: the live accuracy in /metrics is what the
labels imply, beside the run's, and the feedback log joins to the predictions log."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

from mlnb.reporting.feedback_log import live_metrics, read_feedback

from .build_support import post, project, start_server, wait_ready

pytestmark = pytest.mark.slow
LABELS = ["malignant", "benign"]  # the notebook's serve code answers these


def predict(url: str, rows: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The answer's request id and its predicted classes."""
    request = urllib.request.Request(
        url + "/predict",
        data=json.dumps({"rows": rows}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
        request_id = response.headers["X-Request-Id"]
    return request_id, [p["diagnosis"] for p in answer["predictions"]]


def series(url: str, name: str, version: str) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = rf'^{name}\{{[^}}]*version="{re.escape(version)}"[^}}]*\}} ([0-9.eE+-]+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_posted_labels_give_the_live_accuracy_they_imply(tmp_path: Path) -> None:
    built = project().build("breast_cancer.ipynb")
    version = built["bento"].partition(":")[2]
    spec = json.loads((Path(built["build_dir"]) / "mlnb_service.json").read_text())
    folder = tmp_path / "monitoring"
    server = start_server(built["bento"], {"MLNB_MONITOR_DIR": str(folder)})
    try:
        wait_ready(server)
        data = load_breast_cancer(as_frame=True)
        picked = data.data.sample(n=60, random_state=7)
        truth = [LABELS[int(t)] for t in data.target.loc[picked.index]]
        truth[::4] = ["benign" if t == "malignant" else "malignant" for t in truth[::4]]
        rows = picked.to_dict(orient="records")
        answered = [predict(server.url, rows[i : i + 5]) for i in range(0, 60, 5)]

        # half the requests labelled row by row in one batch, half with "labels"
        batch = [
            {"request_id": rid, "label": truth[5 * i + row], "row": row}
            for i, (rid, _) in enumerate(answered[:6])
            for row in range(5)
        ]
        status, answer = post(server.url + "/feedback", {"feedback": batch})
        assert (status, answer) == (
            200,
            {"accepted": 30, "matched": {version: 30}, "unmatched": 0, "repeated": 0},
        )
        for i, (rid, _) in enumerate(answered[6:], start=6):
            labels = truth[5 * i : 5 * i + 5]
            assert post(server.url + "/feedback", {"request_id": rid, "labels": labels})[0] == 200
        status, answer = post(server.url + "/feedback", {"request_id": "nobody", "label": "x"})
        assert (status, answer["matched"], answer["unmatched"]) == (200, {version: 0}, 1)

        predicted = [p for _, classes in answered for p in classes]
        expected = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
        assert 0.5 < expected < 0.95  # the flipped labels show
        assert series(server.url, "mlnb_live_accuracy", version) == pytest.approx(expected)
        assert series(server.url, "mlnb_feedback_labels_total", version) == 60
        correct = series(server.url, "mlnb_feedback_correct_total", version)
        assert correct == round(expected * 60)
        training = series(server.url, "mlnb_training_accuracy", version)
        assert training == pytest.approx(spec["metrics"]["accuracy"])

        # a bad body is a 4xx JSON answer naming the item and field; GET is a 405
        status, answer = post(server.url + "/feedback", {"feedback": [batch[0], {"label": 1}]})
        assert (status, answer["error"], answer["item"], answer["field"]) == (
            422,
            "missing-field",
            1,
            "request_id",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(server.url + "/feedback", timeout=10)
        assert caught.value.code == 405 and json.loads(caught.value.read())["fix"]

        # the logs join offline to the same figure (the worker writes them within a second)
        deadline = time.monotonic() + 10
        while read_feedback(folder).num_rows < 61 and time.monotonic() < deadline:
            time.sleep(0.2)
        offline: dict[str, Any] = {}
        while time.monotonic() < deadline:
            offline = live_metrics(folder, training={version: spec["metrics"]})[version]
            if offline["labels"] == 60:
                break
            time.sleep(0.2)
        assert offline["live"] == pytest.approx(expected)
        assert (offline["unmatched"], offline["training"]) == (1, training)
    finally:
        server.stop()
