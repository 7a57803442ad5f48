"""The spread of many integers (session sizes, TTLs) in bounded memory.

``stats`` reads every session of a store, and a store may hold tens of millions:
keeping each value to sort at the end (16 bytes a session, and a list of Python
ints three times that while sorting) made its memory grow with the store. Here a
value costs nothing once seen before: counts are kept per distinct value, so the
percentiles are exact while there are at most :data:`EXACT_VALUES` distinct values
(sizes nearly always are: sessions look alike). Past that, values are counted in
logarithmic buckets, each :data:`RELATIVE_ERROR` wide, and a percentile is then
within that fraction of the exact one. Count, total, min and max stay exact.
"""

from __future__ import annotations

import math
import typing as t

#: distinct values counted one by one before they go into buckets
EXACT_VALUES = 50_000
#: how far a percentile may be from the exact one once values are in buckets
RELATIVE_ERROR = 0.001
_LOG_GAMMA = math.log1p(2 * RELATIVE_ERROR)


class Distribution:
    """Counts of integers, for nearest-rank percentiles in bounded memory."""

    __slots__ = ("count", "total", "min", "max", "_counts", "_bucketed", "_exact_values")

    def __init__(self, exact_values: int = EXACT_VALUES) -> None:
        self._exact_values = exact_values
        self.count = self.total = 0
        self.min: int | None = None
        self.max: int | None = None
        self._counts: dict[int, int] = {}
        self._bucketed = False

    def add(self, value: int) -> None:
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value
        key = _bucket(value) if self._bucketed else value
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if not self._bucketed and len(counts) > self._exact_values:
            self._fold()

    def _fold(self) -> None:
        folded: dict[int, int] = {}
        for value, n in self._counts.items():
            key = _bucket(value)
            folded[key] = folded.get(key, 0) + n
        self._counts, self._bucketed = folded, True

    def percentile(self, pct: float) -> int | None:
        """The nearest-rank ``pct`` percentile (``None`` when empty)."""
        if not self.count:
            return None
        rank = max(1, -(-self.count * pct // 100))  # ceil without floats drifting
        if rank >= self.count:
            return self.max  # the ends are known exactly
        if rank == 1:
            return self.min
        seen = 0
        for key in sorted(self._counts):
            seen += self._counts[key]
            if seen >= rank:
                if not self._bucketed:
                    return key
                return min(max(_representative(key), t.cast(int, self.min)), t.cast(int, self.max))
        return self.max  # not reached: the counts add up to count


def _bucket(value: int) -> int:
    # Bucket k > 0 holds values in (gamma**(k-1), gamma**k]; zero and negatives (never
    # a size or TTL, but a hostile store decides nothing here) keep buckets of their own.
    if value <= 0:
        return value if value > -EXACT_VALUES else -EXACT_VALUES
    return math.ceil(math.log(value) / _LOG_GAMMA) + 1


def _representative(key: int) -> int:
    """The middle of bucket ``key``: within :data:`RELATIVE_ERROR` of every value in it."""
    if key <= 0:
        return key
    high = math.exp((key - 1) * _LOG_GAMMA)
    return round(high * (1 - RELATIVE_ERROR))
