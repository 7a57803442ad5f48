"""``stats``: counts by serializer, sessions without expiry, empty ones, size and TTL spread."""

from __future__ import annotations

import bisect
import typing as t
from dataclasses import dataclass, field

from sesstool.ops.distribution import Distribution
from sesstool.ops.records import Decoded, is_empty

#: Upper bounds (exclusive) of the buckets ``stats`` draws on a terminal, with labels.
SIZE_BUCKETS = ((128, "< 128 B"), (512, "< 512 B"), (2048, "< 2 KiB"), (8192, "< 8 KiB"),
                (32768, "< 32 KiB"), (131072, "< 128 KiB"), (524288, "< 512 KiB"), (None, ">= 512 KiB"))
TTL_BUCKETS = ((60, "< 1 minute"), (3600, "< 1 hour"), (86400, "< 1 day"), (7 * 86400, "< 7 days"),
               (31 * 86400, "< 31 days"), (None, ">= 31 days"))

_SIZE_BOUNDS = [bound for bound, _ in SIZE_BUCKETS if bound is not None]
_TTL_BOUNDS = [bound for bound, _ in TTL_BUCKETS if bound is not None]


@dataclass
class StatsAccumulator:
    """Collects the figures of ``stats`` one session at a time, in bounded memory."""

    count: int = 0
    serializers: dict[str, int] = field(default_factory=dict)
    no_ttl: int = 0
    empty: int = 0
    sizes: Distribution = field(default_factory=Distribution)
    ttls: Distribution = field(default_factory=Distribution)
    #: sessions in each of :data:`SIZE_BUCKETS` and :data:`TTL_BUCKETS`, for charts
    size_buckets: list[int] = field(default_factory=lambda: [0] * len(SIZE_BUCKETS))
    ttl_buckets: list[int] = field(default_factory=lambda: [0] * len(TTL_BUCKETS))

    def add(self, decoded: Decoded) -> None:
        self.count += 1
        self.serializers[decoded.serializer] = self.serializers.get(decoded.serializer, 0) + 1
        item = decoded.item
        size = item.size
        self.sizes.add(size)
        self.size_buckets[bisect.bisect_right(_SIZE_BOUNDS, size)] += 1
        if item.ttl is None:
            self.no_ttl += 1
        else:
            self.ttls.add(item.ttl)
            self.ttl_buckets[bisect.bisect_right(_TTL_BOUNDS, item.ttl)] += 1
        if is_empty(decoded.data):
            self.empty += 1

    def histograms(self) -> dict[str, list[tuple[str, int]]]:
        """Size and TTL spread in fixed buckets (sessions without expiry last), for charts."""
        ttl = [(label, n) for (_, label), n in zip(TTL_BUCKETS, self.ttl_buckets, strict=True)]
        if self.no_ttl:
            ttl.append(("never expires", self.no_ttl))
        return {"size": [(label, n) for (_, label), n in zip(SIZE_BUCKETS, self.size_buckets, strict=True)],
                "ttl": ttl}

    def result(self, *, undecodable: int = 0) -> dict[str, t.Any]:
        """The ``stats`` figures; ``undecodable`` counts the sessions that could not be
        decoded (as ``unknown`` in ``serializers``, or left out by a ``--where``)."""
        sizes, ttls = self.sizes, self.ttls
        return {
            "count": self.count,
            "serializers": dict(sorted(self.serializers.items(), key=lambda kv: (-kv[1], kv[0]))),
            "no_ttl": self.no_ttl,
            "empty": self.empty,
            "size": {"total": sizes.total, "p50": sizes.percentile(50), "p95": sizes.percentile(95), "max": sizes.max},
            "ttl": {"min": ttls.min, "p50": ttls.percentile(50), "max": ttls.max},
            "undecodable": undecodable,
        }
