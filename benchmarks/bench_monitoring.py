"""What monitoring costs a served Bento: p50 latency at concurrency 16, on against off.

Builds the breast cancer example once, then serves the same Bento with MLNB_MONITORING=off and
on, alternating (off, on, off, on) so that drift in the machine's load hits both alike, and
loads each with wrk (1-row POST /predict, 16 connections, one client thread). The target: p50
with monitoring within 5% of p50 without. Results go to benchmarks/results/monitoring.md.

    python benchmarks/bench_monitoring.py [--seconds 30] [--rounds 2]

Needs wrk (apt-get install wrk). Servers bind 127.0.0.1 and stop when the run ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "monitoring.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlnb(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"mlnb {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def serve(
    tag: str, cwd: Path, env: dict[str, str], monitoring: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlnb", "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env={**env, "MLNB_MONITORING": monitoring, "MLNB_MONITOR_DIR": str(cwd / f"logs-{port}")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not get ready")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def wrk(url: str, body: str, seconds: int, folder: Path) -> dict[str, float]:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(m.group(1)) if (m := re.search(r"Non-2xx.*?:\s+(\d+)", out)) else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="load per server (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs (default 2)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    folder = Path(tempfile.mkdtemp(prefix="mlnb-bench-monitoring-"))
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    shutil.copy(ROOT / "example_notebooks" / "breast_cancer.ipynb", folder)
    tag = json.loads(mlnb(["build", "breast_cancer.ipynb", "--json"], folder, env))["bento"]
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer(as_frame=True).data.iloc[0].to_dict()
    body = json.dumps({"rows": [row]})

    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        for mode in ("off", "on"):
            process, url = serve(tag, folder, env, mode)
            try:
                wrk(url + "/predict", body, 5, folder)  # warm up
                results[mode].append(wrk(url + "/predict", body, args.seconds, folder))
            finally:
                stop(process)
            print(mode, results[mode][-1], file=sys.stderr)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    ratio = median("on", "p50_ms") / median("off", "p50_ms")
    lines = [
        "# Monitoring cost (bench_monitoring.py)",
        "",
        f"Bento {tag} (breast cancer example), 1-row POST /predict, wrk 1 thread 16 connections,",
        f"{args.seconds} s per server after 5 s of warm-up, {args.rounds} off/on rounds; medians.",
        "",
        "| monitoring | p50 ms | p99 ms | requests/s | non-2xx |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in ("off", "on"):
        lines.append(
            f"| {mode} | {median(mode, 'p50_ms'):.2f} | {median(mode, 'p99_ms'):.2f} "
            f"| {median(mode, 'rps'):.0f} | {sum(r['non_2xx'] for r in results[mode]):.0f} |"
        )
    lines += ["", f"p50 on / off = {ratio:.3f} (target: at most 1.05)", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
