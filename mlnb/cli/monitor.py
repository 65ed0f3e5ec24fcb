"""``mlnb monitor BENTO_TAG|LOG_DIR``: traffic, rejections, predictions, drift and data
contract violations of a service; for a release (a folder with ``release.json``), its two
versions side by side (:mod:`mlnb.cli.monitor_release`).

``mlnb monitor export BENTO_TAG|LOG_DIR [--format jsonl] [--log rejections] [-o FILE]``
writes the log as JSON lines instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlnb.text_table import text_table

if TYPE_CHECKING:
    from mlnb.reporting.summary import MonitorSummary

HELP = "summarise a served Bento's request logs: traffic, predictions and drift"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="[export] TARGET",
        help="a Bento tag (name:version) or a monitoring folder; `export TARGET` writes the "
        "log as JSON lines",
    )
    parser.add_argument("export_target", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--format", choices=["jsonl"], default="jsonl", help="export format")
    parser.add_argument(
        "--log",
        choices=["predictions", "rejections"],
        default="predictions",
        help="which log to export (default predictions)",
    )
    parser.add_argument(
        "--notebook",
        metavar="NB",
        help="the notebook the Bento was built from: its store holds the logs (default: "
        "./.mlnb, else the store below that holds the Bento's logs)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument(
        "-o", "--output", help="write a self-contained HTML report (export: the lines) here"
    )
    parser.add_argument(
        "--templates",
        help="a folder with your own monitor_report.html.j2 (release_report.html.j2 for a release)",
    )


def run(args: argparse.Namespace) -> int:
    from mlnb.reporting.logs import MonitorLogError, open_monitor_folder
    from mlnb.reporting.paths import is_release_folder, resolve_monitor_folder
    from mlnb.reporting.summary import summarise

    if args.target == "export" and args.export_target:
        return export(args)
    if args.export_target:
        raise MonitorLogError(
            f"unexpected argument {args.export_target!r}",
            fix="pass one Bento tag or folder, or `mlnb monitor export TARGET`",
        )
    folder = resolve_monitor_folder(args.target, _store(args, args.target))
    if is_release_folder(folder):
        from mlnb.cli.monitor_release import run_release

        return run_release(args, folder)
    logs = open_monitor_folder(folder)
    summary = summarise(logs)
    if args.output:
        from mlnb.reporting.report import render_report

        _write_atomically(Path(args.output), render_report(logs, summary, args.templates))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
        return 0
    print(render_text(summary, str(folder)))
    if args.output:
        print(f"report: {args.output}")
    return 0


def export(args: argparse.Namespace) -> int:
    """``mlnb monitor export``: the log as JSON lines, to a file or standard output."""
    from mlnb.reporting.export import write_json_lines
    from mlnb.reporting.logs import open_monitor_folder
    from mlnb.reporting.paths import resolve_monitor_folder

    target = args.export_target
    logs = open_monitor_folder(resolve_monitor_folder(target, _store(args, target)))
    if not args.output:
        write_json_lines(logs, sys.stdout, args.log)
        return 0
    output = Path(args.output)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            lines = write_json_lines(logs, handle, args.log)
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"{lines} {args.log} rows written to {output}", file=sys.stderr)
    return 0


def _store(args: argparse.Namespace, target: str) -> str | None:
    """The store to look for a Bento tag's logs in (a folder given needs none)."""
    if Path(target).is_dir():
        return None
    from mlnb.cli.bento_store import store_of_bento

    choice = store_of_bento(target, args.store, args.notebook, command="mlnb monitor")
    return None if choice is None else str(choice.root)


def _write_atomically(output: Path, text: str) -> None:
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)


def render_text(summary: MonitorSummary, folder: str) -> str:
    from mlnb.monitoring.drift import by_psi

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
    lines.extend(contract_lines(summary))
    if not summary.drift:
        lines.append("no drift scores: no feature profile in the reference")
        return "\n".join(lines)
    lines.append(f"drift over the last {summary.window_rows} rows:")
    rows = [("feature", "PSI", "KS", "")]
    for drift in by_psi(summary.drift):
        psi = "n/a" if drift.psi is None else f"{drift.psi:.3f}"
        ks = "" if drift.ks is None else f"{drift.ks:.3f}"
        flag = f"DRIFTED (PSI > {drift.threshold})" if drift.drifted else ""
        rows.append((drift.feature, psi, ks, flag))
    lines.extend(text_table(rows, indent="  ", right=(1, 2), min_widths=(0, 7, 6)))
    drifted = ", ".join(summary.drifted_features) or "none"
    lines.append(f"drifted features: {drifted}")
    for problem in summary.unreadable_segments:
        lines.append(f"warning: a log segment could not be read: {problem}")
    if summary.unreadable_lines:
        lines.append(f"warning: {summary.unreadable_lines} log line(s) could not be read")
    return "\n".join(lines)


def contract_lines(summary: MonitorSummary) -> list[str]:
    """The data contract's violations, per feature and rule (only those with any)."""
    contract = summary.contract
    if contract is None:
        return ["no data contract checks: the Bento carries no contract rules"]
    lines = [
        f"data contract {contract.contract or '?'}: {contract.total} violation(s) over "
        f"{contract.rows} rows (windows of {contract.window} rows: {contract.windows} complete)"
    ]
    found = [
        (feature, rule, count)
        for feature, rules in contract.violations.items()
        for rule, count in rules.items()
        if count
    ]
    rows = [(feature, rule, str(count)) for feature, rule, count in found]
    lines.extend(text_table(rows, indent="  ", right=(2,), min_widths=(0, 10, 7)))
    for alert in contract.alerting:
        lines.append(
            f"  ALERT: {alert['feature']} breaks its {alert['rule']} rule in the newest window"
        )
    return lines
