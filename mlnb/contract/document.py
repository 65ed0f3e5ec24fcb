"""The contract file: where it is, reading it (size-limited, its shape checked field by
field), writing it whole, its header, diffs."""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb.errors import ContractFileError

CONTRACT_VERSION = 1


SUFFIX = ".contract.yaml"


MAX_CONTRACT_BYTES = 16 * 2**20


VALUE_TYPES = ("DataFrame", "Series", "ndarray")


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
