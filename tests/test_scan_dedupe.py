"""SCAN may return a key twice; ``list``, ``stats`` and ``purge`` still count each
session once (issue #10, item 12), remembering only the latest keys (issue #14).

A real server repeats keys when its table shrinks in the middle of a pass: the
first test makes one do it, waiting on the server's own report of its table. For
the bulk commands, a connection class between redis-py and a real redis-server
repeats keys in the SCAN replies the way a shrinking server does (keys of earlier
replies come back, and a key appears twice in one reply); every other reply passes
through untouched.
"""

from __future__ import annotations

import itertools
import random
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
from sesstool.stores.scanseen import WINDOW, SeenKeys
from tests.properties import examples
from tests.servers import ServerProcess, start_redis

pytestmark = pytest.mark.network

SESSIONS = 3000
BATCH = 50


@pytest.fixture(scope="module")
def debug_redis() -> t.Iterator[ServerProcess]:
    """A server that reports its table (DEBUG HTSTATS) and resizes it soon (hz 100)."""
    server = start_redis(["--enable-debug-command", "yes", "--hz", "100"])
    yield server
    server.stop()


def _wait_for_shrink(client: t.Any, most: int) -> None:
    """Return once db 0's main table has at most ``most`` buckets and is not rehashing."""
    import time

    deadline = time.monotonic() + 30
    while True:
        report = client.execute_command("DEBUG", "HTSTATS", 0).decode()
        sizes = [int(line.split(":")[1]) for line in report.splitlines() if "table size:" in line]
        if sizes and len(sizes) == 1 and sizes[0] <= most:
            return
        assert time.monotonic() < deadline, f"the table never shrank: {report}"
        time.sleep(0.01)


def test_a_real_shrinking_server_repeats_keys_and_the_listing_does_not(debug_redis: ServerProcess) -> None:
    """Each trial reads 30% of 60,000 keys, both with bare SCAN and with sesstool's
    listing, deletes all but ten keys, waits for the server to shrink its table, and
    reads on. Which keys repeat depends on the server's random hash seed, so trials
    go on until the bare SCAN repeated some (about one trial in two); the listing
    must never repeat one."""
    client = redis.Redis(host="127.0.0.1", port=debug_redis.port)
    store = RedisStore(redis.Redis(host="127.0.0.1", port=debug_redis.port), f"redis://127.0.0.1:{debug_redis.port}/0")
    total = 60_000
    bare_repeats = 0
    for trial in range(20):
        # Other survivors each trial: the same keys would fall in the same buckets.
        survivors = {b"session:%d" % i for i in random.Random(trial).sample(range(total), 10)}
        client.flushall()
        pipe = client.pipeline(transaction=False)
        for i in range(total):
            pipe.set(b"session:%d" % i, msgspec.msgpack.encode({"user_id": i}))
        pipe.execute()
        listed: list[bytes] = []
        records = iter(iter_plain_records(Scan(store, "session:", batch=500)))
        listed.extend(r["key"].encode() for r in itertools.islice(records, total * 3 // 10))
        bare: list[bytes] = []
        cursor = 0
        while len(bare) < total * 3 // 10:
            cursor, keys = client.scan(cursor=cursor, match=b"session:*", count=500)
            bare.extend(keys)
        pipe = client.pipeline(transaction=False)
        for i in range(total):
            if b"session:%d" % i not in survivors:
                pipe.delete(b"session:%d" % i)
        pipe.execute()
        _wait_for_shrink(client, 16)
        while cursor != 0:
            cursor, keys = client.scan(cursor=cursor, match=b"session:*", count=500)
            bare.extend(keys)
        listed.extend(r["key"].encode() for r in records)
        assert len(listed) == len(set(listed))
        assert survivors <= set(listed) and survivors <= set(bare)
        bare_repeats += len(bare) - len(set(bare))
        if bare_repeats:
            break
    assert bare_repeats, "in 20 trials the server never repeated a key: this test tests nothing"
    store.close()
    client.close()


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


def test_seen_keys_remembers_the_latest_window_in_bounded_memory() -> None:
    """A repeat within the last WINDOW keys is dropped however long the pass; one
    from much further back is not remembered, so memory stays bounded: about 6 MB
    for a million long keys, where every key's hash took 88 MB."""
    import sys

    seen = SeenKeys()
    step = 1000
    for start in range(0, 1_000_000, step):
        batch = [b"session:%0200d" % i for i in range(start, start + step)]
        repeat = [b"session:%0200d" % (start - WINDOW + 1)] if start >= WINDOW else []
        assert seen.fresh(batch + repeat) == batch
    assert len(seen) == 1_000_000
    held = [seen._newer, seen._older]
    size = sum(sys.getsizeof(d) + sum(sys.getsizeof(h) for h in d) for d in held)
    assert size < 7_000_000
    assert seen.fresh([b"session:%0200d" % 0]) == [b"session:%0200d" % 0]  # long forgotten
