"""Serving benchmark: the service `mlnb build` generates against hand-written peers, in one run.

    python benchmarks/bench_serve.py [--soak 75] [--round 4] [--rounds 3] [--out FILE]

On one model (the breast cancer example, built from a real `mlnb run`):

- ``generated``: the Bento `mlnb build` made (ONNX + the notebook's serve code, request
  validation, monitoring hooks on), served by ``mlnb serve``;
- ``generated, monitoring off`` and ``generated, GC tuning off``: the same Bento with
  ``MLNB_MONITORING=off`` / ``MLNB_GC_TUNING=off``, to show what each costs or buys;
- ``hand BentoML + sklearn`` and ``hand BentoML + ONNX``: what a user writes by hand with
  ``@bentoml.service`` / ``@bentoml.api`` over the same model (and the same answer: the
  serve code's diagnosis and probability per row);
- ``floor: Starlette + onnxruntime``: a bare Starlette app under uvicorn, the same ONNX file.

Every server has one worker and binds 127.0.0.1; the load generator is a small keep-alive
HTTP/1.1 client in this process. Two phases:

1. Soak: each server alone, 1-row requests at concurrency 16 for ``--soak`` seconds (70 s or
   more: BentoML's heap grows for a minute under load), with the server's RSS before and
   after and its CPU time per request.
2. Interleaved rounds: every scenario (1 row at concurrency 1 and 16, 256 rows at
   concurrency 4) on every server in turn, ``--rounds`` times, so that noise from other work
   on the machine falls on all servers alike; the table gives the median round.

After every burst the benchmark waits until that server is idle again, and its CPU per
request includes what it spent meanwhile: a monitored server's recorder works off its backlog
then, and neither slows the next burst nor goes uncounted.

Results go to ``benchmarks/results/serve.md`` (and ``serve.json``).
"""

from __future__ import annotations

import argparse
import asyncio
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
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MAX_REQUESTS = 3_000_000  # a bound on any one measurement, whatever its duration

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

SCENARIOS = [  # (name, rows per request, concurrency)
    ("1 row, c=1", 1, 1),
    ("1 row, c=16", 1, 16),
    ("256 rows, c=4", 256, 4),
]


@dataclass
class Target:
    key: str
    label: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    soak: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak", type=float, default=75.0, help="seconds per server (>= 70)")
    parser.add_argument("--round", type=float, default=4.0, help="seconds per interleaved run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.md")
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="only re-render a saved serve.json"
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        write_report(saved, args.out)
        return 0

    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-serve-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("MLNB_STORE", None)
    targets: list[Target] = []
    load_before = os.getloadavg()[0]
    try:
        built, rows = prepare(work, env)
        targets = make_targets(work, env, built)
        for target in targets:
            start(target)
        for target in targets:
            wait_ready(target, rows[:1])
        for target in targets:
            print(f"soak {target.label}: {args.soak:.0f} s, 1 row, c=16", flush=True)
            target.soak = soak(target, rows[:1], args.soak)
            print(f"  {summary(target.soak)}", flush=True)
        for number in range(args.rounds):
            for scenario, size, concurrency in SCENARIOS:
                for target in targets:
                    result = measure(target, rows[:size], concurrency, args.round)
                    target.rounds.setdefault(scenario, []).append(result)
                    print(f"round {number + 1} {scenario} {target.label}: {summary(result)}")
        meta = {
            "date": time.strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "bento": built["bento"],
            "format": built["format"],
            "soak_seconds": args.soak,
            "round_seconds": args.round,
            "rounds": args.rounds,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        saved = {
            "meta": meta,
            "targets": {
                t.key: {"label": t.label, "soak": t.soak, "rounds": t.rounds} for t in targets
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(saved, indent=2) + "\n")
        write_report(saved, args.out)
    finally:
        for target in targets:
            stop(target)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def prepare(work: Path, env: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run and build the breast cancer example; the held-out rows to send."""
    import pandas as pd

    shutil.copy(ROOT / "example_notebooks" / "breast_cancer.ipynb", work)
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "build", "breast_cancer.ipynb", "--json"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    built = json.loads(result.stdout)
    store = work / ".mlnb"
    record = json.loads((store / "runs" / built["run_id"] / "run.json").read_text())
    frame = pd.read_parquet(store / record["training_data"]["holdout"]["path"])
    rows = frame.to_dict(orient="records")
    rows = (rows * (256 // len(rows) + 1))[:256]
    name, version = built["model"].split(":")
    paths = {
        "COLUMNS": list(frame.columns),
        "JOBLIB_PATH": str(store / record["model"]["path"]),
        "ONNX_PATH": str(work / "bentoml" / "models" / name / version / "model.onnx"),
    }
    hand = work / "hand"
    hand.mkdir()
    (hand / "bench_paths.py").write_text(
        "".join(f"{key} = {value!r}\n" for key, value in paths.items())
    )
    for module, source in (("hand_sklearn", HAND_SKLEARN), ("hand_onnx", HAND_ONNX)):
        (hand / f"{module}.py").write_text(textwrap.dedent(source).lstrip())
    (hand / "floor.py").write_text(textwrap.dedent(FLOOR).lstrip())
    return built, rows


def make_targets(work: Path, env: dict[str, str], built: dict[str, Any]) -> list[Target]:
    hand = work / "hand"
    hand_env = {**env, "PYTHONPATH": str(hand)}
    python = sys.executable

    def mlnb_serve(port: int) -> list[str]:
        return [python, "-m", "mlnb", "serve", built["bento"], "--port", str(port)]

    def bentoml_serve(target: str, port: int) -> list[str]:
        command = [python, "-m", "bentoml", "serve", target]
        return [*command, "--host", "127.0.0.1", "--port", str(port)]

    specs = [
        ("generated", "generated (mlnb build)", None, {}),
        ("generated_nomon", "generated, monitoring off", None, {"MLNB_MONITORING": "off"}),
        ("generated_nogc", "generated, GC tuning off", None, {"MLNB_GC_TUNING": "off"}),
        ("hand_sklearn", "hand BentoML + sklearn", "hand_sklearn:HandSklearn", {}),
        ("hand_onnx", "hand BentoML + ONNX", "hand_onnx:HandOnnx", {}),
        ("floor", "floor: Starlette + onnxruntime", "floor", {}),
    ]
    targets = []
    for key, label, module, extra in specs:
        port = free_port()
        if module is None:
            monitor = {"MLNB_MONITOR_DIR": str(work / "monitoring" / key)}
            target_env = {**env, **monitor, **extra}
            targets.append(Target(key, label, mlnb_serve(port), target_env, work, port))
        elif module == "floor":
            command = [python, "-m", "uvicorn", "floor:app", "--host", "127.0.0.1"]
            command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
            targets.append(Target(key, label, command, hand_env, hand, port))
        else:
            targets.append(Target(key, label, bentoml_serve(module, port), hand_env, hand, port))
    return targets


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(target: Target) -> None:
    log = open(target.cwd / f"{target.key}.log", "wb")  # noqa: SIM115 - lives with the server
    target.process = subprocess.Popen(
        target.command, cwd=target.cwd, env=target.env, stdout=log, stderr=subprocess.STDOUT
    )


def stop(target: Target) -> None:
    process = target.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_ready(target: Target, rows: list[dict[str, Any]], timeout: float = 180.0) -> None:
    body = json.dumps({"rows": rows}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert target.process is not None
        if target.process.poll() is not None:
            log = (target.cwd / f"{target.key}.log").read_text(errors="replace")
            raise SystemExit(f"{target.label} exited:\n{log[-3000:]}")
        request = urllib.request.Request(
            target.url, data=body, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{target.label} was not ready in {timeout} s")


QUIET_CORES = 0.05  # servers using less CPU than this between bursts are idle


def server_processes(target: Target) -> list[psutil.Process]:
    assert target.process is not None
    main = psutil.Process(target.process.pid)
    return [main, *main.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def measure(
    target: Target, rows: list[dict[str, Any]], concurrency: int, seconds: float
) -> dict[str, Any]:
    processes = server_processes(target)
    cpu_before, rss_before = cpu_seconds(processes), rss_mb(processes)
    result = asyncio.run(load(target.url, rows, concurrency, seconds))
    rss_after = rss_mb(processes)
    settle([target])  # work the server defers (the monitoring recorder's backlog) counts too
    cpu = cpu_seconds(processes) - cpu_before
    result["server_cpu_us_per_request"] = round(cpu / max(result["requests"], 1) * 1e6, 1)
    result["rss_mb_before"] = round(rss_before, 1)
    result["rss_mb_after"] = round(rss_after, 1)
    return result


def settle(targets: list[Target], timeout: float = 120.0) -> None:
    """Wait until no server is still busy with an earlier burst, so none slows the next one."""
    processes = [process for target in targets for process in server_processes(target)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(processes)
        time.sleep(0.5)
        if cpu_seconds(processes) - before < 0.5 * QUIET_CORES:
            return


def soak(target: Target, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    result = measure(target, rows, 16, seconds)
    result["seconds"] = seconds
    return result


async def load(
    url: str, rows: list[dict[str, Any]], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Keep-alive HTTP/1.1 POSTs from ``concurrency`` connections for ``seconds``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"rows": rows}).encode()
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at and len(latencies) < MAX_REQUESTS:
                began = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _content_length(head)
                await reader.readexactly(length)
                if head[9:12] != b"200":
                    errors += 1
                latencies.append(time.perf_counter() - began)
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    count = len(latencies)
    return {
        "requests": count,
        "errors": errors,
        "rps": round(count / elapsed, 1),
        "p50_ms": round(latencies[count // 2] * 1e3, 2),
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1e3, 2),
        "max_ms": round(latencies[-1] * 1e3, 1),
    }


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError(f"a response without content-length: {head[:200]!r}")


def summary(result: dict[str, Any]) -> str:
    return (
        f"{result['rps']:.0f} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms, {result['server_cpu_us_per_request']} us CPU/req, "
        f"RSS {result['rss_mb_before']:.0f} -> {result['rss_mb_after']:.0f} MB, "
        f"{result['errors']} errors"
    )


def median_round(results: list[dict[str, Any]]) -> dict[str, Any]:
    by_rps = sorted(results, key=lambda r: r["rps"])
    middle = dict(by_rps[len(by_rps) // 2])
    middle["p50_ms"] = statistics.median(r["p50_ms"] for r in results)
    return middle


def write_report(saved: dict[str, Any], out: Path) -> None:
    """The markdown tables of a saved run (``serve.json``)."""
    meta, targets = saved["meta"], saved["targets"]

    def rounds(key: str, scenario: str) -> dict[str, Any]:
        return median_round(targets[key]["rounds"][scenario])

    lines = [
        "# Serving benchmark",
        "",
        f"`python benchmarks/bench_serve.py` on {meta['date']}: Python {meta['python']}, "
        f"{meta['cores']} cores, one server worker each, the load generator on the same "
        f"machine. Model: the breast cancer example ({meta['bento']}, served with "
        f"{meta['format']}). Load average before and after: {meta['load_average'][0]}, "
        f"{meta['load_average'][1]}; other work on a shared machine slows every server, so "
        "compare ratios within one run, not figures across runs.",
        "",
        f"## Soak: 1-row requests at concurrency 16, {meta['soak_seconds']:.0f} s per server, "
        "alone",
        "",
        "| server | req/s | p50 ms | p99 ms | max ms | server CPU us/req | RSS MB before, after |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for target in targets.values():
        s = target["soak"]
        lines.append(
            f"| {target['label']} | {s['rps']:.0f} | {s['p50_ms']} | {s['p99_ms']} | "
            f"{s['max_ms']} | {s['server_cpu_us_per_request']:.0f} | "
            f"{s['rss_mb_before']:.0f}, {s['rss_mb_after']:.0f} |"
        )
    lines += [
        "",
        f"## Interleaved: median of {meta['rounds']} rounds of {meta['round_seconds']:.0f} s "
        "per server and scenario",
        "",
        "| server | " + " | ".join(f"{name}: req/s (p50 ms)" for name, _, _ in SCENARIOS) + " |",
        "|---|" + "---:|" * len(SCENARIOS),
    ]
    for key, target in targets.items():
        cells = []
        for name, _, _ in SCENARIOS:
            m = rounds(key, name)
            cells.append(f"{m['rps']:.0f} ({m['p50_ms']:.2f})")
        lines.append(f"| {target['label']} | " + " | ".join(cells) + " |")
    lines += ["", "## Against the targets", ""]
    for mine in ("generated", "generated_nomon"):
        for peer, want, text in (
            ("hand_sklearn", 1.10, "target at least 1.1x"),
            ("hand_onnx", 0.95, "target at least 0.95x"),
            ("floor", None, "the floor"),
        ):
            ratios = []
            for name, _, _ in SCENARIOS:
                ratio = rounds(mine, name)["rps"] / rounds(peer, name)["rps"]
                ratios.append(f"{name} {ratio:.2f}x")
            soak_ratio = targets[mine]["soak"]["rps"] / targets[peer]["soak"]["rps"]
            met = "" if want is None else (" (met)" if soak_ratio >= want else " (not met)")
            lines.append(
                f"- {targets[mine]['label']} vs {targets[peer]['label']} ({text}): "
                f"soak {soak_ratio:.2f}x{met}; " + "; ".join(ratios)
            )
    on, off = rounds("generated", "1 row, c=16"), rounds("generated_nomon", "1 row, c=16")
    lines.append(
        f"- monitoring hooks on vs off, p50 at c=16: {on['p50_ms']:.2f} ms vs "
        f"{off['p50_ms']:.2f} ms ({on['p50_ms'] / off['p50_ms'] - 1:+.0%}); soak "
        f"{targets['generated']['soak']['p50_ms']} vs "
        f"{targets['generated_nomon']['soak']['p50_ms']} ms"
    )
    gc_on, gc_off = targets["generated"]["soak"], targets["generated_nogc"]["soak"]
    lines.append(
        f"- GC tuning on vs off (soak): {gc_on['rps']:.0f} vs {gc_off['rps']:.0f} req/s, "
        f"max latency {gc_on['max_ms']} vs {gc_off['max_ms']} ms"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
