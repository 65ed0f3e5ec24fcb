"""A BentoML monitor class that writes JSON lines fast: whole columns in, one write per record.

BentoML's default monitor takes values one at a time and sends every row through Python's
logging with a JSON formatter, which costs more than the rest of a served request, and writes
NaN as bare ``NaN``. This one keeps the default monitor's layout
(``<log_path>/<name>/data/data.<worker>.log`` and ``schema/schema.<worker>.log``) and its
columns, and is used the BentoML way::

    with bentoml.monitor(name, monitor_class=JsonLinesMonitor, monitor_options={...}) as mon:
        mon.log_batch(values, name="feature_a", role="feature", data_type="numerical")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from bentoml.monitoring import MonitorBase


class JsonLinesMonitor(MonitorBase[Any]):
    """Rows as JSON lines. Not thread-safe: mlnb writes from one background thread."""

    def __init__(self, name: str, log_path: str, **_: Any) -> None:
        super().__init__(name)
        worker = os.environ.get("BENTOML_WORKER_ID") or str(os.getpid())
        folder = Path(log_path) / name
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "schema").mkdir(parents=True, exist_ok=True)
        self._data_path = folder / "data" / f"data.{worker}.log"
        self._schema_path = folder / "schema" / f"schema.{worker}.log"
        self._columns: dict[str, list[Any]] = {}
        self._schema: list[dict[str, str]] = []
        self._schema_written = False

    # BentoML calls these around each ``with bentoml.monitor(...)`` block.
    def start_record(self) -> None:
        self._columns = {}
        self._schema = []

    def stop_record(self) -> None:
        columns, self._columns = self._columns, {}
        if not columns:
            return
        if not self._schema_written:
            self.export_schema({c["name"]: c for c in self._schema})
            self._schema_written = True
        self.export_data(columns)

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        if name not in self._columns:
            self._columns[name] = []
            self._schema.append({"name": name, "role": role, "type": data_type})
        self._columns[name].extend(data_batch)

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        schema = {"meta_data": {"monitor": self.name}, "columns": list(columns_schema.values())}
        line = json.dumps(schema)
        with self._schema_path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def export_data(self, datas: dict[str, Any]) -> None:
        names = list(datas)
        keys = (_dumps(name).replace("%", "%%") for name in names)  # a %-format of one row
        line = "{" + ",".join(f"{key}:%s" for key in keys) + "}\n"
        fragments = [json_fragments(datas[name]) for name in names]
        text = "".join(line % row for row in zip(*fragments, strict=True))
        with self._data_path.open("a", encoding="utf-8") as handle:
            handle.write(text)  # one write: concurrent readers see whole lines


_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def json_fragments(values: list[Any]) -> list[str]:
    """Each value as JSON text, a column at a time: the common columns (all finite floats,
    all ints, all strings) without the encoder's per-value overhead. NaN raises ValueError."""
    kinds = set(map(type, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        return list(map(float.__repr__, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds == {str}:
        return list(map(encode_basestring_ascii, values))
    return list(map(_dumps, values))
