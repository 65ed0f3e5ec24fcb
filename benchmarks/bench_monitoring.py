"""What monitoring costs a served Bento: p50 latency at concurrency 16, on against off.

Builds the breast cancer example once, then starts the same Bento twice, with
MLNB_MONITORING=off and on, and loads them in turns with wrk (1-row POST /predict, 16
connections, one client thread pinned to the last CPU when taskset exists): short bursts,
off and on alternating (off-on, then on-off) so both see the same machine. This 2-core VM's
speed drifts by 20-40% between minutes, far more than the 5% being measured; only bursts
seconds apart compare. Fresh pairs of servers (``--pairs``) average over start-up luck.
The target: the median of the per-burst ratios p50 on / p50 off at most 1.05. Results go to
benchmarks/results/monitoring.md.

    python benchmarks/bench_monitoring.py [--pairs 5] [--rounds 6] [--seconds 4]

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

from bench_serve import cpu_seconds  # this folder is on sys.path when run as a script

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


def wrk(url: str, body: str, seconds: float, folder: Path) -> dict[str, float]:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    pin = ["taskset", "-c", str(os.cpu_count() - 1)] if shutil.which("taskset") else []
    command = [*pin, "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(m.group(1)) if (m := re.search(r"Non-2xx.*?:\s+(\d+)", out)) else 0.0,
    }


def server_cpu_seconds(process: subprocess.Popen) -> float:
    """CPU time of the server and its processes (workers and their recorders) so far."""
    import psutil

    root = psutil.Process(process.pid)
    return cpu_seconds([root, *root.children(recursive=True)])


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="fresh off/on server pairs")
    parser.add_argument("--rounds", type=int, default=6, help="off/on bursts per pair")
    parser.add_argument("--seconds", type=int, default=4, help="seconds per burst")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    folder = Path(tempfile.mkdtemp(prefix="mlnb-bench-monitoring-"))
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    env["PYTHONHASHSEED"] = "0"  # one less difference between two servers' start-up luck
    shutil.copy(ROOT / "example_notebooks" / "breast_cancer.ipynb", folder)
    tag = json.loads(mlnb(["build", "breast_cancer.ipynb", "--json"], folder, env))["bento"]
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer(as_frame=True).data.iloc[0].to_dict()
    body = json.dumps({"rows": [row]})

    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for pair in range(args.pairs):
        servers = {mode: serve(tag, folder, env, mode) for mode in ("off", "on")}
        try:
            for _, url in servers.values():
                wrk(url + "/predict", body, 5, folder)  # warm up
            for burst in range(args.rounds):
                order = ("off", "on") if burst % 2 == 0 else ("on", "off")
                measured = {}
                for mode in order:
                    process, url = servers[mode]
                    before = server_cpu_seconds(process)
                    measured[mode] = wrk(url + "/predict", body, args.seconds, folder)
                    used = server_cpu_seconds(process) - before
                    answered = measured[mode]["rps"] * args.seconds
                    measured[mode]["cpu_us"] = used / answered * 1e6
                    results[mode].append(measured[mode])
                ratios.append(measured["on"]["p50_ms"] / measured["off"]["p50_ms"])
                cpu_ratios.append(measured["on"]["cpu_us"] / measured["off"]["cpu_us"])
                print(f"pair {pair + 1} burst {burst + 1}", measured, file=sys.stderr)
        finally:
            for process, _ in servers.values():
                stop(process)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    ratio = statistics.median(ratios)
    lines = [
        "# Monitoring cost (bench_monitoring.py)",
        "",
        f"Bento {tag} (breast cancer example), 1-row POST /predict, wrk 1 thread 16 connections.",
        f"{args.pairs} fresh off/on server pairs, each loaded in {args.rounds} alternating bursts "
        f"of {args.seconds} s per server after 5 s of warm-up; medians over all bursts.",
        "",
        "| monitoring | p50 ms | p99 ms | requests/s | server CPU per request | non-2xx |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("off", "on"):
        lines.append(
            f"| {mode} | {median(mode, 'p50_ms'):.2f} | {median(mode, 'p99_ms'):.2f} "
            f"| {median(mode, 'rps'):.0f} | {median(mode, 'cpu_us'):.0f} us "
            f"| {sum(r['non_2xx'] for r in results[mode]):.0f} |"
        )
    spread = f"{min(ratios):.3f} to {max(ratios):.3f}"
    lines += [
        "",
        f"p50 on / off, median of {len(ratios)} burst pairs = {ratio:.3f} (target: at most "
        f"1.05); the ratios spread from {spread}.",
        f"Server CPU per request (workers and recorders) on / off, median of the same pairs = "
        f"{statistics.median(cpu_ratios):.3f}.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
