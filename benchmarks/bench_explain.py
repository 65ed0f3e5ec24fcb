"""/explain benchmark: one row of a 100-tree random forest, one core.

    python benchmarks/bench_explain.py [--requests 1000] [--keep]

A notebook training ``RandomForestClassifier(n_estimators=100)`` on the breast cancer data is
run and built by mlnb in a temporary folder with its own BentoML store (the forest converts
to ONNX, so /predict is answered by onnxruntime and /explain loads the native forest and
shap). ``mlnb serve`` then runs with its whole process tree on core 1 (``taskset -c 1``);
this client runs on core 0 and sends one request at a time over one keep-alive connection.

Measured: the worker's first /explain (it imports shap, loads the joblib forest and the
background rows and makes the TreeExplainer), then ``--requests`` /explain requests of one
row each (a different training row each time) after 50 to warm up, and as many /predict
requests for comparison. Results: ``benchmarks/results/explain.md`` (and ``explain.json``);
the target is a p50 of at most 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_MS = 20.0

CELLS = [
    ("", "import pandas as pd\nfrom sklearn.datasets import load_breast_cancer\n"
     "from sklearn.ensemble import RandomForestClassifier\n"
     "from sklearn.model_selection import train_test_split"),
    ("mlnb:data:load", "bunch = load_breast_cancer(as_frame=True)\n"
     "X_train, X_test, y_train, y_test = train_test_split(bunch.data, bunch.target, "
     "random_state=0)"),
    ("mlnb:train:fit", "model = RandomForestClassifier(n_estimators=100, random_state=0, "
     "n_jobs=1)\nmodel.fit(X_train, y_train)\naccuracy = model.score(X_test, y_test)"),
]  # fmt: skip


def notebook() -> dict[str, Any]:
    cells = []
    for tag, source in CELLS:
        metadata: dict[str, Any] = {"tags": [tag]} if tag else {}
        if tag.startswith("mlnb:train"):
            metadata["mlnb"] = {"version": 1, "model": "model", "metrics": ["accuracy"]}
        cells.append(
            {
                "cell_type": "code",
                "metadata": metadata,
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
        )
    return {
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", path, body, {"content-type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def timed(connection: http.client.HTTPConnection, path: str, bodies: list[bytes]) -> list[float]:
    """Milliseconds per request, one at a time; any answer but 200 stops the benchmark."""
    times = []
    for body in bodies:
        started = time.perf_counter()
        status, answer = post(connection, path, body)
        times.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise SystemExit(f"{path} answered {status}: {answer[:300]!r}")
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
        "requests": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        raise SystemExit("needs taskset and two cores")
    os.sched_setaffinity(0, {0})  # the client on core 0, the server on core 1
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-explain-"))
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("MLNB_STORE", None)
    server = None
    try:
        (work / "forest.ipynb").write_text(json.dumps(notebook()))
        built = subprocess.run(
            [sys.executable, "-m", "mlnb", "build", "forest.ipynb", "--json"],
            cwd=work, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if built.returncode != 0:
            raise SystemExit(f"mlnb build failed:\n{built.stderr}")
        build = json.loads(built.stdout)
        port = free_port()
        log = open(work / "serve.log", "wb")  # noqa: SIM115 - open while the server runs
        command = ["taskset", "-c", "1", sys.executable, "-m", "mlnb", "serve", build["bento"]]
        server = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        connection = wait_ready(port, server)
        result = measure(connection, args.requests, build)
        result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
        write(result)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def wait_ready(port: int, server: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited; see serve.log (--keep)")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return connection
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit("the server was not ready in 120 s")


def measure(connection: http.client.HTTPConnection, count: int, build: dict[str, Any]) -> dict:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).data
    rows = data.to_dict(orient="records")
    bodies = [json.dumps({"rows": [rows[i % len(rows)]]}).encode() for i in range(count + 50)]
    started = time.perf_counter()
    status, answer = post(connection, "/explain", bodies[0])
    first = (time.perf_counter() - started) * 1000
    if status != 200:
        raise SystemExit(f"/explain answered {status}: {answer[:300]!r}")
    described = json.loads(answer)
    timed(connection, "/explain", bodies[1:50])  # warm-up
    explain = summary(timed(connection, "/explain", bodies[50:]))
    timed(connection, "/predict", bodies[:50])
    predict = summary(timed(connection, "/predict", bodies[50:]))
    return {
        "model": "RandomForestClassifier(n_estimators=100), breast cancer, 30 features",
        "format": build["format"],
        "method": described["method"],
        "exact": described["exact"],
        "output": described["output"],
        "first_explain_ms": round(first, 1),
        "explain": explain,
        "predict": predict,
        "target_p50_ms": TARGET_MS,
        "meets_target": explain["p50_ms"] <= TARGET_MS,
        "load_before": os.getloadavg()[0],
    }


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explain.json").write_text(json.dumps(result, indent=2) + "\n")
    e, p = result["explain"], result["predict"]
    lines = [
        "# /explain benchmark (benchmarks/bench_explain.py)",
        "",
        f"{result['model']}; served {result['format']}; explained by the {result['method']} "
        f"explainer (exact: {result['exact']}), output: {result['output']}. Server on one "
        "core (taskset -c 1), client on the other, one request at a time, one row each.",
        "",
        "| route | p50 ms | p99 ms | mean ms | requests |",
        "|---|---|---|---|---|",
        f"| /explain | {e['p50_ms']} | {e['p99_ms']} | {e['mean_ms']} | {e['requests']} |",
        f"| /predict | {p['p50_ms']} | {p['p99_ms']} | {p['mean_ms']} | {p['requests']} |",
        "",
        f"First /explain of the worker (imports shap, loads the native forest and the "
        f"background, makes the explainer): {result['first_explain_ms']} ms.",
        f"Target: p50 <= {result['target_p50_ms']} ms: "
        f"{'met' if result['meets_target'] else 'NOT met'}.",
        "",
    ]
    (RESULTS / "explain.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
