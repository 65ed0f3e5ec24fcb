"""The servers ``bench_serve.py`` compares, and how it starts, pins, watches and stops them.

Every server is one worker on 127.0.0.1, started as ``taskset -c CORE <command>`` in a
session of its own, so that its whole process tree (the arbiter, the worker, a monitoring
recorder the worker spawns) inherits the one core and can be stopped as a group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HAND_SKLEARN = """
from typing import Any

import bentoml
import joblib
import pandas as pd

from bench_paths import COLUMNS, JOBLIB_PATH

LABELS = ["malignant", "benign"]


@bentoml.service
class HandSklearn:
    def __init__(self) -> None:
        self.model = joblib.load(JOBLIB_PATH)

    @bentoml.api
    def predict(self, rows: list[dict[str, float]]) -> dict[str, Any]:
        frame = pd.DataFrame(rows, columns=COLUMNS)
        proba = self.model.predict_proba(frame)[:, 1]
        return {"predictions": [
            {"diagnosis": LABELS[int(p >= 0.5)], "benign_probability": round(float(p), 6)}
            for p in proba
        ]}
"""

HAND_ONNX = """
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort

from bench_paths import COLUMNS, ONNX_PATH

LABELS = ["malignant", "benign"]


@bentoml.service
class HandOnnx:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(ONNX_PATH, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api
    def predict(self, rows: list[dict[str, float]]) -> dict[str, Any]:
        x = np.array([[row[c] for c in COLUMNS] for row in rows], dtype=np.float64)
        _, proba = self.session.run(None, {self.input: x})
        return {"predictions": [
            {"diagnosis": LABELS[int(p >= 0.5)], "benign_probability": round(float(p), 6)}
            for p in proba[:, 1]
        ]}
"""

FLOOR = """
import json

import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench_paths import COLUMNS, ONNX_PATH

LABELS = ["malignant", "benign"]
session = ort.InferenceSession(ONNX_PATH, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name


async def predict(request):
    rows = json.loads(await request.body())["rows"]
    x = np.array([[row[c] for c in COLUMNS] for row in rows], dtype=np.float64)
    _, proba = session.run(None, {name: x})
    return JSONResponse({"predictions": [
        {"diagnosis": LABELS[int(p >= 0.5)], "benign_probability": round(float(p), 6)}
        for p in proba[:, 1]
    ]})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
"""

# key, label; the order of the results table's columns.
SERVERS = {
    "generated": "generated, monitoring on",
    "generated_nomon": "generated, monitoring off",
    "hand_onnx": "hand-written BentoML + ONNX",
    "hand_sklearn": "hand-written BentoML + sklearn",
    "floor": "floor: Starlette + onnxruntime",
}
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
QUIET_CORES = 0.05  # a tree using less than this share of a core is idle


@dataclass
class Spec:
    """How to start one server: its command (without the pinning) and environment."""

    key: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    monitor_dir: Path | None = None

    @property
    def label(self) -> str:
        return SERVERS[self.key]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"


def write_hand_services(folder: Path, paths: dict[str, Any]) -> None:
    """The hand-written services' modules, and the paths they load the model from."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench_paths.py").write_text("".join(f"{k} = {v!r}\n" for k, v in paths.items()))
    for module, source in (
        ("hand_sklearn", HAND_SKLEARN),
        ("hand_onnx", HAND_ONNX),
        ("floor", FLOOR),
    ):
        (folder / f"{module}.py").write_text(textwrap.dedent(source).lstrip())


def make_specs(
    keys: list[str], work: Path, env: dict[str, str], python: str, bento: str
) -> list[Spec]:
    hand = work / "hand"
    hand_env = {**env, "PYTHONPATH": str(hand)}
    local = ["--host", "127.0.0.1"]
    specs = []
    for key in keys:
        port = free_port()
        if key.startswith("generated"):
            monitor = work / "monitoring" / key
            extra = {"MLNB_MONITOR_DIR": str(monitor)}
            if key == "generated_nomon":
                extra["MLNB_MONITORING"] = "off"
            command = [python, "-m", "mlnb", "serve", bento, *local, "--port", str(port)]
            specs.append(Spec(key, command, {**env, **extra}, work, port, monitor))
        elif key == "floor":
            command = [python, "-m", "uvicorn", "floor:app", *local, "--port", str(port)]
            command += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
            specs.append(Spec(key, command, hand_env, hand, port))
        else:
            service = {
                "hand_onnx": "hand_onnx:HandOnnx",
                "hand_sklearn": "hand_sklearn:HandSklearn",
            }
            command = [python, "-m", "bentoml", "serve", service[key], *local, "--port", str(port)]
            specs.append(Spec(key, command, hand_env, hand, port))
    return specs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A running server: its process tree, pinned to ``core``."""

    def __init__(self, spec: Spec, core: int, log: Path) -> None:
        self.spec = spec
        self.core = core
        self.log = log
        self.pinning_notes: list[str] = []
        with open(log, "ab") as out:
            self.spawned = time.perf_counter()
            self.process = subprocess.Popen(
                ["taskset", "-c", str(core), *spec.command],
                cwd=spec.cwd,
                env=spec.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_first_answer(self, body: bytes) -> float:
        """Seconds from spawning to the first 200 answer of POST /predict."""
        deadline = self.spawned + STARTUP_TIMEOUT
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.spec.label} exited while starting:\n{self.log_tail()}")
            request = urllib.request.Request(
                self.spec.url, data=body, headers={"content-type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                    if response.status == 200:
                        return time.perf_counter() - self.spawned
            except OSError:  # refused, reset, 503 while the worker starts, a timeout
                pass
            time.sleep(0.05)
        raise SystemExit(
            f"{self.spec.label} gave no 200 answer in {STARTUP_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def check_pinning(self) -> bool:
        """Whether every thread of every process of the tree is on ``core`` alone (a library
        may set its threads' affinity itself); re-pins any that is not."""
        held = True
        for process in self.tree():
            try:
                threads = [thread.id for thread in process.threads()]
                name = " ".join(process.cmdline()[:4])
            except psutil.Error:
                continue
            for tid in threads:
                try:
                    cores = sorted(os.sched_getaffinity(tid))
                    if cores != [self.core]:
                        held = False
                        self.pinning_notes.append(f"{name} (thread {tid}) was on cores {cores}")
                        os.sched_setaffinity(tid, {self.core})
                except OSError:  # the thread ended meanwhile
                    continue
        return held

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.tree())

    def rss_mb(self) -> tuple[float, int]:
        """The summed RSS of the tree, and how many processes it has."""
        tree = self.tree()
        total = 0
        for process in tree:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20, len(tree)

    def pss_mb(self) -> float:
        """The summed PSS of the tree: shared pages counted once across it."""
        total = 0
        for process in self.tree():
            try:
                total += process.memory_full_info().pss
            except (psutil.Error, AttributeError):
                continue
        return total / 2**20

    def settle(self, timeout: float) -> float:
        """Wait (at most ``timeout`` s) until the tree is idle; the seconds it took."""
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            before = self.cpu_seconds()
            time.sleep(0.5)
            if self.cpu_seconds() - before < 0.5 * QUIET_CORES:
                break
        return time.perf_counter() - began

    def stop(self) -> None:
        """SIGTERM to the session, then SIGKILL to whatever is left after a bound."""
        tree = self.tree()
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _, alive = psutil.wait_procs(tree, timeout=10)
        for process in alive:
            try:
                process.kill()
            except psutil.Error:
                continue


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU seconds of ``processes``, those that are gone left out."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def request_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"rows": rows}).encode()
