"""``mlnb monitor``'s data contract section: the logged rows counted against the contract's
soft rules, as the service counted them.

The rules, the window and the alert share come from the folder's ``reference.json`` (written
by the service, so an offline ``mlnb monitor FOLDER`` has them); the rows are counted with the
service's own :class:`~mlnb.monitoring.contract_rules.ContractCounter`, over the log's
segments oldest first. Range and category counts equal the service's
``mlnb_contract_violations_total``; the null share windows do when one worker logged the rows
(each worker cuts its own windows, the log is cut as one stream).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mlnb.monitoring.alerts import DEFAULT_CONTRACT_ALERT_SHARE, breaking
from mlnb.monitoring.contract_rules import (
    DEFAULT_WINDOW,
    ContractCounter,
    WindowVerdict,
    compile_rules,
)
from mlnb.monitoring.records import log_column


@dataclass
class ContractSummary:
    """Violations per feature and rule over the whole log, and what the newest complete
    window would alert on."""

    contract: str
    sha256: str
    window: int
    alert_share: float
    rows: int
    windows: int  # complete windows judged
    violations: dict[str, dict[str, int]]  # feature -> rule -> violations
    alerting: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(n for rules in self.violations.values() for n in rules.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "sha256": self.sha256,
            "window": self.window,
            "alert_share": self.alert_share,
            "rows": self.rows,
            "windows": self.windows,
            "total": self.total,
            "violations": self.violations,
            "alerting": self.alerting,
        }


class ContractTally:
    """Counts tables of the predictions log against the reference's contract rules."""

    def __init__(self, reference: Mapping[str, Any], counter: ContractCounter) -> None:
        self.reference = reference
        self.counter = counter
        self.rows = 0
        self.windows = 0
        self.last: WindowVerdict | None = None

    @classmethod
    def of(cls, reference: Mapping[str, Any]) -> ContractTally | None:
        """The tally of a folder whose reference carries contract rules; None otherwise."""
        rules = compile_rules(reference.get("contract"), _features(reference))
        if not rules:
            return None
        window = int(reference.get("contract_window") or DEFAULT_WINDOW)
        return cls(reference, ContractCounter(rules, window))

    @property
    def columns(self) -> list[str]:
        return [log_column(r.name) for r in self.counter.rules]

    def add(self, table: pa.Table) -> None:
        present = set(table.column_names)
        columns = {
            r.name: table[log_column(r.name)]
            for r in self.counter.rules
            if log_column(r.name) in present
        }
        checked = self.counter.add(columns, table.num_rows)
        self.rows += table.num_rows
        self.windows += len(checked.windows)
        if checked.windows:
            self.last = checked.windows[-1]

    def summary(self) -> ContractSummary:
        contract = self.reference.get("contract") or {}
        share = float(self.reference.get("contract_alert_share", DEFAULT_CONTRACT_ALERT_SHARE))
        violations: dict[str, dict[str, int]] = {}
        for (feature, rule), count in self.counter.totals.items():
            violations.setdefault(feature, {})[rule] = count
        return ContractSummary(
            contract=str(contract.get("contract") or ""),
            sha256=str(contract.get("sha256") or ""),
            window=self.counter.window,
            alert_share=share,
            rows=self.rows,
            windows=self.windows,
            violations=violations,
            alerting=breaking(self.last, share) if self.last is not None else [],
        )


def _features(reference: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request schema's fields: the reference's ``schema``, else each profiled
    feature's kind from its training dtype."""
    schema = reference.get("schema")
    if isinstance(schema, list) and schema:
        return [f for f in schema if isinstance(f, dict) and isinstance(f.get("name"), str)]
    from mlnb.serving.schema import dtype_kind

    return [
        {"name": str(name), "kind": dtype_kind(str(spec.get("dtype", "")))}
        for name, spec in (reference.get("features") or {}).items()
        if isinstance(spec, dict)
    ]
