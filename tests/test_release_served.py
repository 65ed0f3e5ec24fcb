"""Releases over real HTTP on 127.0.0.1: two Bentos built from two real runs of the breast
cancer example (C=1.0 and C=0.01), served together in shadow and as a canary by `mlnb serve`,
switched by `mlnb release promote|rollback` and by their own rules, labels fed back."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlnb.monitoring import segments

from .build_support import Server, project, start_server, wait_ready

pytestmark = pytest.mark.slow
ROWS = load_breast_cancer(as_frame=True).data
LABELS = ["malignant", "benign"]
TARGET = load_breast_cancer(as_frame=True).target


def send(url: str, rows: list[dict], request_id: str | None = None) -> tuple[int, dict, dict]:
    """POST rows; the status, the answer and the headers."""
    headers = {"content-type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    request = urllib.request.Request(
        url + "/predict", data=json.dumps({"rows": rows}).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def row(i: int) -> list[dict]:
    return ROWS.iloc[[i % len(ROWS)]].to_dict(orient="records")


def release(*args: str) -> dict[str, Any]:
    result = project().mlnb("release", *args, "--json")
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's breast cancer Bento (C=1.0) and one from a run with C=0.01, built into
    a store of its own so the session's notebook keeps its newest run."""
    primary = project().build("breast_cancer.ipynb")["bento"]
    other = tmp_path_factory.mktemp("candidate-store")
    project().mlnb("run", "breast_cancer.ipynb", "-p", "C", "0.01", "--store", str(other))
    built = project().mlnb("build", "breast_cancer.ipynb", "--store", str(other), "--json")
    candidate = json.loads(built.stdout)["bento"]
    assert candidate != primary
    return {"primary": primary, "candidate": candidate}


@pytest.fixture(scope="module")
def served(versions: dict[str, Any], tmp_path_factory: pytest.TempPathFactory):
    """The primary alone, a shadow release and a canary release, started at once."""
    shadow = release(versions["primary"], "--shadow", versions["candidate"])
    canary = release(
        versions["primary"],
        "--canary",
        versions["candidate"],
        "--percent",
        "30",
        "--key",
        "mean radius",
        "--promote-if",
        "error_rate<=0.01,p99<=10x",
        "--rollback-if",
        "error_rate>0.05",
        "--after",
        "150",
        "--name",
        "breast_cancer_canary",
    )
    folders = {name: tmp_path_factory.mktemp(name) for name in ("alone", "shadow", "canary")}
    servers = {
        "alone": start_server(versions["primary"], {"MLNB_MONITOR_DIR": str(folders["alone"])}),
        "shadow": start_server(
            shadow["release"],
            # every request shadowed, however busy this machine is
            {"MLNB_MONITOR_DIR": str(folders["shadow"]), "MLNB_SHADOW_SATURATION": "off"},
        ),
        "canary": start_server(canary["release"], {"MLNB_MONITOR_DIR": str(folders["canary"])}),
    }
    try:
        for server in servers.values():
            wait_ready(server)
        yield {
            "servers": servers,
            "folders": folders,
            "shadow": shadow["release"],
            "canary": canary["release"],
            "shadow_build": Path(shadow["build_dir"]),
            **versions,
        }
    finally:
        for server in servers.values():
            server.stop()


def url(served: dict, name: str) -> str:
    server: Server = served["servers"][name]
    return server.url


def logged(folder: Path, columns: list[str]) -> pd.DataFrame:
    """Every row of a predictions log, complete segments and the open one."""
    frames = []
    for path in segments.segments(folder) + sorted(folder.glob(".*.partial")):
        for batch in segments.read_segment(path, columns=columns):
            frames.append(batch.to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_shadow_answers_are_the_primarys_and_the_candidate_sees_the_same_rows(
    served: dict,
) -> None:
    ids = [f"shadow-{i}" for i in range(120)]
    for i, request_id in enumerate(ids):
        status, answer, headers = send(url(served, "shadow"), row(i), request_id)
        alone = send(url(served, "alone"), row(i))
        assert status == 200 and headers["x-request-id"] == request_id
        assert headers["x-mlnb-version"] == "primary"
        assert answer == alone[1]  # the primary's answer, as the primary alone gives it
    folder = served["folders"]["shadow"]
    columns = ["request_id", "prediction"]
    for role in ("primary", "candidate"):
        wait_for(
            lambda role=role: (
                set(ids) <= set(logged(folder / role / "predictions", columns).request_id)
            ),
            f"the {role} logging every request",
        )
    primary = logged(folder / "primary" / "predictions", columns).set_index("request_id")
    candidate = logged(folder / "candidate" / "predictions", columns).set_index("request_id")
    assert set(ids) <= set(primary.index)
    both = primary.loc[ids].join(candidate.loc[ids], suffixes=("", "_candidate"))
    agreement = float((both.prediction == both.prediction_candidate).mean())
    assert 0.5 < agreement < 1.0  # C=0.01 is another model: it disagrees on some rows
    summary = json.loads(project().mlnb("monitor", str(folder), "--json").stdout)
    assert summary["agreement"]["rate"] == pytest.approx(agreement, abs=0.02)


def test_feedback_gives_each_versions_live_accuracy(served: dict) -> None:
    ids = [f"labelled-{i}" for i in range(60)]
    answers = {}
    for i, request_id in enumerate(ids):
        answers[request_id] = send(url(served, "shadow"), row(i), request_id)[1]
    labels = [
        {"request_id": rid, "label": LABELS[int(TARGET.iloc[i])]} for i, rid in enumerate(ids)
    ]
    folder = served["folders"]["shadow"]
    candidate = logged(folder / "candidate" / "predictions", ["request_id", "prediction"])
    wait_for(
        lambda: (
            set(ids) <= set(logged(folder / "candidate" / "predictions", ["request_id"]).request_id)
        ),
        "the candidate answering the labelled requests",
    )
    request = urllib.request.Request(
        url(served, "shadow") + "/feedback",
        data=json.dumps({"feedback": labels}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        taken = json.loads(response.read())
    assert taken["accepted"] == 60
    primary_version = served["primary"].partition(":")[2]
    candidate_version = served["candidate"].partition(":")[2]
    assert taken["matched"] == {primary_version: 60, candidate_version: 60}
    truth = [label["label"] for label in labels]
    primary_right = sum(
        answers[rid]["predictions"][0]["diagnosis"] == t for rid, t in zip(ids, truth, strict=True)
    )
    candidate = logged(folder / "candidate" / "predictions", ["request_id", "prediction"])
    by_id = candidate.drop_duplicates("request_id").set_index("request_id").prediction
    candidate_right = sum(by_id[rid] == t for rid, t in zip(ids, truth, strict=True))
    metrics = urllib.request.urlopen(url(served, "shadow") + "/metrics", timeout=10).read().decode()
    live = {
        line.split('version="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlnb_live_accuracy{")
    }
    assert live[primary_version] == pytest.approx(primary_right / 60)
    assert live[candidate_version] == pytest.approx(candidate_right / 60)


def test_promotion_under_load_drops_no_request_and_rollback_returns(served: dict) -> None:
    target = url(served, "shadow")
    shadow_folder = str(served["folders"]["shadow"])  # where the service logs and switches
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        # bounded: 20,000 requests a thread at most, and in time by `stop`, set within 15 s;
        # never by a count the load can reach before the switch is seen (a busy machine takes
        # longer to start `mlnb release promote`, while the server answers as fast as ever)
        for i in range(20_000):
            if stop.is_set():
                return
            status, _, headers = send(target, row(worker * 1000 + i))
            results.append((time.monotonic(), status, headers.get("x-mlnb-version", "")))

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    promoted_at = time.monotonic()
    switched = project().mlnb("release", "promote", shadow_folder, "--why", "under load")
    switched_at = time.monotonic()
    first_candidate = _first_answer_of("candidate", results, since=switched_at, wait_s=10)
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert "candidate answers now" in switched.stdout
    assert results and all(status == 200 for _, status, _ in results)
    before = Counter(v for at, _, v in results if at < promoted_at)
    after = Counter(v for at, _, v in results if at > switched_at + 0.6)
    assert before["primary"] > 0 and before["candidate"] == 0, before
    assert first_candidate is not None and first_candidate - switched_at < 1.0, (
        "the service follows a switch within a second",
        first_candidate and first_candidate - switched_at,
    )
    assert after["candidate"] > 0 and after["primary"] == 0, after
    project().mlnb("release", "rollback", shadow_folder, "--why", "back")
    time.sleep(0.6)
    assert send(target, row(1))[2]["x-mlnb-version"] == "primary"
    status = json.loads(project().mlnb("release", "status", shadow_folder, "--json").stdout)
    actions = [(s["action"], s["why"]) for s in status["switches"]]
    assert actions[-2:] == [("promote", "under load"), ("rollback", "back")]


def _first_answer_of(
    version: str, results: list[tuple[float, int, str]], *, since: float, wait_s: float
) -> float | None:
    """When the first answer of ``version`` after ``since`` arrived, waiting for it at most
    ``wait_s`` seconds (the load threads keep appending to ``results``)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = [at for at, _, v in list(results) if at > since and v == version]
        if seen or time.monotonic() > deadline:
            return min(seen) if seen else None
        time.sleep(0.05)


def test_canary_share_is_within_binomial_error(served: dict) -> None:
    target = url(served, "canary")
    n = 300  # distinct rows: the hash of each one's key value decides
    seen = Counter(send(target, row(i))[2]["x-mlnb-version"] for i in range(n))
    expected, sigma = 0.3 * n, (n * 0.3 * 0.7) ** 0.5
    assert abs(seen["candidate"] - expected) <= 4 * sigma, seen


def test_a_canary_key_sends_one_value_always_to_one_version(served: dict) -> None:
    by_value: dict[float, set[str]] = {}
    for i in range(90):
        rows = row(i % 30)
        version = send(url(served, "canary"), rows)[2]["x-mlnb-version"]
        by_value.setdefault(rows[0]["mean radius"], set()).add(version)
    assert all(len(versions) == 1 for versions in by_value.values()), by_value
    assert {v for versions in by_value.values() for v in versions} == {"primary", "candidate"}


def test_a_canary_is_promoted_by_its_rules(served: dict) -> None:
    """Once the candidate answered 150 requests within its rules."""
    target = url(served, "canary")
    status: dict[str, Any] = {}
    for i in range(1000, 1800):
        if send(target, row(i))[2]["x-mlnb-version"] != "candidate" or i % 10:
            continue
        status = json.loads(
            project().mlnb("release", "status", str(served["folders"]["canary"]), "--json").stdout
        )
        if status["routing"]["answering"] == "candidate":
            break
    else:
        raise AssertionError("the canary was not promoted by its rules within 800 requests")
    switch = status["switches"][-1]
    assert switch["by"] == "auto" and switch["action"] == "promote"
    assert "error_rate<=0.01" in switch["why"]
    assert switch["figures"]["candidate"]["requests"] >= 150
    time.sleep(0.6)
    assert {send(target, row(i))[2]["x-mlnb-version"] for i in range(20)} == {"candidate"}


def test_a_release_names_no_folder_of_the_build_machine(served: dict) -> None:
    """A release travels as a version does: its folders are relative to where it serves, and
    its build folder is one `bentoml build` accepts (no hidden part, beside the .mlnb store)."""
    built: Path = served["shadow_build"]
    root = str(project().root)
    assert not any(part.startswith(".") for part in built.parts), built
    spec = json.loads((built / "mlnb_release.json").read_text())
    assert spec["monitor_dir"] == f"mlnb-monitoring/{spec['release'].replace(':', '/')}"
    for role in ("primary", "candidate"):
        inner = json.loads((built / role / "mlnb_service.json").read_text())
        assert inner["monitor_dir"] == f"{spec['monitor_dir']}/{role}"
    holding = [
        str(path.relative_to(built))
        for path in built.rglob("*")
        if path.is_file()
        and path.suffix in (".json", ".py", ".yaml", ".html")
        and root in path.read_text(errors="replace")
    ]
    assert not holding, f"the project folder {root} is named in {holding}"


def test_a_release_of_versions_that_take_other_requests_is_refused() -> None:
    breast = project().build("breast_cancer.ipynb")["bento"]
    diabetes = project().build("diabetes.ipynb")["bento"]
    result = project().mlnb("release", breast, "--shadow", diabetes, check=False)
    assert result.returncode == 2
    assert "do not take the same request" in result.stderr
    assert "'age': only the candidate takes it" in result.stderr
    assert "'area error': only the primary takes it" in result.stderr
