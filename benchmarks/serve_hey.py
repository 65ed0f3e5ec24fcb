"""One burst of load from ``hey`` on its own core, and what the server spent on it.

``hey -z Ns -c C -m POST -T application/json -D body.json URL`` runs under
``taskset -c CLIENT_CORE``; while it runs, the server's process-tree RSS is sampled every
0.2 s (its peak), and afterwards the benchmark waits until the tree is idle again, so the CPU
it spends on work it deferred (a monitoring backlog) is counted per request too.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from serve_servers import Server

SAMPLE_SECONDS = 0.2
DRAIN_TIMEOUT = 60.0  # a tree still busy this long after a burst is reported as such
REQUEST_TIMEOUT = 20  # hey's per-request timeout, seconds


def check_tools() -> None:
    missing = [tool for tool in ("hey", "taskset") if shutil.which(tool) is None]
    if missing:
        package = {"hey": "hey", "taskset": "util-linux"}
        names = " ".join(package[tool] for tool in missing)
        raise SystemExit(
            f"bench_serve.py needs {' and '.join(missing)}: "
            f"sudo apt-get update && sudo apt-get install -y {names}"
        )


def burst(
    server: Server, body: Path, concurrency: int, seconds: float, client_core: int
) -> dict[str, Any]:
    """Saturating load on ``server`` for ``seconds``; hey's figures and the server's costs."""
    command = ["taskset", "-c", str(client_core), "hey", "-z", f"{seconds:g}s"]
    command += ["-c", str(concurrency), "-cpus", "1", "-t", str(REQUEST_TIMEOUT)]
    command += ["-m", "POST", "-T", "application/json", "-D", str(body), server.spec.url]
    cpu_before = server.cpu_seconds()
    client_before = _children_cpu()
    core_before = psutil.cpu_times(percpu=True)[server.core]
    peak = server.rss_mb()[0]
    with tempfile.TemporaryFile("w+") as out:
        began = time.perf_counter()
        client = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = began + seconds + REQUEST_TIMEOUT + 10
        try:
            while client.poll() is None and time.perf_counter() < deadline:
                peak = max(peak, server.rss_mb()[0])
                time.sleep(SAMPLE_SECONDS)
        finally:
            if client.poll() is None:
                client.kill()
            client.wait()
        wall = time.perf_counter() - began
        cpu_during = server.cpu_seconds() - cpu_before
        client_cpu = _children_cpu() - client_before
        core_busy, core_steal = _core_use(core_before, psutil.cpu_times(percpu=True)[server.core])
        out.seek(0)
        text = out.read()
    result = parse_hey(text)
    result["client_exit"] = client.returncode
    drained = server.settle(DRAIN_TIMEOUT)
    cpu = server.cpu_seconds() - cpu_before
    rss_after = server.rss_mb()[0]
    pinned = server.check_pinning()
    answered = result["status"].get("200", 0)
    seconds_run = result["total_s"] or wall
    result.update(
        {
            "server_cpu_us_per_request": round(cpu / max(answered, 1) * 1e6, 1),
            "server_core_busy": round(cpu_during / seconds_run, 3),
            "client_core_busy": round(client_cpu / seconds_run, 3),
            # what else ran on the server's core meanwhile: other processes, and the hypervisor
            "others_on_server_core": round(max(core_busy - cpu_during, 0.0) / seconds_run, 3),
            "steal_on_server_core": round(core_steal / seconds_run, 3),
            "drain_s": round(drained, 1),
            "drained": drained < DRAIN_TIMEOUT,
            "rss_peak_mb": round(max(peak, rss_after), 1),
            "rss_after_mb": round(rss_after, 1),
            "pinned": pinned,
        }
    )
    problems = []
    if client.returncode != 0:
        problems.append(f"hey exited {client.returncode}: {text.strip()[-300:]}")
    if answered == 0:
        problems.append("no 200 answer")
    others = {code: n for code, n in result["status"].items() if code != "200"}
    if others:
        problems.append(f"non-200 answers {others}")
    if result["errors"]:
        problems.append(f"errors {result['errors']}")
    result["failed"] = "; ".join(problems)
    return result


def _core_use(before: Any, after: Any) -> tuple[float, float]:
    """CPU seconds one core ran processes between two ``psutil.cpu_times`` samples (interrupts
    left out: the kernel's loopback traffic is not another process), and the seconds stolen."""
    fields = ("user", "nice", "system")
    busy = sum(getattr(after, f) - getattr(before, f) for f in fields)
    steal = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0)
    return busy, steal


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_FLOAT = r"([\d.]+)"


def parse_hey(text: str) -> dict[str, Any]:
    """hey's summary: Requests/sec, the status code and error distributions, p50 and p99."""

    def number(pattern: str) -> float | None:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else None

    status = {
        code: int(count)
        for code, count in re.findall(r"^\s*\[(\d{3})\]\s+(\d+) responses", text, re.M)
    }
    errors: dict[str, int] = {}
    if "Error distribution:" in text:
        section = text.split("Error distribution:", 1)[1]
        for count, message in re.findall(r"^\s*\[(\d+)\]\s+(.+)$", section, re.M):
            errors[message.strip()[:200]] = int(count)
    p50, p99 = number(rf"\b50% in {_FLOAT} secs"), number(rf"\b99% in {_FLOAT} secs")
    return {
        "rps": number(rf"Requests/sec:\s+{_FLOAT}") or 0.0,
        "total_s": number(rf"Total:\s+{_FLOAT} secs"),
        "requests": sum(status.values()),
        "status": status,
        "errors": errors,
        "p50_ms": None if p50 is None else round(p50 * 1e3, 2),
        "p99_ms": None if p99 is None else round(p99 * 1e3, 2),
    }
