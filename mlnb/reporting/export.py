"""``mlnb monitor export``: a monitoring log as JSON lines, the way ``bentoml.monitor`` writes.

One JSON object per row, oldest segment first: ``timestamp`` (ISO 8601, UTC) and
``request_id`` first, then the row's columns under their logged names. NaN and infinity are
``null``, durations are seconds. Written a segment at a time, so memory stays bounded.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterator
from typing import IO, Any

from mlnb.monitoring.records import PREDICTIONS_LOG, REQUEST, TIME
from mlnb.reporting.logs import MonitorFolder

FORMATS = ("jsonl",)


def json_lines(logs: MonitorFolder, log: str = PREDICTIONS_LOG) -> Iterator[str]:
    """Each logged row of ``log`` as one JSON line (without the newline)."""
    encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_plain).encode
    for table in logs.tables(log):
        names = table.column_names
        ordered = [n for n in (TIME, REQUEST) if n in names] + [
            n for n in names if n not in (TIME, REQUEST)
        ]
        for batch in table.select(ordered).to_batches(max_chunksize=10_000):
            for row in batch.to_pylist():
                record = {("timestamp" if k == TIME else k): _json_value(v) for k, v in row.items()}
                yield encode(record)


def write_json_lines(logs: MonitorFolder, out: IO[str], log: str = PREDICTIONS_LOG) -> int:
    """Write every row of ``log`` to ``out``; the number of lines written."""
    lines = 0
    for line in json_lines(logs, log):
        out.write(line + "\n")
        lines += 1
    return lines


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
