"""Fixed-bucket histograms, cheap to observe on the hot path and read as frozen snapshots."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate, pairwise

import msgspec

LATENCY_MS_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 50.0,
                     100.0, 250.0, 500.0, 1000.0)
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class HistogramSnapshot(msgspec.Struct, frozen=True):
    """Counts are cumulative, as Prometheus wants (`le` semantics); the last one is +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int


class Histogram:
    """Counts per bucket (`value <= bound`, then +Inf), sum and count; O(log buckets) per
    observation."""

    __slots__ = ("_bounds", "_count", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(float(b) for b in bounds)
        if not all(map(math.isfinite, self._bounds)) or any(
                a >= b for a, b in pairwise(self._bounds)):
            raise ValueError(f"histogram bounds must be finite and strictly increasing: {bounds}")
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value
        self._count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self._bounds, tuple(accumulate(self._counts)), self._sum,
                                 self._count)
