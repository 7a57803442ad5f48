"""SCAN may return a key twice; ``list``, ``stats`` and ``purge`` still count each
session once (issue #10, item 12).

A real rehash cannot be caught on cue, so a real redis-server answers every command
and a connection class between redis-py and the socket repeats keys in the SCAN
replies the way a resizing server does: keys of earlier replies come back, and a
key appears twice in one reply. Every other reply passes through untouched.
"""

from __future__ import annotations

import typing as t

import msgspec
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from sesstool.ops.listing import Scan, iter_decoded, iter_plain_records
from sesstool.ops.purge import Criteria, purge
from sesstool.ops.selectors import parse_all
from sesstool.ops.stats import StatsAccumulator
from sesstool.stores.redis import RedisStore
from sesstool.stores.scanseen import SeenKeys
from tests.properties import examples

pytestmark = pytest.mark.network

SESSIONS = 3000
BATCH = 50


class RepeatingScanConnection(redis.Connection):
    """A real connection whose SCAN replies also repeat keys returned before."""

    returned: t.ClassVar[list[bytes]] = []

    def read_response(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        reply = super().read_response(*args, **kwargs)
        if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list):
            keys = list(reply[1])
            repeats = self.returned[-BATCH // 2 :] + keys[:1]  # earlier keys, and one twice in this reply
            self.returned.extend(keys)
            reply = [reply[0], keys + repeats]
        return reply


@pytest.fixture
def repeating_store(redis_server: t.Any, redis_client: t.Any) -> t.Iterator[RedisStore]:
    pipe = redis_client.pipeline(transaction=False)
    for i in range(SESSIONS):
        pipe.set(f"session:s{i}", msgspec.msgpack.encode({"user_id": i % 10}), ex=3600)
    pipe.execute()
    RepeatingScanConnection.returned = []
    pool = redis.ConnectionPool(host="127.0.0.1", port=redis_server.port, connection_class=RepeatingScanConnection)
    store = RedisStore(redis.Redis(connection_pool=pool), f"redis://127.0.0.1:{redis_server.port}/0")
    yield store
    store.close()


def test_the_wrapper_really_repeats_keys(repeating_store: RedisStore) -> None:
    replies = 0
    cursor = 0
    total = 0
    while True:
        cursor, keys = repeating_store.client.scan(cursor=cursor, match=b"session:*", count=BATCH)
        total += len(keys)
        replies += 1
        if cursor == 0:
            break
    assert total > SESSIONS + replies  # what sesstool counted before it dropped repeats


def test_list_yields_each_session_once(repeating_store: RedisStore) -> None:
    scan = Scan(repeating_store, "session:", batch=BATCH)
    records = list(iter_plain_records(scan))
    counters = scan.counters
    assert len(records) == len({r["key"] for r in records}) == SESSIONS
    assert counters.scanned == counters.matched == SESSIONS
    where = parse_all(["user_id=3"])
    decoded = list(iter_decoded(Scan(repeating_store, "session:", batch=BATCH), where))
    assert len(decoded) == len({d.item.key for d in decoded}) == SESSIONS // 10


def test_stats_counts_each_session_once(repeating_store: RedisStore) -> None:
    accumulator = StatsAccumulator()
    for decoded in iter_decoded(Scan(repeating_store, "session:", batch=BATCH)):
        accumulator.add(decoded)
    assert accumulator.result()["count"] == SESSIONS


@pytest.mark.parametrize(
    "criteria",
    [Criteria(everything=True), Criteria(where=parse_all(["user_id"])), Criteria(idle=-1)],
    ids=["all", "where", "idle"],
)
def test_purge_counts_each_session_once(repeating_store: RedisStore, criteria: Criteria) -> None:
    dry = purge(repeating_store, "session:", criteria, batch=BATCH, dry_run=True)
    assert (dry.matched, dry.scanned) == (SESSIONS, SESSIONS)
    done = purge(repeating_store, "session:", criteria, batch=BATCH)
    assert (done.matched, done.deleted, done.scanned) == (SESSIONS, SESSIONS, SESSIONS)
    assert repeating_store.client.dbsize() == 0


@examples(200)
@given(st.lists(st.lists(st.binary(max_size=6), max_size=40), max_size=30))
def test_seen_keys_drops_exactly_the_repeats_in_order(batches: list[list[bytes]]) -> None:
    seen = SeenKeys()
    reference: set[bytes] = set()
    for batch in batches:
        expected = []
        for key in batch:
            if key not in reference:
                reference.add(key)
                expected.append(key)
        assert seen.fresh(batch) == expected
    assert len(seen) == len(reference)


def test_seen_keys_holds_hashes_not_keys() -> None:
    """Memory a key stays a few dozen bytes whatever the keys' length (measured: about
    88 bytes a key at a million keys)."""
    import sys

    seen = SeenKeys()
    for start in range(0, 100_000, 1000):
        seen.fresh([b"session:%0200d" % i for i in range(start, start + 1000)])
    assert len(seen) == 100_000
    per_key = (sys.getsizeof(seen._seen) + sum(sys.getsizeof(h) for h in seen._seen)) / len(seen)
    assert per_key < 100
