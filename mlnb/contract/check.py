"""Checking a data stage's values against its contract: pandera's lazy validation plus the
row band and null shares, one violation per value, column and rule."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlnb.contract.document import SUFFIX, parse
from mlnb.contract.learn import learn_stage
from mlnb.contract.values import as_table
from mlnb.errors import ContractFileError, ContractViolationError

MAX_EXAMPLES = 3
_SHOWN_VIOLATIONS = 6


@dataclass
class Violation:
    value: str
    column: str | None
    rule: str
    severity: str  # "error" or "warn"
    rows: int | None
    examples: list[Any]
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StageVerdict:
    """What checking one data stage's values found."""

    stage: str
    file: str
    sha256: str | None
    checked: dict[str, int] = field(default_factory=dict)  # value -> rows
    violations: list[Violation] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # handed on, not in the contract
    absent: list[str] = field(default_factory=list)  # in the contract, not handed on

    @property
    def status(self) -> str:
        if any(v.severity == "error" for v in self.violations):
            return "failed"
        if self.violations:
            return "warned"
        return "passed" if self.checked else "unchecked"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "file": self.file,
            "sha256": self.sha256,
            "values": dict(self.checked),
            "violations": [v.to_json() for v in self.violations],
            "unchecked": list(self.unchecked),
            "absent": list(self.absent),
        }

    def error(self) -> ContractViolationError:
        errors = [v for v in self.violations if v.severity == "error"]
        shown = "; ".join(f"{v.value}: {v.message}" for v in errors[:_SHOWN_VIOLATIONS])
        notebook = self.file.removesuffix(SUFFIX) + ".ipynb"
        more = len(errors) - _SHOWN_VIOLATIONS
        if more > 0:
            shown += f"; and {more} more (the run record has them all)"
        return ContractViolationError(
            f"the values it hands on break its data contract ({self.file}): {shown}",
            fix="fix the data or the stage; if the change is intended, run `mlnb contract "
            f"{notebook}` to learn the contract again from this run (it shows the diff), or "
            f"list the rule under the value's `warn:` in {self.file} to only report it",
            stage=self.stage,
        )


def check_stage(
    stage: str, section: Mapping[str, Any], values: Mapping[str, Any], file: str, sha: str | None
) -> StageVerdict:
    """Check the values a stage hands on against its contract section, all rules at once."""
    verdict = StageVerdict(stage, file, sha)
    tables = {n: t for n, t in ((n, as_table(v)) for n, v in values.items()) if t is not None}
    verdict.unchecked = sorted(set(tables) - set(section))
    verdict.absent = sorted(set(section) - set(values))
    for name in sorted(set(tables) & set(section)):
        rules = section[name]
        kind, frame = tables[name]
        verdict.checked[name] = len(frame)
        warn = _warned(rules.get("warn") or [])
        found = _violations(stage, name, rules, kind, frame)
        for column, rule, rows, examples, message in found:
            severity = "warn" if rule in warn.get(None, ()) or rule in warn.get(column, ()) else ""
            verdict.violations.append(
                Violation(name, column, rule, severity or "error", rows, examples, message)
            )
    return verdict


def _warned(items: Sequence[Any]) -> dict[str | None, set[str]]:
    found: dict[str | None, set[str]] = {None: set()}
    for item in items:
        if isinstance(item, str):
            found[None].add(item)
            continue
        for column, rules in item.items():
            names = [rules] if isinstance(rules, str) else rules
            found.setdefault(str(column), set()).update(names)
    return found


Found = tuple[str | None, str, int | None, list[Any], str]


def _violations(
    stage: str, name: str, rules: Mapping[str, Any], kind: str, frame: Any
) -> list[Found]:
    found: list[Found] = []
    if kind != rules["type"]:
        found.append((None, "type", None, [], f"is a {kind}; the contract says {rules['type']}"))
        return found
    band = rules.get("rows")
    if band and not band[0] <= len(frame) <= band[1]:
        message = f"has {len(frame)} rows; the contract expects {band[0]} to {band[1]}"
        found.append((None, "rows", len(frame), [], message))
    for column, limit in (rules.get("null_share") or {}).items():
        if column in frame.columns and len(frame):
            missing = int(frame[column].isna().sum())
            if missing / len(frame) > limit:
                share = f"{missing / len(frame):.1%}"
                message = f"column {column!r} is {share} missing; the contract allows {limit:.0%}"
                found.append((column, "null_share", missing, [], message))
    found += _schema_violations(stage, name, rules["schema"], frame)
    return found


def _schema_violations(
    stage: str, name: str, schema_dict: Mapping[str, Any], frame: Any
) -> list[Found]:
    import pandera.errors as pe

    schema = _schema(stage, name, schema_dict)
    try:
        schema.validate(frame, lazy=True)
    except pe.SchemaErrors as exc:
        return _grouped(exc.failure_cases, schema_dict, frame)
    except pe.SchemaError as exc:
        return [(None, "schema", None, [], str(exc).splitlines()[0])]
    return []


_SCHEMAS: dict[str, Any] = {}


_SCHEMAS_LOCK = threading.Lock()


def _schema(stage: str, name: str, schema_dict: Mapping[str, Any]) -> Any:
    import json

    from pandera.io import pandas_io

    key = json.dumps(schema_dict, sort_keys=True, default=str)
    with _SCHEMAS_LOCK:
        if key not in _SCHEMAS:
            try:
                _SCHEMAS[key] = pandas_io.deserialize_schema(dict(schema_dict))  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise ContractFileError(
                    f"the contract of stage {stage!r}, value {name!r}, is not a schema pandera "
                    f"can read: {type(exc).__name__}: {exc}",
                    fix="correct its `schema:` (pandera's YAML form), or learn it again with "
                    "`mlnb contract NOTEBOOK`",
                    stage=stage,
                ) from None
        return _SCHEMAS[key]


def _grouped(cases: Any, schema_dict: Mapping[str, Any], frame: Any) -> list[Found]:
    """pandera's failure cases, one entry per column and rule, with counts and examples."""
    groups: dict[tuple[str | None, str], list[Any]] = {}
    checks: dict[tuple[str | None, str], str] = {}
    for column, check, case in zip(
        cases["column"], cases["check"], cases["failure_case"], strict=False
    ):
        column = None if column is None or _is_missing(column) else str(column)
        text = str(check)
        rule = text.split("(", 1)[0]
        groups.setdefault((column, rule), []).append(case)
        checks[(column, rule)] = text
    found: list[Found] = []
    columns = schema_dict.get("columns") or {}
    for (column, rule), items in groups.items():
        examples = [_plain(v) for v in list(dict.fromkeys(map(_hashable, items)))[:MAX_EXAMPLES]]
        rows: int | None = len(items)
        if rule == "column_in_dataframe":
            for missing in items:
                found.append((str(missing), rule, None, [], f"column {missing!r} is missing"))
            continue
        if rule == "column_in_schema":
            for extra in items:
                message = f"column {extra!r} is not in the contract"
                found.append((str(extra), rule, None, [], message))
            continue
        if rule == "dtype":
            expected = (columns.get(column) or {}).get("dtype")
            actual = frame[column].dtype if column in frame.columns else "?"
            message = f"column {column!r} is {actual}; the contract says {expected}"
            found.append((column, rule, None, [], message))
            continue
        found.append((column, rule, rows, examples, _message(column, rule, rows, examples, checks)))
    return found


def _message(
    column: str | None,
    rule: str,
    rows: int | None,
    examples: list[Any],
    checks: Mapping[tuple[str | None, str], str],
) -> str:
    count = f"{rows} row{'s' if rows != 1 else ''}"
    shown = ", ".join(repr(e) for e in examples)
    bound = checks[(column, rule)].partition("(")[2].rstrip(")")
    if rule == "not_nullable":
        return f"column {column!r} has {count} missing; the contract allows none"
    if rule == "isin":
        return f"column {column!r} has {count} outside the allowed categories, e.g. {shown}"
    if rule == "greater_than_or_equal_to":
        return f"column {column!r} has {count} below {bound} (the contract's minimum), e.g. {shown}"
    if rule == "less_than_or_equal_to":
        return f"column {column!r} has {count} above {bound} (the contract's maximum), e.g. {shown}"
    return f"column {column!r} fails {checks[(column, rule)]} in {count}, e.g. {shown}"


def _is_missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _plain(value: Any) -> Any:
    """A JSON-ready example value."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(Exception):
            return _plain(item())
    return str(value)


class StageChecker:
    """Learn or check each data stage, with one parse of the contract.

    ``text`` is the contract the run checks against (None: the run learns one).
    """

    def __init__(self, text: str | None, file: str, sha: str | None) -> None:
        self.file = file
        self.sha = sha
        self.document = parse(text, file) if text is not None else None

    def apply(self, stage: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The stage's report, with ``learned`` when there is no contract (status
        ``failed`` when a rule not marked ``warn`` broke: see :func:`violation_error`)."""
        if self.document is None:
            learned, skipped = learn_stage(values)
            report: dict[str, Any] = {
                "status": "learned",
                "file": self.file,
                "sha256": None,
                "values": {n: _rows(values[n]) for n in learned},
                "violations": [],
                "learned": learned,
            }
            if skipped:
                report["not_learned"] = skipped
            return report
        section = (self.document.get("stages") or {}).get(stage)
        if section is None:
            names = sorted(n for n, v in values.items() if as_table(v) is not None)
            verdict = StageVerdict(stage, self.file, self.sha, unchecked=names)
            return verdict.to_json()
        verdict = check_stage(stage, section, values, self.file, self.sha)
        return verdict.to_json()


def _rows(value: Any) -> int:
    table = as_table(value)
    return 0 if table is None else len(table[1])


def warm_up() -> None:
    """Import pandera and validate once (its first validation costs a quarter second)."""
    with contextlib.suppress(Exception):
        import pandas as pd  # type: ignore[import-untyped]
        import pandera.pandas as pa

        frame = pd.DataFrame({"x": [1.0, 2.0]})
        pa.DataFrameSchema({"x": pa.Column(float, pa.Check.ge(0))}).validate(frame, lazy=True)


def violation_error(report: Mapping[str, Any], stage: str) -> ContractViolationError:
    """The error for a failed stage report (as :meth:`StageChecker.apply` returns it)."""
    verdict = StageVerdict(stage, str(report.get("file")), report.get("sha256"))
    verdict.violations = [Violation(**v) for v in report.get("violations") or []]
    return verdict.error()
