"""``stats``: counts by serializer, sessions without expiry, empty ones, size and TTL spread."""

from __future__ import annotations

import array
import bisect
import typing as t
from dataclasses import dataclass, field

from sesstool.ops.records import Decoded, is_empty


@dataclass
class StatsAccumulator:
    """Collects the figures of ``stats`` in a few compact arrays, one session at a time."""

    count: int = 0
    serializers: dict[str, int] = field(default_factory=dict)
    no_ttl: int = 0
    empty: int = 0
    sizes: array.array[int] = field(default_factory=lambda: array.array("q"))
    ttls: array.array[int] = field(default_factory=lambda: array.array("q"))

    def add(self, decoded: Decoded) -> None:
        self.count += 1
        self.serializers[decoded.serializer] = self.serializers.get(decoded.serializer, 0) + 1
        item = decoded.item
        self.sizes.append(item.size)
        if item.ttl is None:
            self.no_ttl += 1
        else:
            self.ttls.append(item.ttl)
        if is_empty(decoded.data):
            self.empty += 1

    def histograms(self) -> dict[str, list[tuple[str, int]]]:
        """Size and TTL spread in fixed buckets (sessions without expiry last), for charts."""
        ttl = histogram(self.ttls, TTL_BUCKETS)
        if self.no_ttl:
            ttl.append(("never expires", self.no_ttl))
        return {"size": histogram(self.sizes, SIZE_BUCKETS), "ttl": ttl}

    def result(self, *, undecodable: int = 0) -> dict[str, t.Any]:
        """The ``stats`` figures; ``undecodable`` counts the sessions that could not be
        decoded (as ``unknown`` in ``serializers``, or left out by a ``--where``)."""
        sizes = sorted(self.sizes)
        ttls = sorted(self.ttls)
        return {
            "count": self.count,
            "serializers": dict(sorted(self.serializers.items(), key=lambda kv: (-kv[1], kv[0]))),
            "no_ttl": self.no_ttl,
            "empty": self.empty,
            "size": {
                "total": sum(sizes),
                "p50": percentile(sizes, 50),
                "p95": percentile(sizes, 95),
                "max": sizes[-1] if sizes else None,
            },
            "ttl": {
                "min": ttls[0] if ttls else None,
                "p50": percentile(ttls, 50),
                "max": ttls[-1] if ttls else None,
            },
            "undecodable": undecodable,
        }


#: Upper bounds (exclusive) of the buckets ``stats`` draws on a terminal, with labels.
SIZE_BUCKETS = ((128, "< 128 B"), (512, "< 512 B"), (2048, "< 2 KiB"), (8192, "< 8 KiB"),
                (32768, "< 32 KiB"), (131072, "< 128 KiB"), (524288, "< 512 KiB"), (None, ">= 512 KiB"))
TTL_BUCKETS = ((60, "< 1 minute"), (3600, "< 1 hour"), (86400, "< 1 day"), (7 * 86400, "< 7 days"),
               (31 * 86400, "< 31 days"), (None, ">= 31 days"))


def histogram(values: t.Iterable[int], buckets: t.Sequence[tuple[int | None, str]]) -> list[tuple[str, int]]:
    """How many of ``values`` fall in each bucket, as ``(label, count)`` in bucket order."""
    bounds = [bound for bound, _ in buckets if bound is not None]
    counts = [0] * len(buckets)
    for value in values:
        counts[bisect.bisect_right(bounds, value)] += 1
    return [(label, count) for (_, label), count in zip(buckets, counts, strict=True)]


def percentile(ordered: t.Sequence[int], pct: float) -> int | None:
    """Nearest-rank percentile of an already sorted sequence (``None`` when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]
