"""``stats``: counts by serializer, sessions without expiry, empty ones, size and TTL spread."""

from __future__ import annotations

import array
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


def percentile(ordered: t.Sequence[int], pct: float) -> int | None:
    """Nearest-rank percentile of an already sorted sequence (``None`` when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]
