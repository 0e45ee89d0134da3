"""Latency recording and per-window statistics.

:class:`LatencyRecorder` keeps raw samples (exact percentiles) until it holds
``RAW_LIMIT`` of them, then folds them into a log-bucketed histogram whose buckets are
0.2% wide, so a percentile is never off by more than ~0.1% of its value. Long, heavy runs
stay in bounded memory and short ones are exact.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

RAW_LIMIT = 2_000_000
# Bucket growth factor: bucket i holds values in [GROWTH**i, GROWTH**(i+1)) µs.
GROWTH = 1.002
_LOG_GROWTH = math.log(GROWTH)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


def quantile_sorted(values: list[float] | array[float], q: float) -> float:
    """The q-quantile of sorted values by the nearest-rank method."""
    if not values:
        return 0.0
    rank = max(1, math.ceil(q * len(values)))
    return float(values[rank - 1])


class LatencyRecorder:
    __slots__ = ("buckets", "count", "max", "min", "raw", "total")

    def __init__(self) -> None:
        self.raw: array[float] | None = array("d")
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def record(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value
        if value < self.min:
            self.min = value
        raw = self.raw
        if raw is not None:
            raw.append(value)
            if len(raw) >= RAW_LIMIT:
                self._fold(raw)
                self.raw = None
        else:
            self._bucket(value)

    def _bucket(self, value: float) -> None:
        micros = value * 1000.0
        index = -1 if micros < 1.0 else int(math.log(micros) / _LOG_GROWTH)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def _fold(self, values: Iterable[float]) -> None:
        for v in values:
            self._bucket(v)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        if not self.count:
            return 0.0
        if self.raw is not None:
            return quantile_sorted(sorted(self.raw), q)
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                if index < 0:
                    return 0.0
                # The bucket's geometric middle, clamped to what was actually seen.
                mid = GROWTH ** (index + 0.5) / 1000.0
                return float(min(max(mid, self.min), self.max))
        return self.max

    def summary(self) -> dict[str, float]:
        out = {"mean": self.mean}
        if self.raw is not None:
            ordered = sorted(self.raw)
            for name, q in QUANTILES.items():
                out[name] = quantile_sorted(ordered, q)
        else:
            for name, q in QUANTILES.items():
                out[name] = self.quantile(q)
        out["max"] = self.max if self.count else 0.0
        return {k: round(v, 3) for k, v in out.items()}


class Window:
    """Counts and latencies of the current sim-second, for the live ``metric`` samples."""

    __slots__ = ("counts", "latencies")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {}

    def add(self, outcome: str, latency: float) -> None:
        self.latencies.append(latency)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def take(self) -> tuple[list[float], dict[str, int]]:
        lat, counts = self.latencies, self.counts
        self.latencies, self.counts = [], {}
        return lat, counts
