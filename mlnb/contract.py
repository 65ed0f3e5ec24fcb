"""Data contracts: what each data stage hands on, learned from a run, then owned by the user.

A notebook's contract is ``NAME.contract.yaml`` beside ``NAME.ipynb``. For each data stage,
and each value the stage hands on to later stages (a DataFrame, a Series or a NumPy array of
at most two dimensions), it holds:

- ``schema``: a pandera ``DataFrameSchema`` in pandera's own YAML form (columns, dtypes,
  nullability, ranges, allowed categories; strict about the set of columns, never coercing);
- ``rows``: the band of row counts, ``[min, max]``;
- ``null_share``: the largest share of missing values each nullable column may have;
- ``warn``: the rules that report without failing the run: a rule name for every column
  (``less_than_or_equal_to``), or ``{column: rule}`` for one.

The first run that runs a data stage with no contract learns one (pandera's
``infer_schema``, then ranges and categories widened over the stage's values that share a
column, so another split of the same data passes) and the runner writes the file.
``mlnb contract NB`` learns it again from the latest run and shows the diff. Every later run
checks each data stage's values against it, all rules at once (pandera's lazy validation).

Reading and writing the file needs only PyYAML; learning and checking import pandera, in the
kernel, only when a data stage runs.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.errors import ContractFileError, ContractViolationError

CONTRACT_VERSION = 1
SUFFIX = ".contract.yaml"
MAX_CONTRACT_BYTES = 16 * 2**20
MAX_EXAMPLES = 3
MAX_CATEGORIES = 50
RANGE_RULES = ("greater_than_or_equal_to", "less_than_or_equal_to")
# What a learned contract only warns about: a new month of data moves a maximum or a row
# count without anything being wrong; a lost column, a new category or a new null is wrong.
DEFAULT_WARN = ("rows", "null_share", *RANGE_RULES)
VALUE_TYPES = ("DataFrame", "Series", "ndarray")
_SHOWN_VIOLATIONS = 6
_KINDS = "biufcMmOUS"  # NumPy dtype kinds a column can have (not structured, not void)


def enabled() -> bool:
    """False when ``MLNB_CONTRACTS=off``: runs neither learn nor check data contracts."""
    return os.environ.get("MLNB_CONTRACTS", "on").strip().lower() not in ("off", "0", "false")


def contract_path(notebook: str | os.PathLike[str]) -> Path:
    """``NAME.contract.yaml`` beside ``NAME.ipynb``."""
    path = Path(notebook)
    return path.with_name(path.stem + SUFFIX)


def file_sha256(path: Path) -> str | None:
    """The sha256 of the contract file, None when there is none."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# --- reading ---------------------------------------------------------------------------


def parse(text: str, source: str) -> dict[str, Any]:
    """The contract document in ``text``; a :class:`ContractFileError` naming the field."""
    import yaml  # type: ignore[import-untyped]

    if len(text) > MAX_CONTRACT_BYTES:
        raise ContractFileError(
            f"{source} is larger than {MAX_CONTRACT_BYTES // 2**20} MiB",
            fix="a contract holds rules, not data: delete it and let mlnb learn it again",
        )
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ContractFileError(
            f"{source} is not valid YAML{line}",
            fix=f"correct it, or delete it and run `mlnb contract` to learn it again: {exc}",
        ) from None
    _check_shape(document, source)
    return dict(document)


def read(path: Path) -> tuple[str, dict[str, Any]] | None:
    """``(text, document)`` of the contract file, None when it does not exist."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size > MAX_CONTRACT_BYTES:
        parse(" " * (MAX_CONTRACT_BYTES + 1), path.name)  # raises the size error
    text = path.read_text(encoding="utf-8", errors="replace")
    return text, parse(text, path.name)


def _check_shape(document: Any, source: str) -> None:
    def bad(where: str, expected: str) -> ContractFileError:
        return ContractFileError(
            f"{source}: {where} should be {expected}",
            fix="correct the field (the file's header says what each part holds), or delete "
            "the file and run `mlnb contract NOTEBOOK` to learn it again",
        )

    if not isinstance(document, dict) or document.get("mlnb_contract") != CONTRACT_VERSION:
        raise bad("the top level", f"a mapping with `mlnb_contract: {CONTRACT_VERSION}`")
    stages = document.get("stages")
    if not isinstance(stages, dict):
        raise bad("`stages`", "a mapping of data stage names to their values")
    for stage, values in stages.items():
        if not isinstance(values, dict):
            raise bad(f"stages.{stage}", "a mapping of value names to their rules")
        for name, rules in values.items():
            at = f"stages.{stage}.{name}"
            if not isinstance(rules, dict):
                raise bad(at, "a mapping with `type` and `schema`")
            if rules.get("type") not in VALUE_TYPES:
                raise bad(f"{at}.type", f"one of {', '.join(VALUE_TYPES)}")
            schema = rules.get("schema")
            if not isinstance(schema, dict) or not isinstance(schema.get("columns"), dict):
                raise bad(f"{at}.schema", "a pandera DataFrameSchema with `columns`")
            band = rules.get("rows")
            if band is not None and not (
                isinstance(band, list)
                and len(band) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) for b in band)
                and band[0] <= band[1]
            ):
                raise bad(f"{at}.rows", "[min, max] row counts")
            shares = rules.get("null_share") or {}
            if not isinstance(shares, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
                for v in shares.values()
            ):
                raise bad(f"{at}.null_share", "a mapping of columns to shares between 0 and 1")
            warn = rules.get("warn") or []
            if not isinstance(warn, list) or not all(_is_warn_item(w) for w in warn):
                raise bad(f"{at}.warn", "a list of rule names or {column: rule} entries")


def _is_warn_item(item: Any) -> bool:
    if isinstance(item, str):
        return True
    return isinstance(item, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(r, str) for r in v))
        for v in item.values()
    )


# --- the values a stage hands on -------------------------------------------------------


def is_tabular(value: Any) -> bool:
    """A DataFrame, Series or NumPy array (told apart without importing pandas)."""
    kind = type(value)
    return kind.__module__.split(".")[0] in ("pandas", "numpy") and kind.__name__ in (
        "DataFrame",
        "Series",
        "ndarray",
    )


def as_table(value: Any) -> tuple[str, Any] | None:
    """``(type, DataFrame with text column names)`` for a value a contract can cover."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped]

    if isinstance(value, pd.DataFrame):
        frame = value
        kind = "DataFrame"
    elif isinstance(value, pd.Series):
        frame = value.to_frame(str(value.name) if value.name is not None else "value")
        kind = "Series"
    elif isinstance(value, np.ndarray) and value.ndim in (1, 2) and value.dtype.kind in _KINDS:
        frame = pd.DataFrame(value if value.ndim == 2 else {"value": value})
        kind = "ndarray"
    else:
        return None
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    return kind, frame


# --- learning --------------------------------------------------------------------------


def learn_stage(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The contract section of a stage's values, and why any value could not be learned."""
    sections: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, value in values.items():
        table = as_table(value)
        if table is None:
            continue
        try:
            sections[name] = _learn_value(*table)
        except Exception as exc:  # pandera cannot describe it: say so, do not fail the run
            skipped[name] = f"{type(exc).__name__}: {exc}"
    _widen(sections)
    return sections, skipped


def _learn_value(kind: str, frame: Any) -> dict[str, Any]:
    import pandas as pd
    import pandera.pandas as pa
    import yaml

    schema: dict[str, Any] = yaml.safe_load(pa.infer_schema(frame).to_yaml())
    schema.pop("index", None)
    schema["coerce"] = False
    schema["strict"] = True
    columns = schema.get("columns") or {}
    shares: dict[str, float] = {}
    for name, rules in columns.items():
        series = frame[name]
        if rules.get("nullable"):
            shares[name] = _null_limit(float(series.isna().mean()), len(series))
        text = pd.api.types.is_string_dtype(series) or series.dtype == object
        if text and "isin" not in rules:
            present = series.dropna()
            distinct = present.unique()
            if (
                0 < len(distinct) <= MAX_CATEGORIES
                and len(distinct) * 2 <= len(present)
                and all(isinstance(v, str) for v in distinct)
            ):
                rules["isin"] = sorted(str(v) for v in distinct)
    rows = len(frame)
    return {
        "type": kind,
        "rows": [rows // 2, rows * 2],
        "null_share": shares,
        "warn": list(DEFAULT_WARN),
        "schema": schema,
    }


def _null_limit(share: float, rows: int) -> float:
    """The share of missing values a column may have: the learned share plus three standard
    errors of a share measured on that many rows (another split of the same data passes),
    rounded up to a whole percent."""
    margin = 3 * math.sqrt(share * (1 - share) / rows) if rows else 0.0
    return min(1.0, max(0.01, math.ceil((share + margin) * 100) / 100))


def _widen(sections: dict[str, Any]) -> None:
    """A column that several values share gets the widest of their rules: ranges, categories,
    nullability and null share (another split of the same data then passes)."""
    by_column: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, float]]]] = {}
    for section in sections.values():
        for column, rules in section["schema"]["columns"].items():
            key = (column, str(rules.get("dtype")))
            by_column.setdefault(key, []).append((rules, section["null_share"]))
    for (column, _), group in by_column.items():
        if len(group) < 2:
            continue
        every = [rules for rules, _ in group]
        for rule, pick in (("greater_than_or_equal_to", min), ("less_than_or_equal_to", max)):
            bounds = [r[rule] for r in every if r.get(rule) is not None]
            if len(bounds) == len(every):
                widest = pick(bounds, key=_bound_key)
                for rules in every:
                    rules[rule] = widest
        allowed = [r.get("isin") for r in every]
        if all(isinstance(a, list) for a in allowed):
            union = sorted({v for a in allowed for v in a}, key=str)  # type: ignore[union-attr]
            for rules in every:
                rules["isin"] = union
        limits = [shares[column] for _, shares in group if column in shares]
        if limits:
            for rules, shares in group:
                rules["nullable"] = True
                shares[column] = max(limits)


def _bound_key(value: Any) -> Any:
    if isinstance(value, str):
        import pandas as pd

        return pd.Timestamp(value)
    return value


# --- checking --------------------------------------------------------------------------


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
        return {
            "value": self.value,
            "column": self.column,
            "rule": self.rule,
            "severity": self.severity,
            "rows": self.rows,
            "examples": self.examples,
            "message": self.message,
        }


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
        import pandas as pd
        import pandera.pandas as pa

        frame = pd.DataFrame({"x": [1.0, 2.0]})
        pa.DataFrameSchema({"x": pa.Column(float, pa.Check.ge(0))}).validate(frame, lazy=True)


def violation_error(report: Mapping[str, Any], stage: str) -> ContractViolationError:
    """The error for a failed stage report (as :meth:`StageChecker.apply` returns it)."""
    verdict = StageVerdict(stage, str(report.get("file")), report.get("sha256"))
    verdict.violations = [Violation(**v) for v in report.get("violations") or []]
    return verdict.error()


# --- writing ---------------------------------------------------------------------------


def new_document(stages: Mapping[str, Any]) -> dict[str, Any]:
    return {"mlnb_contract": CONTRACT_VERSION, "stages": dict(stages)}


def refreshed(old: Mapping[str, Any] | None, learned: Mapping[str, Any]) -> dict[str, Any]:
    """A document learned again: each value keeps the ``warn`` list its owner wrote."""
    old_stages = (old or {}).get("stages") or {}
    stages: dict[str, Any] = {}
    for stage, values in learned.items():
        stages[stage] = {}
        for name, section in values.items():
            kept = (old_stages.get(stage) or {}).get(name) or {}
            stages[stage][name] = {**section, "warn": kept.get("warn", section["warn"])}
    for stage, values in old_stages.items():  # stages this run did not hand anything on
        stages.setdefault(stage, values)
    return new_document(stages)


HEADER = """\
# Data contract of {notebook}: what each data stage hands on to the stages after it.
# Learned by mlnb from run {run_id}; now yours: edit it, review changes, commit it.
# Every `mlnb run` checks the data stages against it and fails a stage that breaks a rule
# (`mlnb run` names the value, column, rule, rows and examples). Per value:
#   type        DataFrame, Series or ndarray
#   rows        [min, max] row counts
#   null_share  the largest share of missing values a nullable column may have
#   warn        rules that only report: a rule for every column (less_than_or_equal_to),
#               or {{column: rule}} for one (rules: rows, null_share, dtype, not_nullable,
#               isin, greater_than_or_equal_to, less_than_or_equal_to, column_in_dataframe,
#               column_in_schema)
#   schema      a pandera DataFrameSchema (https://pandera.readthedocs.io), pandera's YAML
# `mlnb contract {notebook}` learns it again from the latest run and shows the diff.
"""


def render(document: Mapping[str, Any], notebook_name: str, run_id: str) -> str:
    import yaml

    body = yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100)
    return HEADER.format(notebook=notebook_name, run_id=run_id) + str(body)


def diff(old_text: str, new_text: str, name: str) -> str:
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=f"{name} (before)",
        tofile=f"{name} (learned)",
    )
    return "".join(lines)


def same_rules(text: str, other: str) -> bool:
    """The two contract texts say the same, comments aside (the header names its run)."""

    def body(contract_text: str) -> str:
        lines = contract_text.splitlines()
        return "\n".join(line for line in lines if not line.lstrip().startswith("#"))

    return body(text) == body(other)


def write_new(path: Path, text: str) -> bool:
    """Write the contract file unless one exists (another run may have written it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def replace(path: Path, text: str) -> None:
    """Write the contract file whole, or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --- serve time ------------------------------------------------------------------------


def serve_rules(
    contract_text: str, columns: Sequence[str], training_variable: str | None
) -> dict[str, Any] | None:
    """The contract's soft rules for the model's input columns (ranges, categories, null
    share), for the service to count; None when no value of the contract covers them."""
    document = parse(contract_text, "the run's data contract")
    sections = [
        (name, section)
        for values in document["stages"].values()
        for name, section in values.items()
    ]
    wanted = [str(c) for c in columns]

    def coverage(item: tuple[str, Any]) -> tuple[bool, int]:
        name, section = item
        present = set(section["schema"]["columns"])
        return name == training_variable, sum(c in present for c in wanted)

    if not sections:
        return None
    name, section = max(sections, key=coverage)
    schema_columns = section["schema"]["columns"]
    if not any(c in schema_columns for c in wanted):
        return None
    shares = section.get("null_share") or {}
    features: dict[str, Any] = {}
    for column in wanted:
        rules = schema_columns.get(column)
        if rules is None:
            continue
        feature: dict[str, Any] = {}
        for rule, key in (("greater_than_or_equal_to", "min"), ("less_than_or_equal_to", "max")):
            if rules.get(rule) is not None:
                feature[key] = _iso(rules[rule])
        if isinstance(rules.get("isin"), list):
            feature["categories"] = list(rules["isin"])
        feature["null_share"] = float(shares.get(column, 1.0 if rules.get("nullable") else 0.0))
        features[column] = feature
    return {
        "version": 1,
        "value": name,
        "sha256": hashlib.sha256(contract_text.encode()).hexdigest(),
        "features": features,
    }


def _iso(value: Any) -> Any:
    if isinstance(value, str):
        import pandas as pd

        with contextlib.suppress(ValueError, TypeError):
            return pd.Timestamp(value).isoformat()
    return value
