"""A BentoML monitor class that writes JSON lines fast: whole columns in, one write per record.

BentoML's default monitor takes values one at a time and sends every row through Python's
logging with a JSON formatter, which costs more than the rest of a served request, and writes
NaN as bare ``NaN``. This one keeps the default monitor's layout
(``<log_path>/<name>/data/data.<worker>.log`` and ``schema/schema.<worker>.log``) and its
columns, and is used the BentoML way::

    with bentoml.monitor(name, monitor_class=JsonLinesMonitor, monitor_options={...}) as mon:
        mon.log_batch(values, name="feature_a", role="feature", data_type="numerical")

A column of numbers (a numpy array, or a list of ints and floats) is encoded in one call to
pydantic-core's JSON encoder, several times faster than Python's ``repr`` of each float;
NaN and infinity become ``null``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

import numpy as np
from bentoml.monitoring import MonitorBase
from pydantic_core import to_json


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
        self._columns: dict[str, list[Any] | np.ndarray] = {}
        self._schema: list[dict[str, str]] = []
        self._schema_written = False
        self._data_fd: int | None = None

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
            self._schema.append({"name": name, "role": role, "type": data_type})
            if isinstance(data_batch, np.ndarray):  # kept whole, to be encoded in one call
                self._columns[name] = data_batch
                return
            self._columns[name] = []
        column = self._columns[name]
        if isinstance(column, np.ndarray):
            column = self._columns[name] = column.tolist()
        column.extend(data_batch)

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
        if self._data_fd is None:  # kept open: a record every fraction of a second
            self._data_fd = os.open(self._data_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = memoryview(text.encode())
        while data:  # one write of whole lines, so concurrent readers never see half of one
            data = data[os.write(self._data_fd, data) :]


_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_NUMBERS = frozenset({float, int, bool})


def json_fragments(values: list[Any] | np.ndarray) -> list[str]:
    """Each value of a column as JSON text; NaN and infinity as ``null``, never bare NaN.

    Numbers (a numeric numpy array, or a list of ints, floats and bools) are encoded in one
    call and split at the commas (a number's text has none); strings go through the C string
    encoder; anything else (None, mixed columns, dicts) one value at a time.
    """
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "fiub":
            return _numbers(values.tolist())
        values = values.tolist()
    kinds = set(map(type, values))
    if kinds <= _NUMBERS:
        return _numbers(values)
    if kinds == {str}:
        return list(map(encode_basestring_ascii, values))
    return [_json_value(value) for value in values]


def _numbers(values: list[Any]) -> list[str]:
    if not values:
        return []
    text: str = to_json(values, inf_nan_mode="null").decode()
    return text[1:-1].split(",")


def _json_value(value: Any) -> str:
    text: str = to_json(value, inf_nan_mode="null", fallback=_plain).decode()
    return text


def _plain(value: Any) -> Any:
    """What JSON cannot hold as is: numpy scalars unwrapped, anything else as its text."""
    return value.item() if hasattr(value, "item") else str(value)
