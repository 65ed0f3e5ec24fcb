"""The Markdown report of a ``bench_serve.py`` run, and the ratios issue 15 judges it by."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = [  # name, rows per request, concurrency, share of --seconds
    ("1 row, c=1", 1, 1, 0.5),
    ("1 row, c=16", 1, 16, 1.0),
    ("256 rows, c=4", 256, 4, 1.0),
]
Saved = dict[str, Any]
NOISY = 0.05  # other work on the server's core above this share of a burst is reported


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def scenario_values(saved: Saved, key: str, scenario: str, field: str) -> list[float]:
    """One value a round (hey leaves out a percentile it has too few answers for: 0)."""
    return [r["bursts"][scenario][field] or 0.0 for r in saved["servers"][key]["rounds"]]


def latency(saved: Saved, key: str, scenario: str, field: str) -> str:
    values = [r["bursts"][scenario][field] for r in saved["servers"][key]["rounds"]]
    known = [v for v in values if v is not None]
    return f"{median(known):.1f}" if known else "-"


def failed(saved: Saved, key: str, scenario: str) -> bool:
    return any(r["bursts"][scenario]["failed"] for r in saved["servers"][key]["rounds"])


def round_values(saved: Saved, key: str, field: str) -> list[float]:
    return [r[field] for r in saved["servers"][key]["rounds"]]


@dataclass(frozen=True)
class Target:
    """One ratio issue 15 judges: ``top / bottom`` of ``field`` (per scenario, or per round)."""

    label: str
    top: str
    bottom: str
    scenario: str | None  # None: a figure of the server's round (RSS, start-up)
    field: str
    at_most: bool  # the ratio must be at most ``bound`` (else at least)
    bound: float


TARGETS = [
    *(
        Target(f"monitoring on / off, {name}", "generated", "generated_nomon", name, "rps",
               False, 0.95)
        for name in ("1 row, c=16", "256 rows, c=4")
    ),
    *(
        Target(f"generated / hand-written BentoML + ONNX, {name}", "generated", "hand_onnx",
               name, "rps", False, 1.3)
        for name, _, _, _ in SCENARIOS
    ),
    Target("generated / bare floor, 1 row, c=16", "generated", "floor", "1 row, c=16", "rps",
           False, 0.5),
    Target("process-tree RSS after load, generated / hand-written ONNX", "generated",
           "hand_onnx", None, "rss_after_mb", True, 1.25),
    Target("start-up to first answer, generated / hand-written ONNX", "generated", "hand_onnx",
           None, "startup_s", True, 1.25),
]  # fmt: skip


def ratios(saved: Saved) -> list[dict[str, Any]]:
    """Each target: the ratio of the medians, the ratio in each round, and met or not."""
    out = []
    for target in TARGETS:
        if not {target.top, target.bottom} <= set(saved["servers"]):
            continue
        a, b = (_values(saved, key, target) for key in (target.top, target.bottom))
        broken = target.scenario is not None and (
            failed(saved, target.top, target.scenario)
            or failed(saved, target.bottom, target.scenario)
        )
        ratio = median(a) / median(b) if median(b) else float("nan")
        per_round = [x / y if y else float("nan") for x, y in zip(a, b, strict=True)]
        met = ratio <= target.bound if target.at_most else ratio >= target.bound
        unlogged = target.bottom == "generated_nomon" and not monitoring_logged(saved)
        out.append(
            {
                "label": target.label,
                "target": f"{'<=' if target.at_most else '>='} {target.bound}",
                "ratio": round(ratio, 3),
                "per_round": [round(x, 3) for x in per_round],
                "met": met and not broken and not unlogged,
                "failed_scenario": broken,
                "monitoring_missing": unlogged,
            }
        )
    return out


def _values(saved: Saved, key: str, target: Target) -> list[float]:
    if target.scenario is None:
        return round_values(saved, key, target.field)
    return scenario_values(saved, key, target.scenario, target.field)


def monitoring_logged(saved: Saved) -> bool:
    """Whether the monitored server logged every row it answered (else on / off means little)."""
    m = saved.get("monitoring") or {}
    return bool(m) and m["rows_logged"] >= m["rows_answered"] > 0


def _n(value: float, unit: str = "") -> str:
    return f"{value:,.0f}{unit}"


def results_table(saved: Saved) -> list[str]:
    """Scenarios down, servers across: the table to paste into the README."""
    servers = saved["servers"]
    keys = list(servers)
    lines = [
        "| scenario | " + " | ".join(servers[k]["label"] for k in keys) + " |",
        "| --- |" + " ---: |" * len(keys),
    ]

    def row(title: str, cell: Callable[[str], str]) -> None:
        lines.append(f"| {title} | " + " | ".join(cell(k) for k in keys) + " |")

    for scenario, _, _, _ in SCENARIOS:

        def rps(key: str, scenario: str = scenario) -> str:
            text = _n(median(scenario_values(saved, key, scenario, "rps")))
            return f"{text} (failed)" if failed(saved, key, scenario) else text

        row(f"{scenario}, req/s", rps)
    for scenario, _, _, _ in SCENARIOS[1:]:

        def latencies(key: str, scenario: str = scenario) -> str:
            p50, p99 = (latency(saved, key, scenario, f) for f in ("p50_ms", "p99_ms"))
            return f"{p50} / {p99}"

        row(f"{scenario}, p50 / p99 ms", latencies)
    for scenario, size, _, _ in SCENARIOS[1:]:
        what = "request" if size == 1 else f"{size}-row request"

        def cpu(key: str, scenario: str = scenario) -> str:
            values = scenario_values(saved, key, scenario, "server_cpu_us_per_request")
            return _n(median(values), " us")

        row(f"server CPU per {what} ({scenario})", cpu)

    def rss(key: str) -> str:
        idle, after, peak = (
            median(round_values(saved, key, f))
            for f in ("rss_idle_mb", "rss_after_mb", "rss_peak_mb")
        )
        processes = max(round_values(saved, key, "processes_after"))
        return f"{idle:.0f} / {after:.0f} / {peak:.0f} MB ({processes})"

    row("RSS idle / after load / peak (process tree, processes)", rss)
    row(
        "PSS after load (process tree)",
        lambda key: _n(median(round_values(saved, key, "pss_after_mb")), " MB"),
    )
    row(
        "start to first answer",
        lambda key: f"{median(round_values(saved, key, 'startup_s')):.1f} s",
    )
    return lines


def targets_table(saved: Saved) -> list[str]:
    if not ratios(saved):
        return ["No target compares the servers this run measured (see `--servers`)."]
    lines = [
        "| ratio | target | this run | per round | |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for item in ratios(saved):
        verdict = "met" if item["met"] else "**not met**"
        if item["failed_scenario"]:
            verdict += " (a scenario failed)"
        if item["monitoring_missing"]:
            verdict = "**not met** (monitoring did not log every answer)"
        per_round = ", ".join(f"{x:.2f}" for x in item["per_round"])
        ratio = f"{item['ratio']:.2f}"
        lines.append(f"| {item['label']} | {item['target']} | {ratio} | {per_round} | {verdict} |")
    return lines


def bursts_table(saved: Saved) -> list[str]:
    lines = [
        "| round | scenario | server | req/s | p50 / p99 ms | server CPU us/req | server core "
        "| client core | others on server core | drain s | answers |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for number in range(saved["meta"]["rounds"]):
        for scenario, _, _, _ in SCENARIOS:
            for server in saved["servers"].values():
                if number < len(server["rounds"]):
                    burst = server["rounds"][number]["bursts"][scenario]
                    lines.append(
                        f"| {number + 1} | {scenario} | {server['label']} | {_burst(burst)} |"
                    )
    return lines


def _burst(b: dict[str, Any]) -> str:
    answers = ", ".join(f"{n:,} x {code}" for code, n in sorted(b["status"].items()))
    if b["failed"]:
        answers = f"**failed**: {b['failed']}"
    if b.get("repeated"):
        answers += " (ran twice, the quieter kept)"
    cells = [
        f"{b['rps']:,.0f}",
        f"{b['p50_ms'] or '-'} / {b['p99_ms'] or '-'}",
        f"{b['server_cpu_us_per_request']:,.0f}",
        f"{b['server_core_busy']:.0%}",
        f"{b['client_core_busy']:.0%}",
        f"{b['others_on_server_core']:.0%}",
        f"{b['drain_s']}" + ("" if b["drained"] else " (still busy)"),
        answers,
    ]
    return " | ".join(cells)


def noise_line(saved: Saved) -> str:
    """How much other work shared the server's core during the bursts."""
    shares = [
        r["bursts"][scenario]["others_on_server_core"]
        for server in saved["servers"].values()
        for r in server["rounds"]
        for scenario, _, _, _ in SCENARIOS
    ]
    busy = sum(share > NOISY for share in shares)
    text = (
        f"Other processes ran on the server core for a median {median(shares):.0%} of a burst "
        f"(at most {max(shares):.0%})"
    )
    if busy:
        text += f"; in {busy} of {len(shares)} bursts more than {NOISY:.0%}"
    repeated = saved["meta"].get("repeated_bursts")
    if repeated:
        text += (
            f"; {repeated} burst{'s' if repeated > 1 else ''} where they took more than 10% "
            "ran twice, the quieter kept"
        )
    if busy:
        text += ". Figures from a quiet machine are better"
    return text + "."


def pinning_lines(saved: Saved) -> list[str]:
    lines = []
    for server in saved["servers"].values():
        held = all(r["pinned"] for r in server["rounds"])
        notes = [note for r in server["rounds"] for note in r.get("pinning_notes", [])]
        if not held:
            lines.append(
                f"- {server['label']}: pinning did not hold, re-pinned: " + "; ".join(notes[:5])
            )
    return lines or ["- every thread of every process of every server's tree stayed on its core "
                     "(checked after start-up and after every burst)."]  # fmt: skip


def monitoring_lines(saved: Saved) -> list[str]:
    m = saved.get("monitoring") or {}
    if not m:
        return []
    text = (
        f"Monitoring folder of the monitored server after the run: {m['folder_mb']} MB in "
        f"{m['files']} files; {m['format']} logs, {m['prediction_files']} prediction files, "
        f"{m['rows_logged']:,} rows logged of {m['rows_answered']:,} rows answered with 200"
    )
    if m["partial_files"]:
        text += f" ({m['partial_files']} segments still partial, not counted)"
    if not monitoring_logged(saved):
        text += ": **monitoring did not log every answered row**, see the server's errors below"
    return ["", text + "."]


def error_lines(saved: Saved) -> list[str]:
    lines = []
    for server in saved["servers"].values():
        for error in server.get("log_errors", []):
            lines.append(f"- {server['label']}: `{error}`")
    return ["", "## Errors in the servers' logs", "", *lines] if lines else []


def write_report(saved: Saved, out: Path) -> None:
    meta = saved["meta"]
    quick = " --quick" if meta.get("quick") else ""
    lines = [
        "# Serving benchmark",
        "",
        f"`python benchmarks/bench_serve.py{quick}` on {meta['date']}: {meta['cpu']}, "
        f"{meta['cores']} cores, {meta['memory_gb']} GB, Linux {meta['kernel']}, Python "
        f"{meta['python']}, BentoML {meta['bentoml']}, onnxruntime {meta['onnxruntime']}, hey "
        f"{meta['hey']}. Model: the breast cancer example ({meta['bento']}, served with "
        f"{meta['format']}; 30 float features). Every server: one worker on 127.0.0.1, its "
        f"whole process tree pinned to core {meta['server_core']} (`taskset`); hey on core "
        f"{meta['client_core']}. Medians of {meta['rounds']} interleaved rounds, "
        f"{meta['seconds']:g} s bursts (c=1: half), each round on freshly started servers. "
        f"Load average (1, 5, 15 min) before {meta['load_average_before']}, after "
        f"{meta['load_average_after']}; the run took {meta['took_s'] / 60:.1f} min. Other work "
        "on a shared machine moves every figure: compare ratios within one run. "
        + noise_line(saved),
        "",
        *results_table(saved),
        "",
        "Server CPU per request counts the whole process tree until it is idle again after the "
        "burst (deferred work included). RSS is summed over the tree (arbiter, worker, any "
        "recorder): idle after start-up, after the round's load, and the peak of samples every "
        "0.2 s; PSS counts pages shared between them once.",
        *monitoring_lines(saved),
        "",
        "## Against the targets (issue 15)",
        "",
        *targets_table(saved),
        "",
        "## Pinning",
        "",
        *pinning_lines(saved),
        *error_lines(saved),
        "",
        "## Every burst",
        "",
        "Server core: the tree's CPU during the burst over its duration (100% = one core "
        "saturated). Client core: hey's CPU over the same; near 100% the client, not the server, "
        "sets the pace. Others on server core: CPU that other processes of the machine took on "
        "the server's core meanwhile. hey reports latency to 0.1 ms.",
        "",
        *bursts_table(saved),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
