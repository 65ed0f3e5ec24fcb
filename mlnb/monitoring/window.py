"""The sliding window drift is scored over: the last N answered rows of each feature, binned.

:class:`BinnedWindow` keeps no values: each served batch is cut to its newest rows and every
feature's values become bin numbers over the reference bins (:mod:`mlnb.monitoring.drift`) in
one vectorised call; the window adds them to running counts per bin, and takes them out again
when the batch falls out of the window. Scoring drift then reads those counts, whatever the
number of rows.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlnb.monitoring.drift import FeatureBins, FeatureDrift, feature_bins, score


class BinnedWindow:
    """Counts per reference bin of the last ``size`` rows of each profiled feature.

    The window drops a batch once the newer ones hold ``size`` rows without it, so it holds
    between ``size`` and ``size`` plus one batch rows (fewer only until ``size`` came in); a
    batch bigger than the window counts with its newest ``size`` rows. Each batch is kept as
    one small matrix of bin numbers (a byte per row and feature, to take it out of the
    counts again), so memory is bounded by the rows held, not by the number of batches.
    Features without reference values (an all-missing training column) are not scored.
    ``add`` and ``scores`` may be called from different threads. Measured with 30 float
    features on a shared 2-core machine: ``add`` takes 0.3-0.6 ms for a 1-row batch (numpy
    calls per feature) and 0.9-1.8 ms for 256 rows; ``scores`` 1.3-3 ms.
    """

    def __init__(self, size: int, profile: Mapping[str, Mapping[str, Any]]) -> None:
        self.size = size
        found = {name: feature_bins(name, spec) for name, spec in profile.items()}
        self._bins: dict[str, FeatureBins] = {n: b for n, b in found.items() if b is not None}
        # All features' counts in one vector: a feature's bins, then one for values no bin
        # counts (FeatureBins.index gives them bin ``size``), from its offset on.
        widths = [bins.size + 1 for bins in self._bins.values()]
        starts = np.cumsum([0, *widths])
        self._offsets = dict(zip(self._bins, starts[:-1].tolist(), strict=True))
        self._counts = np.zeros(int(starts[-1]), dtype=np.int64)
        widest = max(widths, default=0)
        self._dtype = np.uint8 if widest <= 256 else np.uint16 if widest <= 65536 else np.uint32
        # a batch: its rows, and their bins (rows by features) offset into the counts
        self._chunks: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self._seen: set[str] = set()
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """The rows the window holds now."""
        return self._rows

    def add(self, columns: Mapping[str, np.ndarray], rows: int) -> None:
        """Take one served batch: each feature's ``rows`` values, oldest first."""
        take = min(self.size, rows)
        names = [name for name in columns if name in self._bins]
        if take <= 0 or not names:
            return
        binned = np.empty((take, len(names)), dtype=self._dtype)
        for column, name in enumerate(names):
            values = np.asarray(columns[name])
            binned[:, column] = self._bins[name].index(values[len(values) - take :])
        offsets = np.array([self._offsets[name] for name in names], dtype=np.intp)
        with self._lock:
            self._seen.update(names)
            self._counts += self._bincount(binned, offsets)
            self._chunks.append((take, binned, offsets))
            self._rows += take
            while self._rows - self._chunks[0][0] >= self.size:
                old_rows, old, old_offsets = self._chunks.popleft()
                self._rows -= old_rows
                self._counts -= self._bincount(old, old_offsets)

    def _bincount(self, binned: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Rows per bin of a batch, as a vector like the window's counts."""
        flat = (binned + offsets).reshape(-1)
        counts: np.ndarray = np.bincount(flat, minlength=len(self._counts))
        return counts

    def scores(
        self, thresholds: Mapping[str, float], default_threshold: float
    ) -> list[FeatureDrift]:
        """Drift of every feature the window has seen, in the profile's order."""
        with self._lock:
            counts, seen = self._counts.copy(), set(self._seen)
        return [
            score(
                bins,
                counts[self._offsets[name] : self._offsets[name] + bins.size],
                thresholds.get(name, default_threshold),
            )
            for name, bins in self._bins.items()
            if name in seen
        ]
