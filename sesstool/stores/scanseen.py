"""Drop the keys one SCAN pass has already returned.

Redis's SCAN promises only that a key present for the whole pass is returned *at
least* once: while the server resizes or rehashes a hash table, a cursor can visit
the same keys twice (20,002 sessions listed for 20,000). Without this, every
counting command would count some sessions twice, and ``list`` would print them twice.

:class:`SeenKeys` keeps a 64-bit hash of each key returned so far, never the key: a
Python ``set`` of ints, about 80 bytes a key measured at a million keys (the keys
themselves would take twice that). Checking a batch is two C-level set operations,
about 0.2 µs a key, under a tenth of what listing a session costs. A flat
open-addressing table would hold the same hashes in 16 to 32 bytes a key, but its
per-key probe loop runs in Python: measured 2.7 times the CPU, more than the
listing's fast path may lose.

The hash is Python's own ``hash(bytes)``: SipHash keyed with a per-process random
seed, so whoever plants keys in the store cannot choose keys that collide with a
real session. Two different keys share a 64-bit hash with a chance of about N²/2⁶⁵
(one in 30 million for a million keys); the one that lost would be left out of
that one pass, never deleted by mistake.
"""

from __future__ import annotations


class SeenKeys:
    """The keys one pass has returned; :meth:`fresh` filters out the repeats."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def fresh(self, keys: list[bytes]) -> list[bytes]:
        """``keys`` without those returned before (or twice in ``keys``), in order.

        Returns ``keys`` itself when none repeats, which is the common case.
        """
        seen = self._seen
        before = len(seen)
        if seen.isdisjoint(map(hash, keys)):
            seen.update(map(hash, keys))  # bytes cache their hash: no second SipHash
            if len(seen) - before == len(keys):
                return keys
            # A key twice in this batch: only the batch's hashes were added, take them back.
            seen.difference_update(map(hash, keys))
        fresh = []
        for key in keys:
            h = hash(key)
            if h not in seen:
                seen.add(h)
                fresh.append(key)
        return fresh
