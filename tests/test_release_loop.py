"""The loop closed (issue 18, point 5), played on this machine over real HTTP on 127.0.0.1.

A notebook trained on one CSV is served with its alert webhook pointing at
``python -m mlnb.alert_relay --run "bash templates/ci/retrain.sh ..."``. Traffic whose
features have shifted makes the service post a drift alert; the relay runs retrain.sh (a new
run on the new CSV, its check, its build, ``mlnb release --shadow``); the release is served,
promotes the candidate by its ``--promote-if`` rule after ``--after`` requests, and
``mlnb release status`` records the switch. Then the relay's own HTTP edges: bad bodies, and
the GitHub dispatch call it makes in place of a local command.
"""

from __future__ import annotations

import atexit
import json
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sklearn.datasets import load_breast_cancer

from mlnb.alert_relay import Attempt, Dispatch, Relay, RelayServer, dispatcher
from mlnb.bento.folder import build_folder
from mlnb.errors import MlnbError

from .build_support import Server, free_port, user_env, wait_ready
from .conftest import ROOT, code_cell, notebook_json

RETRAIN = ROOT / "templates" / "ci" / "retrain.sh"
SHIFTED = ["mean radius", "mean perimeter", "mean area", "worst area"]  # a new instrument
PROMOTE_IF = "agreement>=0.85"  # the candidate agrees with the live model on 0.94 of new rows
AFTER = 30
ROWS_PER_REQUEST = 20


def markdown_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


CELLS = [
    markdown_cell("# Breast cancer triage\n\nRetrained from the latest extract (`data_path`)."),
    code_cell(
        "import pandas as pd\nfrom sklearn.linear_model import LogisticRegression\n"
        "from sklearn.metrics import accuracy_score\n"
        "from sklearn.model_selection import train_test_split\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler"
    ),
    code_cell(
        'data_path = "cancer.csv"  # the latest extract\ntest_size = 0.25\nseed = 0\nC = 1.0',
        tags=("parameters",),
    ),
    markdown_cell("## Data"),
    code_cell(
        'frame = pd.read_csv(data_path)\nX = frame.drop(columns="target")\ny = frame["target"]\n'
        "X_train, X_test, y_train, y_test = train_test_split(\n"
        "    X, y, test_size=test_size, random_state=seed, stratify=y\n)",
        tags=("mlnb:data:load",),
    ),
    markdown_cell("## Train"),
    code_cell(
        "model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))\n"
        "model.fit(X_train, y_train)\n"
        "accuracy = float(accuracy_score(y_test, model.predict(X_test)))",
        tags=("mlnb:train:fit",),
        mlnb={"version": 1, "model": "model", "metrics": ["accuracy"]},
    ),
    markdown_cell("## Serve"),
    code_cell(
        'LABELS = ["malignant", "benign"]\n\n\n'
        "def predict(frame: pd.DataFrame) -> list[str]:\n"
        "    return [LABELS[int(label)] for label in model.predict(frame)]",
        tags=("mlnb:serve",),
    ),
]


def write_project(root: Path) -> None:
    """The notebook, the extract it was trained on and the new extract (a few features
    measured 1.4x larger, as a recalibrated instrument would give)."""
    cells = [{**cell, "id": f"cell-{number}"} for number, cell in enumerate(CELLS)]
    (root / "cancer.ipynb").write_text(json.dumps(notebook_json(cells), indent=1))
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(root / "cancer.csv", index=False)
    new = frame.copy()
    new[SHIFTED] = new[SHIFTED] * 1.4
    new.to_csv(root / "cancer_new.csv", index=False)


def new_rows() -> list[list[dict[str, float]]]:
    """Requests of the new data, as the live service gets them once the instrument changed."""
    data = load_breast_cancer(as_frame=True).data.sample(frac=1.0, random_state=1)
    data[SHIFTED] = data[SHIFTED] * 1.4
    records = data.to_dict(orient="records")
    return [records[i : i + ROWS_PER_REQUEST] for i in range(0, len(records), ROWS_PER_REQUEST)]


def predict(url: str, rows: list[dict[str, float]], request_id: str) -> tuple[str, list[Any]]:
    """POST /predict; who answered (``X-Mlnb-Version``, "" when absent) and the predictions."""
    request = urllib.request.Request(
        url + "/predict",
        data=json.dumps({"rows": rows}).encode(),
        headers={"content-type": "application/json", "x-request-id": request_id},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers["X-Request-Id"] == request_id
        answer = json.loads(response.read())
        return response.headers.get("X-Mlnb-Version", ""), answer["predictions"]


def serve_command(tag: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlnb",
        "serve",
        tag,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], Any], timeout: float, what: str, log: Callable[[], str]) -> Any:
    """``check()``'s first true value within ``timeout`` s, else a failure naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:g} s\n{log()}")


def tail(path: Path, chars: int = 4000) -> str:
    return (
        f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}" if path.exists() else ""
    )


@dataclass
class Loop:
    root: Path
    env: dict[str, str]
    live: str = ""
    release: str = ""
    relay_status: dict[str, Any] = field(default_factory=dict)
    before_promotion: list[str] = field(default_factory=list)  # who answered, in order
    after_promotion: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # mlnb release status --json
    seconds: dict[str, float] = field(default_factory=dict)
    processes: list[Server] = field(default_factory=list)

    def mlnb(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlnb", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"mlnb {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    def start(self, name: str, command: list[str], extra: dict[str, str] | None = None) -> Server:
        log = self.root / f"{name}.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                command,
                cwd=self.root,
                env={**self.env, **(extra or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        port = command[command.index("--port") + 1]
        server = Server(process, f"http://127.0.0.1:{port}", log)
        self.processes.append(server)
        atexit.register(server.stop)
        return server

    def logs(self) -> str:
        return "\n".join(tail(server.log) for server in self.processes)


def play(loop: Loop) -> None:
    """The whole loop, each phase timed into ``loop.seconds``."""
    began = time.monotonic()

    def lap(name: str) -> None:
        loop.seconds[name] = round(time.monotonic() - began - sum(loop.seconds.values()), 1)

    loop.live = json.loads(loop.mlnb("build", "cancer.ipynb", "--json"))["bento"]
    lap("first run and build")

    retrain = [
        *("bash", str(RETRAIN), "cancer.ipynb", "data_path", "cancer_new.csv", loop.live),
        *("--min", "accuracy=0.9", "--junit", "retrain-junit.xml"),
        *("--promote-if", PROMOTE_IF, "--after", str(AFTER)),
    ]
    command = shlex.join(retrain)
    relay = loop.start(
        "relay",
        [sys.executable, "-m", "mlnb.alert_relay", "--port", str(free_port()), "--run", command],
    )
    live = loop.start(
        "live",
        serve_command(loop.live),
        {
            "MLNB_ALERT_WEBHOOK": f"{relay.url}/alert",
            "MLNB_DRIFT_INTERVAL": "0.2",
            "MLNB_DRIFT_WINDOW": "200",
        },
    )
    wait_ready(live)
    lap("live service ready")

    requests = new_rows()
    sent = [0]

    def drifted_traffic_started_a_retraining() -> bool:
        version, _ = predict(live.url, requests[sent[0] % len(requests)], f"live-{sent[0]}")
        assert version == ""  # an ordinary service: no release header
        sent[0] += 1
        return bool(get_json(relay.url + "/status")["started"])

    wait_for(
        drifted_traffic_started_a_retraining,
        30,
        "no drift alert reached the relay (or it started no retraining)",
        loop.logs,
    )
    lap("drift alert received")
    live.stop()  # the retraining gets the machine's two cores

    def retraining_done() -> dict[str, Any] | None:
        status: dict[str, Any] = get_json(relay.url + "/status")
        return None if status["running"] else status

    loop.relay_status = wait_for(retraining_done, 120, "retrain.sh did not finish", loop.logs)
    attempt = loop.relay_status["attempts"][-1]
    assert attempt["ok"], f"retrain.sh failed ({attempt['returncode']})\n{loop.logs()}"
    loop.release = attempt["output"][-1]
    lap("retrain.sh (run, check, build, release)")

    release = loop.start("release", serve_command(loop.release))
    wait_ready(release)
    lap("release ready")

    answered = [0]

    def promoted() -> bool:
        for _ in range(5):
            rows = requests[answered[0] % len(requests)]
            version, predictions = predict(release.url, rows, f"release-{answered[0]}")
            assert len(predictions) == len(rows)
            answered[0] += 1
            if version == "candidate":
                return True
            loop.before_promotion.append(version)
        return False

    wait_for(promoted, 30, f"the release did not promote by '{PROMOTE_IF}'", loop.logs)
    for number in range(10):
        version, _ = predict(release.url, requests[number], f"after-{number}")
        loop.after_promotion.append(version)
    loop.status = json.loads(loop.mlnb("release", "status", loop.release, "--json"))
    lap("traffic until promoted")
    loop.seconds["total"] = round(time.monotonic() - began, 1)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """The loop, played once for the module; its folder (logs included) is pytest's to keep."""
    root = tmp_path_factory.mktemp("release-loop")
    write_project(root)
    played = Loop(root, {**user_env(root), "MLNB_PYTHON": sys.executable})
    try:
        play(played)
        print(f"\nrelease loop timings (s): {played.seconds}")
        yield played
    finally:
        for server in reversed(played.processes):
            server.stop()


@pytest.mark.slow
def test_a_drift_alert_starts_one_retraining(loop: Loop) -> None:
    status = loop.relay_status
    assert status["started"] == 1  # the other features' alerts were coalesced into it
    assert status["received"] == status["started"] + status["coalesced"] + status["ignored"]
    alert = status["attempts"][0]["alert"]
    assert alert["alert"] == "drift" and alert["bento"] == loop.live
    assert alert["feature"] in SHIFTED and alert["psi"] > alert["threshold"]


@pytest.mark.slow
def test_the_retraining_ran_on_the_new_data_and_released_it_in_shadow(loop: Loop) -> None:
    name, _, version = loop.release.partition(":")
    built = build_folder(loop.root / ".mlnb", name, version)  # mlnb-builds/ beside the store
    release = json.loads((built / "mlnb_release.json").read_text())
    assert release["mode"] == "shadow"
    assert release["promote_if"] == [PROMOTE_IF] and release["after"] == AFTER
    primary, candidate = release["versions"]["primary"], release["versions"]["candidate"]
    assert primary["tag"] == loop.live and candidate["tag"] != loop.live
    run = json.loads((loop.root / ".mlnb" / "runs" / candidate["run_id"] / "run.json").read_text())
    assert run["parameters"]["data_path"] == "cancer_new.csv"
    assert candidate["metrics"]["accuracy"] >= 0.9
    junit = (loop.root / "retrain-junit.xml").read_text()
    assert 'failures="0"' in junit and "metric accuracy &gt;= 0.9" in junit


@pytest.mark.slow
def test_the_release_promotes_the_candidate_by_its_rule(loop: Loop) -> None:
    # the primary answered until the candidate had been shadowed on AFTER requests
    assert len(loop.before_promotion) >= AFTER
    assert set(loop.before_promotion) == {"primary"}
    assert loop.after_promotion == ["candidate"] * 10


@pytest.mark.slow
def test_the_switch_is_recorded(loop: Loop) -> None:
    assert loop.status["routing"]["answering"] == "candidate"
    (switch,) = loop.status["switches"]
    assert switch["action"] == "promote" and switch["to"] == "candidate"
    assert switch["by"] == "auto" and "agreement" in switch["why"]
    assert switch["figures"]["candidate"]["agreement"] >= 0.85
    assert switch["figures"]["candidate"]["requests"] >= AFTER


def retrain_sh(loop: Loop, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(RETRAIN), *args],
        cwd=loop.root,
        env=loop.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_retrain_sh_stops_at_the_first_failing_step(loop: Loop) -> None:
    failed = retrain_sh(
        loop, "cancer.ipynb", "data_path", "cancer.csv", loop.live, "--min", "accuracy=0.99"
    )
    assert failed.returncode == 1 and failed.stdout == ""
    assert "step 2/4 (check) failed: run " in failed.stderr
    assert "accuracy = 0.958041958041958 is below 0.99" in failed.stderr
    assert "step 3/4" not in failed.stderr  # nothing built

    same = retrain_sh(loop, "cancer.ipynb", "data_path", "cancer.csv", loop.live)
    assert same.returncode == 3 and same.stdout == ""
    assert "nothing retrained: run " in same.stderr and "step 4/4" not in same.stderr

    unknown = retrain_sh(loop, "cancer.ipynb", "data_path", "x.csv", "cancer:0000")
    assert (
        unknown.returncode == 2
        and "the live Bento cancer:0000 is not in the BentoML store" in unknown.stderr
    )
    assert "step 1/4" not in unknown.stderr
    usage = retrain_sh(loop, "cancer.ipynb", "data_path")
    assert usage.returncode == 2 and "needs NOTEBOOK PARAMETER VALUE LIVE_TAG" in usage.stderr


# --- the relay's HTTP edges, in this process ---------------------------------------------


@pytest.fixture
def relay() -> Iterator[tuple[str, list[Attempt]]]:
    """A relay whose retraining records the alert (and takes 0.3 s)."""
    started: list[Attempt] = []

    def start(attempt: Attempt) -> None:
        started.append(attempt)
        time.sleep(0.3)
        attempt.returncode, attempt.ok = 0, True

    server = RelayServer(("127.0.0.1", 0), Relay(start, cooldown=0))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", started
    finally:
        server.shutdown()
        server.server_close()


def send(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_relay_starts_one_retraining_at_a_time(relay: tuple[str, list[Attempt]]) -> None:
    url, started = relay
    drift = {"bento": "cancer:1", "alert": "drift", "feature": "mean area", "psi": 0.9}
    assert send(url + "/alert", json.dumps(drift).encode())[1]["status"] == "started"
    assert send(url, json.dumps({**drift, "feature": "worst area"}).encode())[1] == {
        "status": "coalesced",
        "why": "a retraining is running",
    }
    contract = {"bento": "cancer:1", "alert": "contract", "feature": "x", "rule": "range"}
    assert send(url, json.dumps(contract).encode())[1]["status"] == "ignored"
    wait_for(lambda: not get_json(url + "/status")["running"], 5, "no end", lambda: "")
    assert send(url, json.dumps({**drift, "alert": "accuracy"}).encode())[1]["status"] == "started"
    assert [a.alert["feature"] for a in started] == ["mean area", "mean area"]
    status = get_json(url + "/status")
    assert (status["received"], status["started"], status["coalesced"], status["ignored"]) == (
        4,
        2,
        1,
        1,
    )


def test_only_a_retraining_that_never_started_frees_the_cooldown() -> None:
    never_started = iter([True, False])  # a dispatch GitHub refused; a command that failed

    def start(attempt: Attempt) -> None:
        attempt.never_started = next(never_started)

    relay = Relay(start, cooldown=600)
    drift = {"bento": "cancer:1", "alert": "drift", "feature": "mean area"}

    def idle() -> bool:
        return not relay.status()["running"]

    assert relay.receive(drift)["status"] == "started"
    wait_for(idle, 5, "the first attempt did not end", lambda: "")
    assert relay.receive(drift)["status"] == "started"  # tried again at once
    wait_for(idle, 5, "the second attempt did not end", lambda: "")
    assert relay.receive(drift)["status"] == "coalesced"  # it ran: the cooldown holds
    assert relay.status()["failed"] == 2


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b'{"alert": "drift"', {}, 400, "invalid"),
        (b"NaN", {}, 400, "invalid"),
        (b"\xff\xfe", {}, 400, "invalid"),
        (b"[" * 50 + b"]" * 50, {}, 400, "too-deep"),
        (b"[1, 2]", {}, 422, "not-an-alert"),
        (b'{"alert": 3}', {}, 422, "not-an-alert"),
        (b"{}", {"content-type": "text/plain"}, 415, "not-json"),
        (b" " * 20_000, {}, 413, "too-large"),
    ],
)
def test_a_bad_body_gets_a_json_error(
    relay: tuple[str, list[Attempt]], body: bytes, headers: dict[str, str], status: int, error: str
) -> None:
    url, started = relay
    got, answer = send(url, body, headers)
    assert (got, answer["error"]) == (status, error)
    assert answer["message"] and "Traceback" not in answer["message"]
    assert not started


def test_other_requests_get_json_errors(relay: tuple[str, list[Attempt]]) -> None:
    url, _ = relay
    assert send(url + "/nope", b"{}")[0] == 404
    request = urllib.request.Request(url, method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 405 and json.loads(error.value.read())["error"]


class FakeGitHub(BaseHTTPRequestHandler):
    """GitHub's dispatch endpoint as the relay meets it: 204, or 401 for a wrong token."""

    calls: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeGitHub.calls.append((self.path, dict(self.headers), body))
        self.send_response(204 if self.headers["Authorization"] == "Bearer good" else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_a_dispatch_carries_the_alert_and_the_workflow_inputs() -> None:
    github = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=github.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{github.server_address[1]}/repos/me/models/dispatches"
    env = {
        "MLNB_DISPATCH_URL": url,
        "MLNB_DISPATCH_TOKEN": "good",
        "MLNB_RETRAIN_NOTEBOOK": "cancer.ipynb",
        "MLNB_RETRAIN_PARAMETER": "data_path",
        "MLNB_RETRAIN_VALUE": "s3://extracts/2026-12.csv",
    }
    alert = {"bento": "cancer:1", "alert": "drift", "feature": "mean area", "psi": 0.9}
    try:
        good = Attempt(alert)
        dispatcher(Dispatch.from_env(env))(good)
        bad = Attempt(alert)
        dispatcher(Dispatch.from_env({**env, "MLNB_DISPATCH_TOKEN": "stale"}))(bad)
    finally:
        github.shutdown()
        github.server_close()
    assert good.ok and good.returncode == 204
    assert not bad.ok and bad.error == "GitHub answered 401 Unauthorized"
    path, headers, body = FakeGitHub.calls[0]
    assert path == "/repos/me/models/dispatches"
    assert headers["Accept"] == "application/vnd.github+json"
    assert body == {
        "event_type": "mlnb-alert",
        "client_payload": {
            "alert": alert,
            "notebook": "cancer.ipynb",
            "parameter": "data_path",
            "value": "s3://extracts/2026-12.csv",
            "live": "cancer:1",  # the alert's Bento, with no MLNB_RETRAIN_LIVE
        },
    }


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "MLNB_DISPATCH_URL and MLNB_DISPATCH_TOKEN are not set"),
        ({"MLNB_DISPATCH_URL": "https://api.github.com/x"}, "MLNB_DISPATCH_TOKEN is not set"),
        (
            {"MLNB_DISPATCH_URL": "http://example.com/x", "MLNB_DISPATCH_TOKEN": "t"},
            "not an https URL",
        ),
    ],
)
def test_a_dispatch_needs_a_token_and_https(env: dict[str, str], says: str) -> None:
    with pytest.raises(MlnbError, match=says):
        Dispatch.from_env(env)


def test_the_relay_command_names_what_is_missing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlnb.alert_relay", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "MLNB_DISPATCH_URL": "https://api.github.com/x"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "MLNB_DISPATCH_TOKEN is not set" in done.stderr and "--run COMMAND" in done.stderr
