"""The sliding window drift is scored over: the last N answered rows of each feature.

Rows arrive as the recorder's batches, one matrix per request schema. The window keeps those
matrices whole and only cuts them into columns when drift is scored (every couple of seconds),
so taking a batch in costs nothing per row.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from mlnb.monitoring.reference import json_safe


class RecentRows:
    """The last ``size`` rows, as the matrices they came in."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._chunks: deque[tuple[list[str], Any]] = deque()
        self._rows = 0

    def add(self, names: list[str], matrix: Any) -> None:
        """Take a matrix of rows (rows by ``names``); drop the chunks that fell out."""
        if not len(matrix):
            return
        self._chunks.append((names, matrix))
        self._rows += len(matrix)
        while self._rows - len(self._chunks[0][1]) >= self.size:
            _, old = self._chunks.popleft()
            self._rows -= len(old)

    def columns(self, wanted: set[str] | None = None) -> dict[str, list[Any]]:
        """Each feature's last ``size`` values, oldest first, as plain JSON values
        (NaN and infinity as None)."""
        parts: dict[str, list[Any]] = {}
        for names, matrix in self._chunks:
            for index, name in enumerate(names):
                if wanted is None or name in wanted:
                    parts.setdefault(name, []).append(matrix[:, index])
        return {name: plain_values(np.concatenate(p)[-self.size :]) for name, p in parts.items()}


def plain_values(column: Any) -> list[Any]:
    """A numpy column as a list of plain JSON values; NaN and infinity become None."""
    if column.dtype.kind == "f" and not np.isfinite(column).all():
        column = np.where(np.isfinite(column), column, None)
    elif column.dtype.kind not in "fiub":
        return [json_safe(value) for value in column.tolist()]
    values: list[Any] = column.tolist()
    return values
