"""Drop the keys one SCAN pass has already returned, in bounded memory.

Redis's SCAN promises only that a key present for the whole pass is returned *at
least* once. Its cursor walks the buckets of the server's hash table in reverse
binary order, so that a table which *grows* during the pass repeats nothing; a table
which *shrinks* (after many keys went away) merges buckets, and the one bucket the
cursor is in may hold keys the pass returned before. Those repeats are few (the
keys of one bucket) and recent: a bucket of a table of T buckets is 1/T of the
walk, so a repeat comes at most N/T keys after its first return, N keys being
what the server held when it was first returned. Measured on redis-server 7.0
(``tests/test_scan_dedupe.py`` does it on every run): 200,000 keys cut to 10
mid-pass (a table of 16) repeated one key, 1,350 keys back; a million cut to 50, two
keys, at most 2,948 back.

:class:`SeenKeys` therefore keeps only the keys returned *lately*: a 64-bit hash of
each, never the key, in two generations of dicts (the newer filled, then the older
dropped whole), so that at least the last :data:`WINDOW` keys, or the last
1/:data:`SHARE` of the pass, whichever is more, are always remembered. A repeat is
missed only if, while the pass runs, the server's table shrinks below both N/32,768
and 1,024 buckets (a million keys cut to fewer than 31, ten million to fewer than
306): then the few keys of that one bucket may be listed twice, never one left out.
Memory stays under 6 MB up to 33 million keys (then 0.2 bytes a key), and a Cluster
takes that for each primary, read at once; remembering every key took 88 bytes a
key (880 MB for ten million).

The hash is Python's own ``hash(bytes)``: SipHash keyed with a per-process random
seed, so whoever plants keys in the store cannot choose keys that collide with a
real session. Two keys the window holds share a 64-bit hash with a chance of about
W²/2⁶⁵; the one that lost would be left out of that one pass, never deleted by
mistake.

A Redis Cluster node is scanned on its own (a key lives on one node). Keys that a
resharding moves from a node already read to one not yet read are listed twice
whatever sesstool remembers, and moved the other way they are missed: SCAN cannot
see a migration.
"""

from __future__ import annotations

import itertools

WINDOW = 32_768
"""At least this many of the latest keys are remembered."""

SHARE = 1024
"""And at least this share (one in SHARE) of the keys the pass returned."""


class SeenKeys:
    """The keys one pass has returned lately; :meth:`fresh` filters out the repeats."""

    __slots__ = ("_newer", "_older", "_total")

    def __init__(self) -> None:
        # Each generation holds up to a window: both together hold between one and
        # two, so the latest window of keys is always in one of them.
        self._newer: dict[int, None] = {}
        self._older: dict[int, None] = {}
        self._total = 0

    def __len__(self) -> int:
        """How many distinct keys the pass has returned."""
        return self._total

    def fresh(self, keys: list[bytes]) -> list[bytes]:
        """``keys`` without those returned lately (or twice in ``keys``), in order.

        Returns ``keys`` itself when none repeats, which is the common case.
        """
        newer = self._newer
        before = len(newer)
        batch = dict.fromkeys(map(hash, keys))
        newer.update(batch)
        added = len(newer) - before
        if added == len(keys) and self._older.keys().isdisjoint(batch):
            fresh = keys
        else:
            # Existing entries keep their place in a dict: the last `added` entries
            # are the hashes this batch brought to `newer`, each once; those the older
            # generation holds were returned before all the same.
            new = set(itertools.islice(reversed(newer), added)).difference(self._older)
            fresh = []
            for key in keys:
                h = hash(key)  # cached by the bytes object: no second SipHash
                if h in new:
                    new.discard(h)
                    fresh.append(key)
        self._total += len(fresh)
        if len(newer) >= max(WINDOW, self._total // SHARE):
            self._older, self._newer = newer, {}
        return fresh
