"""Learning a data stage's contract from its values: pandera's ``infer_schema``, then the
rules pandera's YAML cannot say, widened over the values that share a column."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlnb.contract.values import as_table

MAX_CATEGORIES = 50


RANGE_RULES = ("greater_than_or_equal_to", "less_than_or_equal_to")


# What a learned contract only warns about: a new month of data moves a maximum or a row
# count without anything being wrong; a lost column, a new category or a new null is wrong.
DEFAULT_WARN = ("rows", "null_share", *RANGE_RULES)


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
    import pandas as pd  # type: ignore[import-untyped]
    import pandera.pandas as pa
    import yaml  # type: ignore[import-untyped]

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
