"""Reading a service's monitoring folder: its reference file and the JSON lines BentoML wrote.

A generated service writes, under one absolute folder per Bento version::

    reference.json                       what the service compares live rows with
    predictions/data/data.<worker>.log*  one JSON object per answered row (bentoml.monitor)
    rejections/data/data.<worker>.log*   one JSON object per rejected request

Everything needed for a report is in that folder, so it can be copied to another machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.errors import MlnbError

REFERENCE_FILE = "reference.json"
PREDICTIONS_MONITOR = "predictions"
REJECTIONS_MONITOR = "rejections"
# Columns bentoml.monitor adds to every record.
META_COLUMNS = frozenset({"timestamp", "request_id", "trace_id"})


class MonitorLogError(MlnbError):
    code = "monitor-logs"
    http_status = 404


@dataclass
class MonitorLogs:
    """The parsed contents of a monitoring folder."""

    folder: Path
    reference: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    unreadable_lines: int = 0

    @property
    def requests(self) -> int:
        return len({row.get("mlnb_request", row.get("request_id")) for row in self.rows})

    @property
    def features(self) -> list[str]:
        return list(self.reference.get("features", {}))


def read_monitor_folder(folder: str | Path) -> MonitorLogs:
    path = Path(folder)
    reference_path = path / REFERENCE_FILE
    if not reference_path.is_file():
        raise MonitorLogError(
            f"{path} is not an mlnb monitoring folder: it has no {REFERENCE_FILE}",
            fix="pass the folder a generated service logs to (shown by `mlnb serve`), "
            "or a Bento tag",
        )
    try:
        reference = json.loads(reference_path.read_text())
    except (OSError, ValueError) as exc:
        raise MonitorLogError(
            f"cannot read {reference_path}: {exc}",
            fix="copy the whole monitoring folder again",
        ) from None
    logs = MonitorLogs(path, reference)
    for record, ok in _records(path / PREDICTIONS_MONITOR):
        if ok:
            logs.rows.append(record)
        else:
            logs.unreadable_lines += 1
    for record, ok in _records(path / REJECTIONS_MONITOR):
        if ok:
            logs.rejections.append(record)
        else:
            logs.unreadable_lines += 1
    logs.rows.sort(key=lambda row: str(row.get("timestamp", "")))
    return logs


def _records(monitor_folder: Path) -> Iterator[tuple[dict[str, Any], bool]]:
    """Each JSON line of a monitor's data files; ``ok`` is False for a line that is not JSON."""
    data = monitor_folder / "data"
    if not data.is_dir():
        return
    for file in sorted(data.glob("data.*.log*")):
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, parse_constant=_reject_constant)
                except ValueError:
                    yield {}, False
                    continue
                yield (record, True) if isinstance(record, dict) else ({}, False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not JSON")
