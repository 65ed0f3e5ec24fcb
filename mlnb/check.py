"""``mlnb check`` as data: metric floors, verdicts per notebook, and JUnit XML for CI.

Pure functions over run records (the JSON ``mlnb run --json`` prints); the CLI runs the
notebooks and prints, this module decides and renders.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from mlnb.errors import CheckUsageError as CheckUsageError  # re-exported: it lived here

_FLOOR = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*=\s*(-?[0-9.eE+\-]+)\s*$")


@dataclass(frozen=True)
class Floor:
    metric: str
    minimum: float

    def __str__(self) -> str:
        return f"{self.metric} >= {self.minimum:g}"


def parse_floor(text: str) -> Floor:
    match = _FLOOR.match(text)
    if not match:
        raise CheckUsageError(
            f"--min {text!r} is not METRIC=VALUE",
            fix="write it like --min accuracy=0.9",
        )
    try:
        minimum = float(match.group(2))
    except ValueError:
        raise CheckUsageError(
            f"--min {text!r}: {match.group(2)!r} is not a number", fix="e.g. --min r2=0.4"
        ) from None
    return Floor(match.group(1), minimum)


@dataclass(frozen=True)
class Case:
    """One JUnit test case: a run, or a metric against its floor."""

    name: str
    notebook: str
    outcome: str  # "passed", "failed" or "skipped"
    message: str = ""
    seconds: float = 0.0


@dataclass
class NotebookVerdict:
    notebook: str
    record: Mapping[str, Any] | None
    error: str | None = None  # set when no run record came back (bad notebook, crash)
    cases: list[Case] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(case.outcome != "failed" for case in self.cases)


def judge(
    notebook: str,
    record: Mapping[str, Any] | None,
    floors: Sequence[Floor],
    error: str | None = None,
) -> NotebookVerdict:
    """Cases for one notebook: its run, then each floor its metrics can be held to."""
    verdict = NotebookVerdict(notebook, record, error)
    if record is None:
        verdict.cases.append(Case("run", notebook, "failed", error or "no run record"))
        return verdict
    seconds = sum(float(s.get("seconds") or 0) for s in record.get("stages", []))
    if record.get("status") == "succeeded":
        reused = sum(1 for s in record.get("stages", []) if s.get("status") == "cached")
        verdict.cases.append(
            Case("run", notebook, "passed", f"{reused} stage(s) from cache", seconds)
        )
    else:
        verdict.cases.append(Case("run", notebook, "failed", describe_failure(record), seconds))
    verdict.cases += contract_cases(notebook, record)
    metrics = record.get("metrics") or {}
    for floor in floors:
        name = f"metric {floor}"
        if floor.metric not in metrics:
            verdict.cases.append(
                Case(name, notebook, "skipped", f"the run records no metric {floor.metric!r}")
            )
            continue
        value = _number(metrics[floor.metric])
        if value is None or value < floor.minimum:
            message = f"{floor.metric} = {metrics[floor.metric]!r} is below {floor.minimum:g}"
            verdict.cases.append(Case(name, notebook, "failed", message))
        else:
            verdict.cases.append(Case(name, notebook, "passed", f"{floor.metric} = {value:g}"))
    return verdict


def contract_cases(notebook: str, record: Mapping[str, Any]) -> list[Case]:
    """One case per data stage that met its data contract (or learned one): failed when a
    rule not marked ``warn`` broke, passed with the warnings as output otherwise."""
    cases = []
    for stage in record.get("stages", []):
        report = stage.get("contract")
        if not report:
            continue
        name = f"contract {stage['name']}"
        file = report.get("file", "the data contract")
        lines = [f"{v['value']}: {v['message']}" for v in report.get("violations") or []]
        values = ", ".join(report.get("values") or {}) or "no value"
        status = report.get("status")
        if status == "failed":
            errors = [
                f"{v['value']}: {v['message']}"
                for v in report["violations"]
                if v.get("severity") == "error"
            ]
            cases.append(Case(name, notebook, "failed", f"{file}: " + "; ".join(errors)))
        elif status == "unchecked":
            message = f"{file} has no rules for stage {stage['name']!r}"
            cases.append(Case(name, notebook, "skipped", message))
        else:
            said = "learned" if status == "learned" else "met"
            message = "\n".join([f"{values} {said} {file}", *(f"warn: {x}" for x in lines)])
            cases.append(Case(name, notebook, "passed", message))
    return cases


def unused_floors(floors: Sequence[Floor], verdicts: Sequence[NotebookVerdict]) -> list[Floor]:
    """Floors no notebook's run could be held to: most likely a misspelt metric."""
    seen = {m for v in verdicts if v.record for m in (v.record.get("metrics") or {})}
    ran = any(v.record for v in verdicts)
    return [f for f in floors if ran and f.metric not in seen]


def describe_failure(record: Mapping[str, Any]) -> str:
    error = record.get("error") or {}
    if not error:
        return f"run {record.get('run_id', '?')} ended {record.get('status', '?')}"
    from mlnb.run.record import error_place

    return f"{error_place(error)}: {error.get('ename', 'Error')}: {error.get('evalue', '')}".strip()


def junit_xml(verdicts: Sequence[NotebookVerdict], suite: str = "mlnb check") -> str:
    cases = [case for verdict in verdicts for case in verdict.cases]
    root = ET.Element(
        "testsuites",
        name=suite,
        tests=str(len(cases)),
        failures=str(sum(c.outcome == "failed" for c in cases)),
        skipped=str(sum(c.outcome == "skipped" for c in cases)),
    )
    for verdict in verdicts:
        own = verdict.cases
        element = ET.SubElement(
            root,
            "testsuite",
            name=verdict.notebook,
            tests=str(len(own)),
            failures=str(sum(c.outcome == "failed" for c in own)),
            skipped=str(sum(c.outcome == "skipped" for c in own)),
            time=f"{sum(c.seconds for c in own):.3f}",
        )
        for case in own:
            node = ET.SubElement(
                element,
                "testcase",
                classname=verdict.notebook,
                name=case.name,
                time=f"{case.seconds:.3f}",
            )
            if case.outcome == "failed":
                ET.SubElement(node, "failure", message=case.message).text = case.message
            elif case.outcome == "skipped":
                ET.SubElement(node, "skipped", message=case.message)
            elif case.message:
                ET.SubElement(node, "system-out").text = case.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
