"""Serving benchmark: the service `mlnb build` generates against hand-written peers, per core.

    python benchmarks/bench_serve.py [--rounds 3] [--seconds 8] [--servers KEY,...]
    python benchmarks/bench_serve.py --quick      # one round of short bursts, about 2 minutes

Sized the way users size servers: throughput at saturation of one core. On one model (the
breast cancer example, run and built by mlnb in a temporary folder with its own BentoML
store), one run measures side by side:

- ``generated``: the Bento `mlnb build` made, served by ``mlnb serve TAG`` (default env,
  monitoring on); ``generated_nomon``: the same with ``MLNB_MONITORING=off``;
- ``hand_onnx`` and ``hand_sklearn``: what a user writes by hand with ``@bentoml.service``
  over the same ONNX file / the same joblib model, giving the same answer;
- ``floor``: a bare Starlette app with onnxruntime under uvicorn.

Each server has one worker on 127.0.0.1 and its whole process tree on core 1 (``taskset -c
1``; checked with psutil over the tree after start-up and after every burst, and re-pinned
where it did not hold). The load generator, ``hey``, and this script run on core 0.

A round starts every server in turn (start-up: spawn to the first 200 answer of /predict;
then its tree's RSS once idle), warms it up for a second, runs every scenario on every server
in turn (1 row at concurrency 1, 1 row at c=16, 256 rows at c=4; ``hey -z``), and stops them.
After every burst the benchmark waits (bounded) until that server's tree is idle again and
counts the CPU it spent meanwhile: a recorder working off its backlog is counted, and does
not slow the next burst. Any answer other than 200 fails the scenario. The tables give the
median of ``--rounds`` rounds, the ratios the targets of issue 15 judge, and every burst.

On a shared machine other processes also run on core 1: each burst records the share of the
core they took, and a burst where they took more than 10% runs again (at most 6 a run), the
quieter of the two kept. Monitoring on / off counts only if the monitored server logged every
row it answered (its folder's rows are counted after the run; errors in the servers' logs
are listed).

Results go to ``benchmarks/results/serve.md`` and ``serve.json`` (``--from-json`` re-renders
the Markdown; ``--keep`` keeps the work folder with the servers' logs). Needs ``hey`` and
``taskset`` (``apt-get install hey util-linux``) and cores 0 and 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_hey import burst, check_tools
from serve_logs import monitoring_folder
from serve_report import SCENARIOS, ratios, write_report
from serve_servers import SERVERS, Server, Spec, make_specs, request_body, write_hand_services

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SERVER_CORE, CLIENT_CORE = 1, 0
WARMUP_SECONDS, WARMUP_CONCURRENCY = 1.0, 4
SETTLE_AFTER_START = 30.0  # seconds at most to wait for a started server to be idle
NOISY_RETRY = 0.10  # a burst whose core other processes used more than this share of runs again
RETRIES = 6  # at most this many bursts a run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="seconds per burst (default 8; c=1: half)"
    )
    parser.add_argument("--quick", action="store_true", help="one round of 3 s bursts")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"a subset of {','.join(SERVERS)}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.md")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder (server logs, monitoring)"
    )
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="re-render a serve.json")
    args = parser.parse_args()
    if args.from_json:
        write_report(json.loads(args.from_json.read_text()), args.out)
        return 0
    if args.quick:
        args.rounds, args.seconds = 1, 3.0
    keys = [key.strip() for key in args.servers.split(",") if key.strip()]
    unknown = sorted(set(keys) - set(SERVERS))
    if unknown or not keys:
        parser.error(f"unknown servers {unknown}; choose from {', '.join(SERVERS)}")
    if args.rounds < 1 or not 1 <= args.seconds <= 120:
        parser.error("--rounds must be at least 1 and --seconds between 1 and 120")
    check_tools()
    for signum in (signal.SIGTERM, signal.SIGHUP):  # stop the servers on those too
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))
    if not {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0):
        raise SystemExit(f"the benchmark needs cores {CLIENT_CORE} and {SERVER_CORE}")
    return bench(args, keys)


def bench(args: argparse.Namespace, keys: list[str]) -> int:
    """Prepare the model, run the rounds, write the results; the work folder goes at the end."""
    began = time.perf_counter()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-serve-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("MLNB_STORE", "MLNB_MONITORING", "MLNB_GC_TUNING", "MLNB_MONITOR_DIR"):
        env.pop(name, None)  # the generated service runs with its defaults
    try:
        print("preparing: mlnb run + build of breast_cancer.ipynb", flush=True)
        built, bodies = prepare(work, env)
        print(f"prepared in {time.perf_counter() - began:.0f} s: {built['bento']}", flush=True)
        os.sched_setaffinity(0, {CLIENT_CORE})  # this script samples from the client's core
        specs = make_specs(keys, work, env, sys.executable, built["bento"])
        servers: dict[str, dict[str, Any]] = {
            s.key: {"label": s.label, "rounds": [], "answered_rows": 0} for s in specs
        }
        retries = Retries(RETRIES)
        for number in range(args.rounds):
            order = specs[number % len(specs) :] + specs[: number % len(specs)]
            print(f"round {number + 1} of {args.rounds}", flush=True)
            round_began = time.perf_counter()
            for key, record in run_round(order, bodies, args.seconds, work, retries).items():
                servers[key]["answered_rows"] += record.pop("answered_rows")
                servers[key]["rounds"].append(record)
            print(f"round {number + 1} took {time.perf_counter() - round_began:.0f} s", flush=True)
        saved = {
            "meta": machine(built, args, load_before, time.perf_counter() - began),
            "servers": servers,
            "monitoring": after_run(specs, servers, work),
        }
        saved["meta"]["repeated_bursts"] = RETRIES - retries.left
        saved["ratios"] = ratios(saved)  # for readers of the JSON; the report recomputes them
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(saved, indent=2) + "\n")
        write_report(saved, args.out)
    finally:
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def prepare(work: Path, env: dict[str, str]) -> tuple[dict[str, Any], dict[int, Path]]:
    """Run and build the breast cancer example; the hand-written services; request bodies."""
    import pandas as pd

    shutil.copy(ROOT / "example_notebooks" / "breast_cancer.ipynb", work)
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "build", "breast_cancer.ipynb", "--json"],
        cwd=work, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"mlnb build failed:\n{result.stdout}\n{result.stderr}")
    built = json.loads(result.stdout)
    store = work / ".mlnb"
    record = json.loads((store / "runs" / built["run_id"] / "run.json").read_text())
    frame = pd.read_parquet(store / record["training_data"]["holdout"]["path"])
    rows = frame.to_dict(orient="records")
    rows = (rows * (256 // len(rows) + 1))[:256]
    name, version = built["model"].split(":")
    write_hand_services(
        work / "hand",
        {
            "COLUMNS": list(frame.columns),
            "JOBLIB_PATH": str(store / record["model"]["path"]),
            "ONNX_PATH": str(work / "bentoml" / "models" / name / version / "model.onnx"),
        },
    )
    bodies = {}
    for size in sorted({size for _, size, _, _ in SCENARIOS} | {1}):
        bodies[size] = work / f"body-{size}.json"
        bodies[size].write_bytes(request_body(rows[:size]))
    return built, bodies


@dataclass
class Retries:
    left: int


def run_round(
    specs: list[Spec], bodies: dict[int, Path], seconds: float, work: Path, retries: Retries
) -> dict[str, dict[str, Any]]:
    """Start every server in turn, load each with every scenario in turn, stop them all."""
    servers: dict[str, Server] = {}
    records: dict[str, dict[str, Any]] = {}
    try:
        for spec in specs:  # one at a time: each start-up has the core to itself
            servers[spec.key] = Server(spec, SERVER_CORE, work / f"{spec.key}.log")
            records[spec.key] = start_up(servers[spec.key], bodies[1])
        for scenario, size, concurrency, share in SCENARIOS:
            for spec in specs:
                server, record = servers[spec.key], records[spec.key]
                load = (bodies[size], size, concurrency, seconds * share)
                result = scenario_burst(server, record, scenario, *load)
                if result["others_on_server_core"] > NOISY_RETRY and retries.left > 0:
                    retries.left -= 1  # other work took the core: once more, the quieter counts
                    again = scenario_burst(server, record, "(again)", *load)
                    quieter = min(result, again, key=lambda r: r["others_on_server_core"])
                    result = {
                        **quieter,
                        "repeated": True,
                        "pinned": result["pinned"] and again["pinned"],
                        "rss_peak_mb": max(result["rss_peak_mb"], again["rss_peak_mb"]),
                    }
                record["bursts"][scenario] = result
                record["pinned"] = record["pinned"] and result["pinned"]
        for spec in specs:
            after_load(servers[spec.key], records[spec.key])
    finally:
        for server in servers.values():
            server.stop()
    return records


def start_up(server: Server, body: Path) -> dict[str, Any]:
    """Start-up time, idle RSS and pinning of a server just spawned; then a warm-up."""
    startup = server.wait_first_answer(body.read_bytes())
    server.settle(SETTLE_AFTER_START)
    pinned = server.check_pinning()
    rss, processes = server.rss_mb()
    warmup = burst(server, body, WARMUP_CONCURRENCY, WARMUP_SECONDS, CLIENT_CORE)
    print(f"  {server.spec.label}: first answer after {startup:.2f} s, idle RSS {rss:.0f} MB "
          f"({processes} processes)", flush=True)  # fmt: skip
    return {
        "startup_s": round(startup, 2),
        "rss_idle_mb": round(rss, 1),
        "processes_idle": processes,
        "pinned": pinned and warmup["pinned"],
        "bursts": {},
        "answered_rows": 1 + warmup["status"].get("200", 0),
    }


def scenario_burst(
    server: Server,
    record: dict[str, Any],
    title: str,
    body: Path,
    size: int,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """One burst of a scenario; the rows it had answered count toward the monitoring log."""
    result = burst(server, body, concurrency, seconds, CLIENT_CORE)
    record["answered_rows"] += size * result["status"].get("200", 0)
    print(f"  {title:<14} {server.spec.label:<31} {summary(result)}", flush=True)
    return result


def after_load(server: Server, record: dict[str, Any]) -> None:
    """The tree's memory once the round's load is over."""
    rss, processes = server.rss_mb()
    peaks = [r["rss_peak_mb"] for r in record["bursts"].values()]
    record["rss_after_mb"] = round(rss, 1)
    record["rss_peak_mb"] = round(max([rss, *peaks]), 1)
    record["pss_after_mb"] = round(server.pss_mb(), 1)
    record["processes_after"] = processes
    record["pinning_notes"] = server.pinning_notes


def after_run(specs: list[Spec], servers: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """The servers' error lines, and what the monitored server left in its folder."""
    monitoring: dict[str, Any] = {}
    for spec in specs:
        servers[spec.key]["log_errors"] = log_errors(work / f"{spec.key}.log")
        if spec.key == "generated" and spec.monitor_dir is not None:
            monitoring = monitoring_folder(spec.monitor_dir)
            monitoring["rows_answered"] = servers[spec.key]["answered_rows"]
    return monitoring


def log_errors(log: Path) -> list[str]:
    """The server's error lines (a monitoring hook that failed to start, say): the first few."""
    found = []
    with log.open(errors="replace") as lines:
        for line in lines:
            if "[ERROR]" in line or line.startswith(("Traceback", "ImportError")):
                found.append(line.strip()[:300])
                if len(found) >= 5:
                    break
    return found


def summary(result: dict[str, Any]) -> str:
    text = (
        f"{result['rps']:>7.0f} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
        f"{result['server_cpu_us_per_request']:.0f} us CPU/req  "
        f"server core {result['server_core_busy']:.0%}  client core "
        f"{result['client_core_busy']:.0%}  others on server core "
        f"{result['others_on_server_core']:.0%}  drain {result['drain_s']} s"
    )
    return text + (f"  FAILED: {result['failed']}" if result["failed"] else "")


def machine(
    built: dict[str, Any], args: argparse.Namespace, load_before: tuple[float, ...], took: float
) -> dict[str, Any]:
    import bentoml
    import onnxruntime

    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    hey = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "hey"], capture_output=True, text=True
    ).stdout if shutil.which("dpkg-query") else ""  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "bentoml": bentoml.__version__,
        "onnxruntime": onnxruntime.__version__,
        "hey": hey or "unknown",
        "bento": built["bento"],
        "format": built["format"],
        "rounds": args.rounds,
        "seconds": args.seconds,
        "quick": args.quick,
        "server_core": SERVER_CORE,
        "client_core": CLIENT_CORE,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "took_s": round(took),
    }


if __name__ == "__main__":
    sys.exit(main())
