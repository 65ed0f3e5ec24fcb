"""One project for the build and serve tests: example notebooks run and built once per session.

Everything goes through the CLI in subprocesses, as a user runs it (`python -m mlnb run`,
`mlnb build --json`, `mlnb serve`), with a temporary BentoML home and store. Servers bind
127.0.0.1 and are stopped by the pid the test started.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import EXAMPLES, code_cell, notebook_json


def user_env(root: Path) -> dict[str, str]:
    """The environment a user's ``mlnb`` commands get: a BentoML home under ``root``, no
    tracking, and none of mlnb's own variables leaking in from the test run."""
    env = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("MLNB_STORE", "MLNB_MONITOR_DIR"):
        env.pop(name, None)
    return env


FALLBACK_CELLS = [
    code_cell(
        "import numpy as np\nfrom sklearn.datasets import load_breast_cancer\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.model_selection import train_test_split\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import FunctionTransformer, StandardScaler"
    ),
    code_cell(
        "bunch = load_breast_cancer(as_frame=True)\n"
        "X_train, X_test, y_train, y_test = train_test_split(\n"
        "    bunch.data, bunch.target, random_state=0\n)",
        tags=("mlnb:data:load",),
    ),
    code_cell(
        "model = make_pipeline(\n"
        "    FunctionTransformer(np.log1p), StandardScaler(), LogisticRegression(max_iter=1000)\n"
        ")\nmodel.fit(X_train, y_train)\naccuracy = model.score(X_test, y_test)",
        tags=("mlnb:train:fit",),
        mlnb={"version": 1, "model": "model", "metrics": ["accuracy"]},
    ),
]


NOTEBOOKS = ("breast_cancer.ipynb", "diabetes.ipynb", "fallback.ipynb")


@dataclass
class Project:
    root: Path
    env: dict[str, str]
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # notebook -> the first build's stderr

    @property
    def store(self) -> Path:
        return self.root / ".mlnb"

    def mlnb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "mlnb", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"mlnb {' '.join(args)} failed:\n{result.stderr}")
        return result

    def build(self, notebook: str) -> dict[str, Any]:
        """The first `mlnb build NOTEBOOK --json` of the session (it runs the notebook).

        The three notebooks are built at once on first use, two cores being better than one.
        """
        if notebook not in self.builds:
            self._build_all()
        return self.builds[notebook]

    def _build_all(self) -> None:
        started = {
            name: subprocess.Popen(
                [sys.executable, "-m", "mlnb", "build", name, "--json"],
                cwd=self.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in NOTEBOOKS
            if name not in self.builds
        }
        for name, process in started.items():
            out, err = process.communicate(timeout=900)
            if process.returncode != 0:
                raise AssertionError(f"mlnb build {name} failed:\n{err}")
            self.builds[name] = json.loads(out)
            self.logs[name] = err


@functools.cache
def project() -> Project:
    root = Path(tempfile.mkdtemp(prefix="mlnb-build-tests-"))
    atexit.register(shutil.rmtree, root, True)
    for name in ("breast_cancer.ipynb", "diabetes.ipynb"):
        shutil.copy(EXAMPLES / name, root / name)
    (root / "fallback.ipynb").write_text(json.dumps(notebook_json(FALLBACK_CELLS)))
    env = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("MLNB_STORE", None)
    env.pop("MLNB_MONITOR_DIR", None)
    return Project(root, env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(target: str, extra_env: dict[str, str] | None = None) -> Server:
    """`mlnb serve TARGET` on a free port of 127.0.0.1 (not yet waited for)."""
    the_project = project()
    port = free_port()
    log = the_project.root / f"serve-{port}.log"
    command = [sys.executable, "-m", "mlnb", "serve", target]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command,
            cwd=the_project.root,
            # as a shell starts it: $PWD names the folder it starts in, where a service logs
            # its monitoring unless $MLNB_MONITOR_DIR says otherwise
            env={**the_project.env, "PWD": str(the_project.root), **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    atexit.register(server.stop)
    return server


def wait_ready(server: Server, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"the server was not ready in {timeout} s:\n{server.log.read_text()}")


def post(url: str, body: bytes | dict | list, timeout: float = 30) -> tuple[int, Any]:
    """POST JSON (or raw bytes); the status and the decoded JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
