"""What monitoring costs a served Bento: p50 latency at concurrency 16, on against off.

Builds the breast cancer example once and starts the same Bento twice, with
MLNB_MONITORING=off and on (1-row POST /predict, wrk with 16 connections), in two designs:

- ``shared core``: both servers loaded at once by two wrk clients, each server (its worker
  and, when on, its recorder process) pinned to a core of its own, so the recorder takes its
  CPU from its own worker, as on a machine with no idle core; the servers swap cores after
  every burst, so a faster core favours neither, and both see the same moment of the machine.
- ``spare core``: one server at a time, in alternating bursts (off-on, then on-off), wrk
  pinned to the last core and the server not pinned, so the recorder runs where the kernel
  finds room, as on a machine with CPU to spare.

A burst's p50 moves by several percent with the garbage collector's timing and this VM's
speed, so the benchmark runs many long bursts over fresh server pairs and reports the median
of the per-burst ratios with a bootstrap 90% interval. ``--calibrate`` first runs the same
bursts with monitoring off on both servers: the method's own error, which should give 1.00.
The target: p50 on / off at most 1.05. Results go to benchmarks/results/monitoring.md.

    python benchmarks/bench_monitoring.py [--pairs 2] [--bursts 8] [--seconds 15] [--calibrate]

Needs wrk (apt-get install wrk) and two cores. Servers bind 127.0.0.1 and stop when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
from serve_servers import cpu_seconds, free_port  # this folder is on sys.path as a script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "monitoring.md"
TARGET = 1.05


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    url: str

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def recorders(self) -> list[psutil.Process]:
        return [p for p in self.tree() if "mlnb.monitoring.recorder" in " ".join(p.cmdline())]

    def pin(self, core: int) -> None:
        self._set_cores([core])

    def pin_anywhere(self) -> None:
        self._set_cores(list(range(os.cpu_count() or 1)))

    def _set_cores(self, cores: list[int]) -> None:
        for process in self.tree():  # the arbiter, the worker and its recorder
            try:
                process.cpu_affinity(cores)
            except psutil.Error:
                continue


def mlnb(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"mlnb {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def serve(tag: str, cwd: Path, env: dict[str, str], label: str, monitoring: str) -> Server:
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
                    return Server(label, process, url)
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not get ready")


def stop(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)


def start_wrk(
    url: str, seconds: int, script: Path, core: int | None = None
) -> subprocess.Popen[str]:
    pin = ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []
    command = [*pin, "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_result(client: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = client.communicate()
    if client.returncode != 0:
        raise SystemExit(f"wrk failed:\n{out}")
    return {
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(m.group(1)) if (m := re.search(r"Non-2xx.*?:\s+(\d+)", out)) else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


Measured = list[dict[str, dict[str, float]]]  # per burst, per server label: wrk and CPU


def shared_core_bursts(servers: list[Server], count: int, seconds: int, script: Path) -> Measured:
    """Load all servers at once, ``count`` times, swapping their cores between bursts."""
    measured = []
    for burst in range(count):
        for index, server in enumerate(servers):
            server.pin((index + burst) % 2)
        measured.append(measure(servers, seconds, script, core=None))
    return measured


def spare_core_bursts(servers: list[Server], count: int, seconds: int, script: Path) -> Measured:
    """Load one server at a time, alternating which goes first, the client on the last core."""
    for server in servers:
        server.pin_anywhere()
    measured = []
    for burst in range(count):
        order = servers if burst % 2 == 0 else servers[::-1]
        results: dict[str, dict[str, float]] = {}
        for server in order:
            results |= measure([server], seconds, script, core=(os.cpu_count() or 2) - 1)
        measured.append(results)
    return measured


def measure(
    servers: list[Server], seconds: int, script: Path, core: int | None
) -> dict[str, dict[str, float]]:
    """One burst on ``servers`` at once: wrk's figures, and server CPU per request."""
    cpu = {s.label: cpu_seconds(s.tree()) for s in servers}
    recorder = {s.label: cpu_seconds(s.recorders()) for s in servers}
    clients = {s.label: start_wrk(s.url + "/predict", seconds, script, core) for s in servers}
    results = {label: wrk_result(client) for label, client in clients.items()}
    time.sleep(0.5)  # what a recorder still writes after the burst counts too
    for server in servers:
        result = results[server.label]
        answered = max(result["requests"], 1.0)
        result["cpu_us"] = (cpu_seconds(server.tree()) - cpu[server.label]) / answered * 1e6
        used = cpu_seconds(server.recorders()) - recorder[server.label]
        result["recorder_cpu_us"] = used / answered * 1e6
        result["rps"] = result["requests"] / seconds
    print("  burst:", json.dumps(results), file=sys.stderr)
    return results


DESIGNS = {"shared core": shared_core_bursts, "spare core": spare_core_bursts}


def run(
    design: str, modes: tuple[str, str], args: argparse.Namespace, built: tuple[str, Path, dict]
) -> Measured:
    """``args.pairs`` fresh server pairs, warmed up, then ``args.bursts`` bursts each."""
    tag, folder, env = built
    script = folder / "post.lua"
    labels = ("off", "on") if modes[0] != modes[1] else ("off", "off again")
    measured: Measured = []
    for pair in range(args.pairs):
        print(f"{design}, pair {pair + 1} of {args.pairs}: {' / '.join(labels)}", file=sys.stderr)
        # Which server starts first, takes core 0 first and is loaded first alternates between
        # pairs: a server started second ran a few percent faster in off / off calibration.
        order = list(zip(labels, modes, strict=True))
        order = order if pair % 2 == 0 else order[::-1]
        servers = [serve(tag, folder, env, label, mode) for label, mode in order]
        try:  # warm up: the heap and the collector reach their steady state under load
            DESIGNS[design](servers, 1, args.warmup, script)
            measured += DESIGNS[design](servers, args.bursts, args.seconds, script)
        finally:
            for server in servers:
                stop(server)
    return measured


def ratios(measured: Measured, key: str, a: str, b: str) -> list[float]:
    return [burst[b][key] / burst[a][key] for burst in measured]


def median_with_interval(values: list[float], rounds: int = 2000) -> tuple[float, float, float]:
    """The median and a bootstrap 90% interval of it."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return statistics.median(values), medians[rounds // 20], medians[-rounds // 20]


def ratio_row(measured: Measured, a: str, b: str, what: str) -> str:
    spread = ratios(measured, "p50_ms", a, b)
    p50, low, high = median_with_interval(spread)
    cpu, cpu_low, cpu_high = median_with_interval(ratios(measured, "cpu_us", a, b))
    return (
        f"| {what} | {len(measured)} | **{p50:.3f}** ({low:.3f} to {high:.3f}) "
        f"| {min(spread):.3f} to {max(spread):.3f} | {cpu:.3f} ({cpu_low:.3f} to {cpu_high:.3f}) |"
    )


def server_rows(measured: Measured, design: str) -> list[str]:
    def median(label: str, key: str) -> float:
        return statistics.median(burst[label][key] for burst in measured)

    rows = []
    for label in ("off", "on"):
        non_2xx = sum(burst[label]["non_2xx"] for burst in measured)
        rows.append(
            f"| {design} | {label} | {median(label, 'p50_ms'):.2f} | {median(label, 'p99_ms'):.2f} "
            f"| {median(label, 'rps'):.0f} | {median(label, 'cpu_us'):.0f} us "
            f"| {median(label, 'recorder_cpu_us'):.1f} us | {non_2xx:.0f} |"
        )
    return rows


def report(tag: str, args: argparse.Namespace, results: dict[str, dict[str, Measured]]) -> str:
    lines = [
        "# Monitoring cost (bench_monitoring.py)",
        "",
        f"Bento {tag} (breast cancer example), 1-row POST /predict, wrk 1 thread 16 "
        f"connections per server. {args.pairs} fresh server pairs per design, "
        f"{args.warmup} s of warm-up, then {args.bursts} bursts of {args.seconds} s each. "
        f"Machine: {os.cpu_count()} CPUs. Designs: see the benchmark's docstring.",
        "",
        "| design | monitoring | p50 ms | p99 ms | requests/s | server CPU per request "
        "| of it, recorder | non-2xx |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for design, measured in results.items():
        lines += server_rows(measured["on"], design)
    lines += [
        "",
        "Median of the per-burst ratios, with a bootstrap 90% interval:",
        "",
        "| design and comparison | bursts | p50 ratio | p50 ratio, lowest to highest burst "
        "| server CPU per request ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for design, measured in results.items():
        lines.append(ratio_row(measured["on"], "off", "on", f"{design}: on / off"))
        if measured.get("calibration"):
            lines.append(
                ratio_row(measured["calibration"], "off", "off again", f"{design}: off / off")
            )
    lines.append("")
    for design, measured in results.items():
        p50 = statistics.median(ratios(measured["on"], "p50_ms", "off", "on"))
        verdict = "meets" if p50 <= TARGET else "misses"
        lines.append(
            f"- {design}: p50 on / off {p50:.3f}, {verdict} the target (at most {TARGET})."
        )
    return "\n".join([*lines, ""])


def build(folder: Path) -> tuple[str, Path, dict[str, str]]:
    """The breast cancer example's Bento, in a BentoML store of its own."""
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    env["PYTHONHASHSEED"] = "0"  # one less difference between two servers' start-up luck
    shutil.copy(ROOT / "example_notebooks" / "breast_cancer.ipynb", folder)
    tag = json.loads(mlnb(["build", "breast_cancer.ipynb", "--json"], folder, env))["bento"]
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer(as_frame=True).data.iloc[0].to_dict()
    (folder / "post.lua").write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps({'rows': [row]}))}\n"
    )
    return tag, folder, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="fresh server pairs (even)")
    parser.add_argument("--bursts", type=int, default=8, help="bursts per pair")
    parser.add_argument("--seconds", type=int, default=15, help="seconds per burst")
    parser.add_argument("--warmup", type=int, default=20, help="seconds of load first")
    parser.add_argument("--design", choices=[*DESIGNS, "both"], default="both")
    parser.add_argument("--calibrate", action="store_true", help="first measure off against off")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("the benchmark needs two cores: one for each server")

    folder = Path(tempfile.mkdtemp(prefix="mlnb-bench-monitoring-"))
    built = build(folder)
    results: dict[str, dict[str, Measured]] = {}
    for design in DESIGNS if args.design == "both" else [args.design]:
        results[design] = {}
        if args.calibrate:
            results[design]["calibration"] = run(design, ("off", "off"), args, built)
        results[design]["on"] = run(design, ("off", "on"), args, built)
    text = report(built[0], args, results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
