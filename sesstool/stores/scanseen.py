"""Drop the keys one SCAN pass has already returned.

Redis's SCAN promises only that a key present for the whole pass is returned *at
least* once: while the server resizes or rehashes a hash table, a cursor can visit
the same keys twice (20,002 sessions listed for 20,000). Without this, every
counting command would count some sessions twice, and ``list`` would print them twice.

:class:`SeenKeys` keeps a 64-bit hash of each key returned so far, never the key,
as the keys of a ``dict``: about 88 bytes a key measured at a million keys (the keys
themselves would take twice that). A batch costs one C-level ``dict.update``, about
0.2 µs a key; a dict rather than a set because it keeps insertion order, so when a
batch did repeat keys, the entries it added are exactly the last ones, and no second
lookup pass is needed for the common batch that repeats nothing. A flat
open-addressing array would hold the hashes in 16 to 32 bytes a key, but its probe
loop runs in Python: measured 2.7 times the CPU, more than the listing's fast path
may lose.

The hash is Python's own ``hash(bytes)``: SipHash keyed with a per-process random
seed, so whoever plants keys in the store cannot choose keys that collide with a
real session. Two different keys share a 64-bit hash with a chance of about N²/2⁶⁵
(one in 30 million for a million keys); the one that lost would be left out of
that one pass, never deleted by mistake.
"""

from __future__ import annotations

import itertools


class SeenKeys:
    """The keys one pass has returned; :meth:`fresh` filters out the repeats."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: dict[int, None] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def fresh(self, keys: list[bytes]) -> list[bytes]:
        """``keys`` without those returned before (or twice in ``keys``), in order.

        Returns ``keys`` itself when none repeats, which is the common case.
        """
        seen = self._seen
        before = len(seen)
        seen.update(dict.fromkeys(map(hash, keys)))
        added = len(seen) - before
        if added == len(keys):
            return keys
        # Existing keys keep their place in a dict: the last `added` entries are the
        # hashes this batch brought, each once.
        new = set(itertools.islice(reversed(seen), added))
        fresh = []
        for key in keys:
            h = hash(key)  # cached by the bytes object: no second SipHash
            if h in new:
                new.discard(h)
                fresh.append(key)
        return fresh
