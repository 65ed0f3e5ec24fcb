"""``mlnb monitor BENTO_TAG|LOG_DIR``: traffic, rejections, predictions and drift of a service."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlnb.monitoring.summary import MonitorSummary

HELP = "summarise a served Bento's request logs: traffic, predictions and drift"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a Bento tag (name:version) or a monitoring folder")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument("-o", "--output", help="write a self-contained HTML report here")
    parser.add_argument("--templates", help="a folder with your own monitor_report.html.j2")


def run(args: argparse.Namespace) -> int:
    from mlnb.monitoring.logs import read_monitor_folder
    from mlnb.monitoring.paths import resolve_monitor_folder
    from mlnb.monitoring.summary import summarise

    folder = resolve_monitor_folder(args.target, args.store)
    logs = read_monitor_folder(folder)
    summary = summarise(logs)
    if args.output:
        from mlnb.monitoring.report import render_report

        output = Path(args.output)
        tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        tmp.write_text(render_report(logs, summary, args.templates), encoding="utf-8")
        tmp.replace(output)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
        return 0
    print(render_text(summary, str(folder)))
    if args.output:
        print(f"report: {args.output}")
    return 0


def render_text(summary: MonitorSummary, folder: str) -> str:
    lines = [f"Bento {summary.bento or '?'}  (logs: {folder})"]
    reasons = ", ".join(f"{k} {v}" for k, v in summary.rejection_reasons.items())
    rate = f"{summary.rejection_rate:.1%}" + (f": {reasons}" if reasons else "")
    lines.append(
        f"requests {summary.requests}, rows logged {summary.rows_logged}, "
        f"rejected {summary.rejected_requests} ({rate})"
    )
    predictions = summary.predictions
    if predictions.get("kind") == "categorical":
        pairs = zip(
            predictions["labels"], predictions["training"], predictions["live"], strict=True
        )
        text = ", ".join(f"{label} {t:.2f} -> {v:.2f}" for label, t, v in pairs)
        lines.append(f"predictions (training -> live): {text}")
    if not summary.drift:
        lines.append("no drift scores: no feature profile in the reference")
        return "\n".join(lines)
    lines.append(f"drift over the last {summary.window_rows} rows:")
    width = max(len("feature"), *(len(d.feature) for d in summary.drift))
    lines.append(f"  {'feature'.ljust(width)}  {'PSI':>7}  {'KS':>6}")
    for drift in summary.drift:
        psi = "n/a" if drift.psi is None else f"{drift.psi:.3f}"
        ks = "" if drift.ks is None else f"{drift.ks:.3f}"
        flag = f"  DRIFTED (PSI > {drift.threshold})" if drift.drifted else ""
        lines.append(f"  {drift.feature.ljust(width)}  {psi:>7}  {ks:>6}{flag}")
    drifted = ", ".join(summary.drifted_features) or "none"
    lines.append(f"drifted features: {drifted}")
    return "\n".join(lines)
