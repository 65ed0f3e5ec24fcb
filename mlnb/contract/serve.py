"""The contract's soft rules for the served model's input columns (ranges, categories,
null share): what the generated service counts answered rows against."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

from mlnb.contract.document import parse


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
        import pandas as pd  # type: ignore[import-untyped]

        with contextlib.suppress(ValueError, TypeError):
            return pd.Timestamp(value).isoformat()
    return value
