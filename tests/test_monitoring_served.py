"""Monitoring in a served Bento, over real HTTP: logs, /metrics, drift, data contract checks,
alerts, mlnb monitor; and a Bento whose spec predates contract checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

import mlnb
from mlnb.monitoring import segments

from .build_support import Server, free_port, post, project, start_server, wait_ready

pytestmark = pytest.mark.slow
SHIFTED = "mean radius"
RULES = Path(__file__).resolve().parent.parent / "templates" / "prometheus" / "alerts.yml"
# the feedback book's series carry the version only (mlnb/monitoring/feedback.py)


class Alerts(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Alerts.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    bento = project().build("breast_cancer.ipynb")["bento"]
    folder = tmp_path_factory.mktemp("monitoring") / "logs"
    hook = ThreadingHTTPServer(("127.0.0.1", free_port()), Alerts)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env = {
        "MLNB_MONITOR_DIR": str(folder),
        "MLNB_DRIFT_INTERVAL": "0.2",
        "MLNB_LOG_ROTATE_SECONDS": "1",  # complete segments appear within a second or two
        "MLNB_ALERT_WEBHOOK": f"http://127.0.0.1:{hook.server_address[1]}/alerts",
    }
    server = start_server(bento, env)
    old = start_old_spec_server(tmp_path_factory.mktemp("old-spec"))  # starts meanwhile
    try:
        wait_ready(server)
        yield {"url": server.url, "folder": folder, "bento": bento, "answered": [0], "old": old}
    finally:
        server.stop()
        old.stop()
        hook.shutdown()
        hook.server_close()


def start_old_spec_server(root: Path) -> Server:
    """The module's Bento with the ``mlnb_service.json`` of an mlnb older than contract checks
    (no ``contract``), served from its build folder by ``bentoml serve``."""
    built = Path(project().build("breast_cancer.ipynb")["build_dir"])
    folder = root / "bento"
    shutil.copytree(built, folder)
    spec = json.loads((folder / "mlnb_service.json").read_text())
    assert spec.pop("contract")["features"]  # the module's Bento has contract rules
    (folder / "mlnb_service.json").write_text(json.dumps(spec))
    port = free_port()
    log = root / "serve.log"
    command = [sys.executable, "-m", "bentoml", "serve", ".", "--host", "127.0.0.1"]
    # a BentoML home of its own (the models linked): servers of one home share, and clean
    # at start, one Prometheus folder, so each would show the other's mlnb_* series
    home = root / "bentoml"
    home.mkdir()
    (home / "models").symlink_to(Path(project().env["BENTOML_HOME"]) / "models")
    env = {**project().env, "BENTOML_HOME": str(home), "MLNB_MONITOR_DIR": str(root / "logs")}
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return Server(process, f"http://127.0.0.1:{port}", log)


def send(served: dict, frames: list[list[dict]]) -> None:
    """POST each list of rows, 8 at a time; every one must be answered."""

    def one(rows: list[dict]) -> int:
        status, answer = post(served["url"] + "/predict", {"rows": rows})
        assert status == 200, answer
        return len(answer["predictions"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        served["answered"][0] += sum(pool.map(one, frames))
    served.setdefault("sent", []).extend(row for rows in frames for row in rows)


def requests_of(rows: int, seed: int, shift: float = 1.0) -> list[list[dict]]:
    data = load_breast_cancer(as_frame=True).data
    picked = data.sample(n=rows, replace=True, random_state=seed)
    picked[SHIFTED] = picked[SHIFTED] * shift
    records = picked.to_dict(orient="records")
    return [records[i : i + 4] for i in range(0, rows, 4)]


def exposition(served: dict) -> str:
    with urllib.request.urlopen(served["url"] + "/metrics", timeout=10) as response:
        return response.read().decode()


def metrics(served: dict) -> dict[str, float]:
    """The ``mlnb_*`` samples by name and their labels other than service_name and version."""
    found = {}
    name_of_bento, _, version = served["bento"].partition(":")
    for line in exposition(served).splitlines():
        match = re.match(r"^(mlnb_\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$", line)
        if match:
            name, labels, value = match.groups()
            # every mlnb_* series carries the Bento's name and version, under the labels
            # BentoML's own series carry them (service_name, as on bentoml_service_*)
            assert f'version="{version}"' in (labels or ""), line
            assert f'service_name="{name_of_bento}"' in labels, line
            rest = re.sub(r'(^|,)(service_name|version)="[^"]*"', "", labels).lstrip(",")
            found[f"{name}{{{rest}}}" if rest else name] = float(value)
    return found


def drifted_in_metrics(served: dict) -> set[str]:
    found = metrics(served)
    return {
        re.search(r'feature="([^"]+)"', key).group(1)  # type: ignore[union-attr]
        for key, value in found.items()
        if key.startswith("mlnb_feature_drifted{") and value == 1.0
    }


def monitor_json(served: dict) -> dict:
    result = project().mlnb("monitor", str(served["folder"]), "--json")
    return json.loads(result.stdout)


def wait_for(condition, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError as error:  # a scrape that failed while the server was busy: poll on
            last = error
        else:
            last = None
        assert time.monotonic() < deadline, f"timed out (last error: {last})"
        time.sleep(0.2)


def logged_all(served: dict) -> bool:
    """Rows are logged by a background thread within a fraction of a second."""
    return metrics(served).get("mlnb_rows_total") == served["answered"][0]


def test_in_distribution_traffic_flags_nothing(served: dict) -> None:
    send(served, requests_of(400, seed=1))
    wait_for(lambda: logged_all(served))
    wait_for(
        lambda: metrics(served).get('mlnb_feature_drift_psi{feature="mean radius"}') is not None
    )
    assert drifted_in_metrics(served) == set()
    summary = monitor_json(served)
    assert summary["rows_logged"] == served["answered"][0] == 400
    assert summary["requests"] == 100
    assert summary["drifted_features"] == []
    assert Alerts.received == []
    predictions = summary["predictions"]  # against the service's answers on training rows
    assert predictions["kind"] == "categorical" and set(predictions["labels"]) == {
        "benign",
        "malignant",
    }
    assert sum(predictions["training"]) == pytest.approx(1.0)
    for training, live in zip(predictions["training"], predictions["live"], strict=True):
        assert 0.2 < training < 0.8 and abs(training - live) < 0.1


def test_one_shifted_feature_is_flagged_alone(served: dict, tmp_path: Path) -> None:
    send(served, requests_of(600, seed=2, shift=1.6))
    wait_for(lambda: logged_all(served))
    wait_for(lambda: drifted_in_metrics(served) == {SHIFTED})
    found = metrics(served)
    assert found["mlnb_rows_total"] == served["answered"][0] == 1000
    labels = sum(v for k, v in found.items() if k.startswith("mlnb_predictions_total{"))
    assert labels == 1000
    summary = monitor_json(served)
    assert summary["drifted_features"] == [SHIFTED]
    assert summary["features"][SHIFTED]["psi"] > 0.2 and summary["features"][SHIFTED]["ks"] > 0.2
    assert summary["rows_logged"] == 1000  # every answered row was logged, none lost
    wait_for(lambda: len(Alerts.received) >= 2)
    drift = [a for a in Alerts.received if a["alert"] == "drift"]
    assert [a["feature"] for a in drift] == [SHIFTED]  # one alert, when it started
    assert drift[0]["bento"] == served["bento"]
    # the 1,000th row completed the first contract window: the shifted rows broke the range
    # of that feature alone, in more than 5 % of the window's rows
    (contract,) = [a for a in Alerts.received if a["alert"] == "contract"]
    assert (contract["feature"], contract["rule"], contract["rows"]) == (SHIFTED, "range", 1000)
    assert contract["violations"] == outside(served["sent"])[SHIFTED] > 50
    report = tmp_path / "report.html"
    text = project().mlnb("monitor", str(served["folder"]), "-o", str(report)).stdout
    assert f"drifted features: {SHIFTED}" in text
    page = report.read_text()
    assert page.count("<svg") >= 31 and "PSI per feature over time" in page


def test_rejections_are_counted_and_logged_and_the_service_keeps_serving(served: dict) -> None:
    status, answer = post(served["url"] + "/predict", {"rows": [{"mean radius": 1.0}]})
    assert status == 422 and answer["error"] == "missing-field"
    missing = answer["field"]
    status, _ = post(served["url"] + "/predict", b"{not json")
    assert 400 <= status < 500
    key = 'mlnb_rejected_requests_total{reason="missing-field"}'
    wait_for(lambda: key in metrics(served))  # counted by the background thread
    assert metrics(served)[key] == 1.0
    summary = monitor_json(served)
    assert summary["rejected_requests"] == 2
    assert summary["rejection_reasons"] == {"missing-field": 1, "bad-json": 1}
    send(served, requests_of(4, seed=3))
    wait_for(lambda: logged_all(served))
    wait_for(lambda: complete_rows(served["folder"] / "rejections") == 2)
    rejected = pd.read_feather(complete_segments(served["folder"] / "rejections")[0])
    assert set(rejected["reason"]) == {"missing-field", "bad-json"}
    assert rejected.loc[rejected["reason"] == "missing-field", "field"].item() == missing


def test_the_alert_rules_read_series_this_bento_exports(served: dict) -> None:
    """Every metric ``templates/prometheus/alerts.yml`` reads is on this Bento's /metrics,
    after answered and rejected requests; mlnb's service_name is BentoML's for the Bento."""
    send(served, requests_of(4, seed=4))
    assert post(served["url"] + "/predict", {"rows": [{"mean radius": 1.0}]})[0] == 422
    wait_for(lambda: "mlnb_feature_drifted{" in exposition(served))
    text = exposition(served)
    samples = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()}
    document = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in document["groups"] for rule in group["rules"]]
    read = set(re.findall(r"\b((?:mlnb|bentoml)_\w+)", " ".join(exprs)))
    assert len(read) >= 7 and read <= samples, sorted(read - samples)
    bentoml_names = set(
        re.findall(r'^bentoml_service_request_total\{[^}]*service_name="([^"]+)"', text, re.M)
    )
    assert bentoml_names == {served["bento"].partition(":")[0]}


def test_build_info_names_the_run_and_the_lineage(served: dict) -> None:
    built = project().build("breast_cancer.ipynb")
    (line,) = [s for s in exposition(served).splitlines() if s.startswith("mlnb_build_info{")]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    name, _, version = served["bento"].partition(":")
    assert line.endswith(" 1.0")
    assert labels["service_name"] == name and labels["version"] == version
    assert labels["run"] == built["run_id"] == built["build"]["run"]
    for key in ("git_commit", "git_dirty", "mlnb_version", "model_format"):
        assert labels[key] == built["build"][key], key  # the Bento's labels say the same
    assert labels["mlnb_version"] == mlnb.__version__


def complete_segments(folder: Path) -> list[Path]:
    return [p for p in segments.segments(folder) if not segments.is_partial(p)]


def complete_rows(folder: Path) -> int:
    """Rows in the log's complete segments: what pandas, DuckDB or polars would read."""
    if not complete_segments(folder):
        return 0
    return ds.dataset(folder, format="arrow").count_rows()


def test_the_log_folder_reads_as_a_table_with_pandas(served: dict) -> None:
    wait_for(lambda: complete_rows(served["folder"] / "predictions") == served["answered"][0])
    table = ds.dataset(served["folder"] / "predictions", format="arrow").to_table().to_pandas()
    data = load_breast_cancer(as_frame=True).data
    assert list(table.columns) == ["time", "request_id", *data.columns, "prediction"]
    assert set(table["prediction"]) <= {"benign", "malignant"}
    assert table["mean area"].between(data["mean area"].min() * 0.5, data["mean area"].max()).all()


def contract_rules() -> dict:
    """The contract rules the module's Bento was built with (its mlnb_service.json)."""
    built = Path(project().build("breast_cancer.ipynb")["build_dir"])
    return json.loads((built / "mlnb_service.json").read_text())["contract"]


def outside(rows: list[dict]) -> dict[str, int]:
    """Per feature, the rows whose value is below the contract's min or above its max."""
    frame = pd.DataFrame(rows)
    found = {}
    for feature, rules in contract_rules()["features"].items():
        values = frame[feature]
        found[feature] = int(((values < rules["min"]) | (values > rules["max"])).sum())
    return found


def violations_in_metrics(served: dict) -> dict[tuple[str, str], float]:
    found = {}
    for key, value in metrics(served).items():
        match = re.match(r'mlnb_contract_violations_total\{feature="([^"]+)",rule="(\w+)"\}', key)
        if match:
            found[(match.group(1), match.group(2))] = value
    return found


def test_rows_outside_the_contract_are_counted_per_feature_and_rule_and_answered(
    served: dict,
) -> None:
    rules = contract_rules()
    assert rules["contract"] == "breast_cancer.contract.yaml" and len(rules["features"]) == 30
    data = load_breast_cancer(as_frame=True).data
    rows = data.sample(n=6, random_state=5).to_dict(orient="records")
    limits = rules["features"]
    rows[0]["mean area"] = limits["mean area"]["max"] * 3
    rows[1]["mean texture"] = limits["mean texture"]["min"] / 2
    rows[2]["mean area"] = limits["mean area"]["min"] - 1
    rows[2]["worst radius"] = -5.0
    status, answer = post(served["url"] + "/predict", {"rows": rows})
    assert status == 200  # counted, never refused
    run_id = project().build("breast_cancer.ipynb")["run_id"]
    record = json.loads((project().store / "runs" / run_id / "run.json").read_text())
    import joblib

    model = joblib.load(project().store / record["model"]["path"])
    proba = model.predict_proba(pd.DataFrame(rows)[data.columns])[:, 1]
    assert [p["benign_probability"] for p in answer["predictions"]] == [
        round(p, 6) for p in proba.tolist()
    ]  # answered exactly as the model answers, outside the contract or not
    served["answered"][0] += len(rows)
    served["sent"].extend(rows)
    wait_for(lambda: logged_all(served))
    expected = outside(served["sent"])
    assert expected["mean area"] == 2 and expected["mean texture"] == 1
    assert expected["worst radius"] == 1 and expected[SHIFTED] > 50
    wait_for(lambda: violations_in_metrics(served).get(("mean area", "range")) == 2)
    counted = violations_in_metrics(served)
    assert counted == {(feature, "range"): float(n) for feature, n in expected.items()}
    summary = monitor_json(served)["contract"]
    assert summary["contract"] == "breast_cancer.contract.yaml" and summary["window"] == 1000
    assert summary["rows"] == served["answered"][0]
    assert summary["violations"] == {feature: {"range": n} for feature, n in expected.items()}
    text = project().mlnb("monitor", str(served["folder"])).stdout
    assert f"data contract breast_cancer.contract.yaml: {sum(expected.values())} violation" in text


def test_a_bento_whose_spec_has_no_contract_serves_and_monitors_as_before(served: dict) -> None:
    old = served["old"]
    wait_ready(old)
    rows = load_breast_cancer(as_frame=True).data.head(5).to_dict(orient="records")
    rows[0]["mean area"] = 1e6  # outside the contract, which this spec does not carry
    status, answer = post(old.url + "/predict", {"rows": rows})
    assert status == 200 and len(answer["predictions"]) == 5
    assert answer == post(served["url"] + "/predict", {"rows": rows})[1]
    served["answered"][0] += 5
    served["sent"].extend(rows)
    old_served = {"url": old.url, "answered": [5], "bento": served["bento"]}
    wait_for(lambda: logged_all(old_served))
    assert not [k for k in metrics(old_served) if k.startswith("mlnb_contract")]


def test_rows_answered_just_before_the_server_stops_are_all_logged(tmp_path: Path) -> None:
    bento = project().build("breast_cancer.ipynb")["bento"]  # the module's Bento, reused
    folder = tmp_path / "logs"
    server = start_server(bento, {"MLNB_MONITOR_DIR": str(folder)})
    try:
        wait_ready(server)
        stopping = {"url": server.url, "answered": [0], "bento": bento}
        send(stopping, requests_of(800, seed=4))
    finally:
        server.stop()  # SIGTERM right after the last answer: the worker has rows queued
    assert server.process.returncode == 0
    found = segments.segments(folder / "predictions")
    assert found and not [p for p in found if segments.is_partial(p)]  # all completed
    assert complete_rows(folder / "predictions") == stopping["answered"][0] == 800
