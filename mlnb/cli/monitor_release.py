"""``mlnb monitor RELEASE``: a release's two versions side by side (text, ``--json``, ``-o``).

Called by :mod:`mlnb.cli.monitor` when the folder it resolves holds ``release.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlnb.text_table import text_table

if TYPE_CHECKING:
    from mlnb.reporting.release_summary import ReleaseSummary

CELL_WIDTH = 36  # a longer cell of the table wraps onto more lines


def run_release(args: argparse.Namespace, folder: Path) -> int:
    from mlnb.reporting.release_summary import summarise_release

    summary = summarise_release(folder)
    if args.output:
        from mlnb.reporting.release_report import render_release_report

        write_atomically(Path(args.output), render_release_report(summary, args.templates))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
        return 0
    print(render_release_text(summary))
    if args.output:
        print(f"report: {args.output}")
    return 0


def write_atomically(output: Path, text: str) -> None:
    """Write ``text`` to a file beside ``output`` and rename it into place."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)


def render_release_text(summary: ReleaseSummary) -> str:
    from mlnb.reporting.release_report import alert_lines, answering_now, comparison_rows

    mode = summary.mode or "mode unknown"
    if summary.mode == "canary" and summary.percent is not None:
        mode += f" {summary.percent:g}%" + (f" by {summary.key}" if summary.key else "")
    lines = [f"Release {summary.release}  ({mode}; logs: {summary.folder})"]
    routing = summary.routing or {}
    when = f"traffic {summary.first} to {summary.last}" if summary.first else "no traffic yet"
    now = answering_now(summary.routing)
    if now == "canary":
        when += f"; answering now: both ({routing.get('percent'):g}% to the candidate)"
    elif routing:
        when += f"; answering now: {now or '?'}"
        if routing.get("switch") is not None:
            when += f" (switch {routing.get('switch')})"
    lines.append(when)
    comparison = [("", "primary", "candidate"), *comparison_rows(summary)]
    lines.extend(text_table(comparison, indent="  ", wrap=CELL_WIDTH))
    lines.extend(f"ALERT {line}" for line in alert_lines(summary))
    lines.extend(_agreement_lines(summary))
    share = summary.candidate_share
    if summary.mode == "canary" and share is not None:
        lines.append(f"candidate share of answered requests: {share:.1%}")
    labels = summary.feedback
    if labels is not None:
        extra = [
            f"{labels.unmatched} for rows no version logged" if labels.unmatched else "",
            f"{labels.repeated} repeated (the first label of a row counts)"
            if labels.repeated
            else "",
        ]
        notes = ", ".join(e for e in extra if e)
        lines.append(f"labels fed back: {labels.labels}" + (f" ({notes})" if notes else ""))
    lines.extend(_switch_lines(summary))
    for problem in summary.problems:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


def _agreement_lines(summary: ReleaseSummary) -> list[str]:
    agreement = summary.agreement
    if agreement is None:
        return []
    data = agreement.to_json()
    if agreement.kind == "classes":
        rate = "n/a" if agreement.rate is None else f"{agreement.rate:.3f}"
        head = f"agreement: {rate} of {agreement.matched} rows answered by both"
    else:
        d = data["differences"]
        head = (
            f"candidate - primary over {d['rows']} rows answered by both: mean {d['mean']}, "
            f"p5 {d['p5']}, p50 {d['p50']}, p95 {d['p95']}; mean absolute {d['mean_abs']}"
        )
    lines = [head]
    unmatched = [
        f"{agreement.primary_only} primary row(s) without a candidate answer"
        if agreement.primary_only
        else "",
        f"{agreement.candidate_only} candidate row(s) without a primary answer"
        if agreement.candidate_only
        else "",
        f"{agreement.ambiguous} row(s) of request ids logged twice left out"
        if agreement.ambiguous
        else "",
    ]
    if any(unmatched):
        lines.append("  " + "; ".join(u for u in unmatched if u))
    return lines


def _switch_lines(summary: ReleaseSummary) -> list[str]:
    if not summary.switches_total:
        return ["switches: none"]
    lines = [f"switches ({summary.switches_total}):"]
    for number, s in enumerate(
        summary.switches, summary.switches_total - len(summary.switches) + 1
    ):
        figures = ", ".join(f"{k} {v}" for k, v in s["figures"].items())
        lines.append(
            f"  {number}. {s['time']}  {s['action']} {s['from']} -> {s['to']}  by {s['by']}: "
            f"{s['why']}" + (f" ({figures})" if figures else "")
        )
    rules = summary.rules
    if rules["promote_if"] or rules["rollback_if"]:
        lines.append(
            f"rules: promote if {', '.join(rules['promote_if']) or '-'}; roll back if "
            f"{', '.join(rules['rollback_if']) or '-'}"
            + (f"; after {rules['after']} requests" if rules["after"] else "")
        )
    return lines
