"""Release benchmark: what a shadow release costs the caller, beside the primary served alone.

    python benchmarks/bench_release.py [--rounds 3] [--seconds 8]

Two Bentos of the breast cancer example (runs with C=1.0 and C=0.01, built by mlnb in a
temporary folder with its own BentoML store) and the shadow release of the second beside the
first (`mlnb release PRIMARY --shadow CANDIDATE`). Side by side, in interleaved rounds, each
served by `mlnb serve` with its whole process tree on core 1 and ``hey`` on core 0 (the
harness of bench_serve.py): 1 row at concurrency 16, and 1 row at c=1. Per server: requests
per second at saturation, p50/p99 latency, server CPU per request, the RSS of the process
tree after load, start-up time. For the release, the share of answered rows the candidate
saw in shadow (``mlnb_release_shadow_dropped_rows`` says what it could not keep up with).

The target (issue 18): a shadow release costs the caller at most 1.1x the primary alone at
1 row c=16: p50 latency and requests per second, medians over the rounds. Results go to
``benchmarks/results/release.md`` and ``release.json``. Needs ``hey`` and ``taskset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from serve_hey import burst, check_tools
from serve_servers import Server, Spec, free_port, request_body

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SERVER_CORE, CLIENT_CORE = 1, 0
SCENARIOS = {"1 row c=16": (1, 16), "1 row c=1": (1, 1)}
TARGET = 1.1


def mlnb(work: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"mlnb {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def prepare(work: Path, env: dict[str, str]) -> dict[str, str]:
    notebook = work / "breast_cancer.ipynb"
    notebook.write_bytes((ROOT / "example_notebooks" / "breast_cancer.ipynb").read_bytes())
    contract = ROOT / "example_notebooks" / "breast_cancer.contract.yaml"
    (work / contract.name).write_bytes(contract.read_bytes())
    primary = json.loads(mlnb(work, env, "build", notebook.name, "--json"))["bento"]
    mlnb(work, env, "run", notebook.name, "-p", "C", "0.01")
    candidate = json.loads(mlnb(work, env, "build", notebook.name, "--json"))["bento"]
    release = json.loads(mlnb(work, env, "release", primary, "--shadow", candidate, "--json"))
    return {"primary": primary, "candidate": candidate, "release": release["release"]}


def spec(key: str, tag: str, work: Path, env: dict[str, str]) -> Spec:
    port = free_port()
    monitor = work / "monitoring" / key
    command = [sys.executable, "-m", "mlnb", "serve", tag, "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    return Spec(key, command, {**env, "MLNB_MONITOR_DIR": str(monitor)}, work, port, monitor)


def shadow_counts(url: str) -> dict[str, float]:
    """The release's /metrics: rows answered by the primary, shadowed, dropped."""
    with urllib.request.urlopen(url.replace("/predict", "/metrics"), timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {"answered": 0.0, "shadowed": 0.0, "dropped": 0.0, "skipped": 0.0}
    for line in text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith("mlnb_release_requests_total{") and 'status="200"' in line:
            part = re.search(r'part="(\w+)"', line)
            key = "answered" if part and part.group(1) == "answer" else "shadowed"
            found[key] += float(value)
        elif line.startswith("mlnb_release_shadow_dropped_rows_total{"):
            found["dropped"] += float(value)
        elif line.startswith("mlnb_release_shadow_skipped_rows_total{"):
            found["skipped"] += float(value)
    return found


def run_round(
    specs: list[Spec], body: Path, first: bytes, seconds: float, work: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for item in specs:
        server = Server(item, SERVER_CORE, work / f"{item.key}.log")
        try:
            started = server.wait_first_answer(first)
            server.check_pinning()
            server.settle(30)
            idle = server.rss_mb()[0]
            burst(server, body, 4, 1.0, CLIENT_CORE)  # warm-up
            record: dict[str, Any] = {"startup_s": round(started, 2), "rss_idle_mb": round(idle)}
            for name, (_, concurrency) in SCENARIOS.items():
                time_s = seconds if concurrency > 1 else seconds / 2
                record[name] = burst(server, body, concurrency, time_s, CLIENT_CORE)
            record["rss_after_mb"] = round(server.rss_mb()[0])
            record["processes"] = server.rss_mb()[1]
            if item.key == "release":
                time.sleep(1.5)  # the last shadow batches and the traffic log's flush
                record["shadow"] = shadow_counts(item.url)
            results[item.key] = record
        finally:
            server.stop()
    return results


def median(rounds: list[dict[str, Any]], scenario: str, field: str) -> float:
    return float(statistics.median(r[scenario][field] for r in rounds))


def report(saved: dict[str, Any]) -> str:
    rounds = saved["rounds"]
    lines = [
        "# Release benchmark (issue 18)",
        "",
        f"{saved['meta']['when']}; {len(rounds['alone'])} interleaved rounds of "
        f"{saved['meta']['seconds']:g} s bursts; server tree on core {SERVER_CORE}, hey on core "
        f"{CLIENT_CORE}. Primary {saved['tags']['primary']}, candidate "
        f"{saved['tags']['candidate']}, release {saved['tags']['release']}.",
        "",
        "| server | scenario | req/s | p50 ms | p99 ms | server CPU us/req |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, label in (("alone", "primary alone"), ("release", "shadow release")):
        for scenario in SCENARIOS:
            lines.append(
                f"| {label} | {scenario} | {median(rounds[key], scenario, 'rps'):,.0f} | "
                f"{median(rounds[key], scenario, 'p50_ms'):.2f} | "
                f"{median(rounds[key], scenario, 'p99_ms'):.2f} | "
                f"{median(rounds[key], scenario, 'server_cpu_us_per_request'):,.0f} |"
            )
    lines += ["", "| | primary alone | shadow release |", "|---|---:|---:|"]
    for field, label in (
        ("startup_s", "start-up, s"),
        ("rss_after_mb", "process tree RSS after load, MB"),
        ("processes", "processes"),
    ):
        values = [statistics.median(r[field] for r in rounds[k]) for k in ("alone", "release")]
        lines.append(f"| {label} | {values[0]:g} | {values[1]:g} |")
    scenario = "1 row c=16"
    p50 = median(rounds["release"], scenario, "p50_ms") / median(
        rounds["alone"], scenario, "p50_ms"
    )
    rps = median(rounds["alone"], scenario, "rps") / median(rounds["release"], scenario, "rps")
    shadow = [r["shadow"] for r in rounds["release"]]
    seen = sum(s["shadowed"] for s in shadow) / max(sum(s["answered"] for s in shadow), 1)
    verdict = "met" if max(p50, rps) <= TARGET else "NOT met"
    lines += [
        "",
        f"**Target <= {TARGET}x at {scenario}: {verdict}.** p50 latency {p50:.3f}x, "
        f"throughput cost {rps:.3f}x (primary alone / release). The candidate saw "
        f"{seen:.1%} of the answered requests in shadow over the whole run "
        f"({sum(s['skipped'] for s in shadow):,.0f} rows skipped while the worker was saturated, "
        f"{sum(s['dropped'] for s in shadow):,.0f} dropped from a full queue).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "release.md")
    args = parser.parse_args()
    check_tools()
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-release-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("MLNB_STORE", "MLNB_MONITORING", "MLNB_MONITOR_DIR"):
        env.pop(name, None)
    print("preparing: two runs, two builds, one release", flush=True)
    tags = prepare(work, env)
    os.sched_setaffinity(0, {CLIENT_CORE})
    from sklearn.datasets import load_breast_cancer

    one = load_breast_cancer(as_frame=True).data.head(1).to_dict(orient="records")
    body = work / "one.json"
    body.write_bytes(request_body(one))
    specs = [spec("alone", tags["primary"], work, env), spec("release", tags["release"], work, env)]
    rounds: dict[str, list[dict[str, Any]]] = {"alone": [], "release": []}
    for number in range(args.rounds):
        order = specs if number % 2 == 0 else specs[::-1]
        print(f"round {number + 1} of {args.rounds}", flush=True)
        for key, record in run_round(order, body, body.read_bytes(), args.seconds, work).items():
            rounds[key].append(record)
    saved = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": args.seconds,
        },
        "tags": tags,
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=1, default=str))
    text = report(saved)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
