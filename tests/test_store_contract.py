"""The store contract, on every store and topology, against real servers.

One suite, parametrised by ``store``: Redis standalone (TCP, Unix socket, TLS),
behind Sentinel, Cluster (three primaries); memcached on one and on three
servers; Flask-Session's SQLAlchemy table in SQLite and PostgreSQL; a cachelib
directory; a Redis snapshot file (read-only: it is filled through a live server
that then SAVEs, see :func:`seed`); and two in-test stores that implement only the primitives over a real
server, so that every default of :class:`~sesstool.stores.base.Store` (batch
operations, idle selection) runs too, and every capability a store does not
declare is seen to raise :class:`~sesstool.errors.Unsupported`, in the library
and through the CLI (exit 2, one ``error:`` line).

Each test works under its own prefix: the servers are shared by the session.
Nothing races the clock: TTLs are large and compared with a tolerance, expiry in
the past is set with ``expire_at``.
"""

from __future__ import annotations

import functools
import re
import time
import typing as t
import uuid
import warnings

import pytest

from sesstool.errors import InvalidInput, Unsupported
from sesstool.stores import open_store, registry
from sesstool.stores.base import MISSING, Capability, Entry, ExpiredPurge, Store, StoredItem
from tests.servers import ServerProcess, snapshot
from tests.sqlstores import postgres_sessions_url, sqlite_url

__all__ = ["postgres_sessions_url", "sqlite_url"]  # fixtures

# -- stores built on the primitives only ------------------------------------------------


class PrimitivesStore(Store):
    """The abstract operations and plain writes of a real store, nothing more: every
    batch operation is the base class's default, every option is unsupported."""

    capabilities = frozenset({Capability.WRITE, Capability.ENUMERABLE_IDS})

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> Store:
        # minimal://host:port over the redis-server there (the registry test line below)
        return cls(open_store("redis://" + url.split("://", 1)[1] + "/0"))

    def describe(self) -> str:
        return "minimal+" + self.inner.describe()

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        return self.inner.scan(prefix, batch=batch)

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        return self.inner.scan_keys(prefix, batch=batch)

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        return self.inner.fetch(keys)

    def get(self, key: bytes) -> StoredItem | None:
        return self.inner.get(key)

    def close(self) -> None:
        self.inner.close()

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self.inner.set(key, value, ttl)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        return self.inner.add(key, value, ttl)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        return self.inner.delete(keys)


class ConditionalStore(PrimitivesStore):
    """Also the single-key options of the real store; batches still the defaults."""

    capabilities = PrimitivesStore.capabilities | {
        Capability.PER_KEY_TTL, Capability.PERSIST, Capability.COMPARE_AND_SET,
        Capability.CONDITIONAL_DELETE, Capability.IDLE_TIME,
    }  # fmt: skip
    expired_purge = ExpiredPurge.IDLE_WITHOUT_TTL

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        return self.inner.compare_and_set(item, value)

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        return self.inner.delete_if_unchanged(items)

    def expire(self, key: bytes, seconds: int) -> bool:
        return self.inner.expire(key, seconds)

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        return self.inner.expire_at(key, timestamp)

    def persist(self, key: bytes) -> bool:
        return self.inner.persist(key)

    def idle_seconds(self, keys: t.Sequence[bytes]) -> list[int | None]:
        return self.inner.idle_seconds(keys)


# -- the stores ---------------------------------------------------------------------------

STORES = ["redis", "redis-unix", "redis-tls", "redis-sentinel", "redis-cluster", "memcached", "memcached-3",
          "memcached-classic", "base-conditional", "base-primitives", "sqlite", "postgresql", "files",
          "rdb"]  # fmt: skip


def _sentinel_store(url: str) -> Store:
    deadline = time.monotonic() + 10
    while True:  # the sentinel needs a moment to learn the primary
        store = open_store(url)
        try:
            store.get(b"probe")
            return store
        except Exception:
            store.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _memcached_url(*servers: ServerProcess) -> str:
    return "memcached://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, redis_server: ServerProcess, memcached_server: ServerProcess
          ) -> t.Iterator[Store]:  # fmt: skip
    kind = request.param
    fixture = request.getfixturevalue
    built: Store
    if kind == "redis":
        built = open_store(f"redis://127.0.0.1:{redis_server.port}/0")
    elif kind == "redis-unix":
        built = open_store(f"unix://{redis_server.workdir}/redis.sock?db=0")
    elif kind == "redis-tls":
        built = open_store(fixture("tls_redis").url)
    elif kind == "redis-sentinel":
        built = _sentinel_store(f"redis+sentinel://:primary-pw@127.0.0.1:{fixture('sentinel')[1]}/sessions/0")
    elif kind == "redis-cluster":
        built = open_store(f"redis+cluster://127.0.0.1:{fixture('cluster')[0].port}")
    elif kind == "memcached":
        built = open_store(_memcached_url(memcached_server))
    elif kind == "memcached-3":
        built = open_store(_memcached_url(*fixture("memcached_trio")))
    elif kind == "memcached-classic":  # what memcached before 1.6 speaks: gets, cas, touch
        from sesstool.stores.memcached import MemcachedStore

        built = MemcachedStore([("127.0.0.1", memcached_server.port)], meta=False)
    elif kind == "sqlite":
        built = open_store(fixture("sqlite_url"))
    elif kind == "postgresql":
        built = open_store(fixture("postgres_sessions_url"))
    elif kind == "files":  # a cachelib FileSystemCache directory, with its item count
        from cachelib.file import FileSystemCache

        directory = fixture("tmp_path") / "sessions"
        FileSystemCache(str(directory), threshold=500)
        built = open_store(f"file://{directory}")
    elif kind == "rdb":
        built = open_store("rdb://" + snapshot(redis_server, fixture("tmp_path")))
    elif kind == "base-conditional":
        built = ConditionalStore(open_store(f"redis://127.0.0.1:{redis_server.port}/0"))
    else:
        built = PrimitivesStore(open_store(_memcached_url(memcached_server)))
    yield built
    built.close()


@pytest.fixture
def prefix() -> bytes:
    return b"contract:%s:" % uuid.uuid4().hex[:12].encode()


def _within(ttl: int | None, expected: int, slack: int = 5) -> bool:
    # An expiry given as a Unix time (expire_at, and every memcached TTL over 30 days)
    # is read back on memcached's own clock, which ticks once a second from a rounded
    # start and falls behind on a loaded machine: it may read a few seconds more.
    return ttl is not None and expected - slack <= ttl <= expected + 10


def _entries(prefix: bytes, count: int, ttl: int | None = 1000) -> list[Entry]:
    return [(prefix + b"s%03d" % i, b"v%03d" % i, ttl) for i in range(count)]


def _fill(store: Store, prefix: bytes, count: int, ttl: int | None = 1000) -> list[bytes]:
    entries = _entries(prefix, count, ttl)
    store.set_many(entries)
    return [key for key, _, _ in entries]


Seed = t.Callable[[Store, t.Sequence[Entry]], Store]


@pytest.fixture
def seed(request: pytest.FixtureRequest, redis_server: ServerProcess) -> Seed:
    """Put entries in a store, then return the store to read them from: the store
    itself when it writes; for a snapshot, what a live server wrote after holding
    them (the entries go into that redis-server, it SAVEs, the dump is opened)."""

    def put(store: Store, entries: t.Sequence[Entry]) -> Store:
        if store.supports(Capability.WRITE):
            store.set_many(entries)
            return store
        import redis

        client = redis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            for key, value, ttl in entries:
                client.set(key, value, ex=ttl)
        finally:
            client.close()
        store.close()
        reopened = open_store("rdb://" + snapshot(redis_server, request.getfixturevalue("tmp_path")))
        request.addfinalizer(reopened.close)
        return reopened

    return put


def _writes(store: Store) -> None:
    if not store.supports(Capability.WRITE):
        pytest.skip("a read-only store: its writes are refused (test_every_capability_not_declared_is_unsupported)")


# -- what every store does ----------------------------------------------------------------


def test_declared_capabilities_are_capabilities(store: Store) -> None:
    assert isinstance(store.capabilities, frozenset)
    assert all(isinstance(c, Capability) for c in store.capabilities)
    assert store.describe() and "primary-pw" not in store.describe()


def _by_written_key(store: Store, items: list[StoredItem], written: list[bytes]) -> dict[bytes, StoredItem]:
    """Scanned items by the key they were written under. A store whose keys hide
    the sid (files named by a hash) yields its own names instead, for every item
    whatever its prefix: there each written key is matched to the one scanned item
    that holds its (unique) value, and the scanned name must read the same item."""
    if store.supports(Capability.ENUMERABLE_IDS):
        return {item.key: item for item in items}
    assert len({item.key for item in items}) == len(items)
    by_value = {item.value: item for item in items}
    matched = {key: by_value[t.cast(StoredItem, store.get(key)).value] for key in written}
    for item in matched.values():
        assert t.cast(StoredItem, store.get(item.key)).value == item.value
    return matched


def test_scan_scan_keys_and_scan_columns_list_each_key_once(store: Store, prefix: bytes, seed: Seed) -> None:
    entries = _entries(prefix, 25)
    keys = [key for key, _, _ in entries]
    # other: is outside the prefix; its value differs, as a store whose keys hide the
    # sid is matched by value
    store = seed(store, [*entries, (prefix + b"forever", b"x", None), (b"other:" + prefix, b"y", 60)])
    items = [item for batch in store.scan(prefix, batch=7) for item in batch]
    if store.supports(Capability.ENUMERABLE_IDS):
        assert sorted(item.key for item in items) == sorted([*keys, prefix + b"forever"])
    else:  # the names cannot tell a prefix: every item is listed
        assert len(items) == len(keys) + 2
    by_key = _by_written_key(store, items, [*keys, prefix + b"forever"])
    assert by_key[keys[3]].value == b"v003" and _within(by_key[keys[3]].ttl, 1000)
    assert by_key[prefix + b"forever"].ttl is None
    scanned = [key for batch in store.scan_keys(prefix, batch=7) for key in batch]
    assert sorted(scanned) == sorted(item.key for item in items)
    by_scanned = {item.key: item for item in items}
    for columns in (*store.scan_columns(prefix, batch=7), *Store.scan_columns(store, prefix, batch=7)):
        for key, value, pttl in zip(columns.keys, columns.values, columns.pttls, strict=True):
            assert value == by_scanned[key].value
            assert (pttl == -1) == (by_scanned[key].ttl is None)


def test_scan_values_then_read_ttls_gives_what_scan_gives(store: Store, prefix: bytes, seed: Seed) -> None:
    # What list --where reads: values first, the TTL only of the items it keeps.
    entries = _entries(prefix, 25)
    store = seed(store, [*entries, (prefix + b"forever", b"x", None)])
    scanned = {item.key: item for batch in store.scan(prefix, batch=7) for item in batch}
    kept = [item for batch in store.scan_values(prefix, batch=7) for item in batch]
    assert sorted(item.key for item in kept) == sorted(scanned)
    assert all(item.value == scanned[item.key].value for item in kept)
    kept = kept[::3]  # some of them, as a selection would keep
    store.read_ttls(kept)
    for item in kept:
        assert item.kind == scanned[item.key].kind
        if scanned[item.key].ttl is None:
            assert item.ttl is None
        else:
            assert _within(item.ttl, scanned[item.key].ttl or 0)


def test_fetch_keeps_order_and_get_reports_missing_keys(store: Store, prefix: bytes, seed: Seed) -> None:
    entries = _entries(prefix, 3)
    keys = [key for key, _, _ in entries]
    store = seed(store, entries)
    fetched = store.fetch([keys[2], prefix + b"gone", keys[0]])
    assert [item.key for item in fetched] == [keys[2], prefix + b"gone", keys[0]]
    assert [item.value for item in fetched] == [b"v002", None, b"v000"]
    assert fetched[1].kind == MISSING
    assert store.get(prefix + b"gone") is None
    got = store.get(keys[1])
    assert got is not None and got.value == b"v001" and got.size == 4
    assert store.fetch([]) == []


@pytest.mark.parametrize("impl", ["store", "base"])
def test_add_set_and_delete_batches(store: Store, prefix: bytes, impl: str) -> None:
    _writes(store)
    on = _impl(store, impl)
    a, b, c = prefix + b"a", prefix + b"b", prefix + b"c"
    assert store.add(a, b"one", 100) and not store.add(a, b"two", 100)
    assert on.add_many([(a, b"x", 100), (b, b"bee", None)]) == [False, True]
    on.set_many([(c, b"sea", 300), (a, b"ay", 200)])
    assert [item.value for item in store.fetch([a, b, c])] == [b"ay", b"bee", b"sea"]
    assert _within(t.cast(StoredItem, store.get(a)).ttl, 200)
    assert on.delete_each([a, prefix + b"gone", b]) == [True, False, True]
    assert store.delete([c, prefix + b"gone"]) == 1
    assert store.fetch([a, b, c])[2].kind == MISSING


def test_a_ttl_of_zero_or_less_is_refused_on_every_store(store: Store, prefix: bytes) -> None:
    _writes(store)
    for ttl in (0, -5):
        with pytest.raises(InvalidInput, match="expire at once"):
            store.set(prefix + b"k", b"v", ttl)
        with pytest.raises(InvalidInput, match="expire at once"):
            store.set_many([(prefix + b"ok", b"v", 10), (prefix + b"k", b"v", ttl)])
    assert store.fetch([prefix + b"k"])[0].kind == MISSING


@pytest.mark.parametrize("impl", ["store", "base"])
def test_unlink_prefix_deletes_everything_under_the_prefix(store: Store, prefix: bytes, impl: str) -> None:
    _writes(store)
    _fill(store, prefix, 30)
    store.set(b"keep:" + prefix, b"x", 60)
    on = _impl(store, impl)
    counts = list(on.unlink_prefix(prefix, batch=8))
    if not store.supports(Capability.ENUMERABLE_IDS):  # names cannot tell a prefix: all go
        assert sum(deleted for _, deleted in counts) == 31 and store.get(b"keep:" + prefix) is None
        return
    assert sum(deleted for _, deleted in counts) == 30
    assert not [k for batch in store.scan_keys(prefix) for k in batch]
    assert store.get(b"keep:" + prefix) is not None


# -- TTL: the same meaning everywhere -------------------------------------------------------


def test_ttl_semantics(store: Store, prefix: bytes) -> None:
    if not store.supports(Capability.PER_KEY_TTL):
        pytest.skip("no per-key TTL")
    forever, timed, gone = prefix + b"forever", prefix + b"timed", prefix + b"gone"
    store.set(forever, b"f", None)
    store.set(timed, b"t", 1000)
    store.set(gone, b"g", 1000)
    assert t.cast(StoredItem, store.get(forever)).ttl is None
    assert store.expire(timed, 500) and _within(t.cast(StoredItem, store.get(timed)).ttl, 500)
    assert store.expire_at(timed, int(time.time()) + 5000)
    assert _within(t.cast(StoredItem, store.get(timed)).ttl, 5000)
    # A 40-day expiry crosses memcached's 30-day rule (absolute exptime past it).
    assert store.expire(timed, 40 * 86400) and _within(t.cast(StoredItem, store.get(timed)).ttl, 40 * 86400)
    assert store.expire_at(gone, int(time.time()) - 10)
    # Past its expiry: gone (Redis, memcached) or held with ttl 0 (stores that keep it).
    after = store.get(gone)
    assert after is None or after.ttl == 0
    for batch in store.scan(prefix):
        assert all(item.ttl is None or item.ttl >= 0 for item in batch)
    assert not store.expire(prefix + b"missing", 10)
    assert not store.expire_at(prefix + b"missing", int(time.time()) + 10)
    if store.supports(Capability.PERSIST):
        assert store.persist(timed) and t.cast(StoredItem, store.get(timed)).ttl is None
        assert not store.persist(prefix + b"missing")


# -- conditional operations ------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["store", "base"])
def test_compare_and_set_keeps_the_ttl_and_refuses_a_changed_value(store: Store, prefix: bytes, impl: str) -> None:
    if not store.supports(Capability.COMPARE_AND_SET):
        pytest.skip("no compare-and-set")
    on = _impl(store, impl)
    a, b = prefix + b"a", prefix + b"b"
    store.set(a, b"one", 1000)
    store.set(b, b"bee", None)
    read_a, read_b = store.fetch([a, b])
    store.set(b, b"app wrote", None)  # changed after the read
    assert on.compare_and_set_many([(read_a, b"two"), (read_b, b"ours")]) == [True, False]
    now_a, now_b = store.fetch([a, b])
    assert now_a.value == b"two" and _within(now_a.ttl, t.cast(int, read_a.ttl), 3)
    assert now_b.value == b"app wrote"
    assert not store.compare_and_set(read_a, b"three")  # read_a is stale now
    assert store.compare_and_set(now_b, b"mine") and t.cast(StoredItem, store.get(b)).ttl is None
    assert not store.compare_and_set(StoredItem(prefix + b"gone", None, None, kind=MISSING), b"x")


def test_delete_if_unchanged_keeps_changed_items(store: Store, prefix: bytes) -> None:
    if not store.supports(Capability.CONDITIONAL_DELETE):
        pytest.skip("no conditional delete")
    keys = _fill(store, prefix, 3)
    items = store.fetch(keys)
    store.set(keys[1], b"app wrote", 1000)
    assert store.delete_if_unchanged(items) == 2
    assert [item.value for item in store.fetch(keys)] == [None, b"app wrote", None]
    assert store.delete_if_unchanged([]) == 0


# -- idle time -----------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["store", "base"])
def test_idle_selection_and_deletion(store: Store, prefix: bytes, impl: str) -> None:
    if not store.supports(Capability.IDLE_TIME):
        pytest.skip("no idle time")
    on = _impl(store, impl)
    forever, timed = prefix + b"forever", prefix + b"timed"
    store.set(forever, b"f", None)
    store.set(timed, b"t", 1000)
    idles = store.idle_seconds([forever, prefix + b"gone"])
    assert idles[1] is None and 0 <= t.cast(int, idles[0]) < 600
    keys = [forever, timed, prefix + b"gone"]
    assert on.fetch_idle(keys, min_idle=10**6) == []
    picked = {item.key: (item, idle) for item, idle in on.fetch_idle(keys, min_idle=-1)}
    assert set(picked) == {forever, timed} and picked[forever][0].value == b"f"
    assert _within(picked[timed][0].ttl, 1000) and picked[forever][0].ttl is None
    no_values = on.fetch_idle(keys, min_idle=-1, no_expiry_only=True, values=False)
    assert [item.key for item, _ in no_values] == [forever]
    assert on.delete_idle(keys, min_idle=10**6) == (0, {})
    assert on.delete_idle(keys, min_idle=-1, no_expiry_only=True) == (1, {})
    assert store.get(forever) is None and store.get(timed) is not None
    assert on.delete_idle(keys, min_idle=-1) == (1, {})


# -- what a store does not declare -----------------------------------------------------------

_OPERATIONS: dict[Capability, t.Callable[[Store, bytes], object]] = {
    Capability.WRITE: lambda s, k: s.set(k, b"v", 10),
    Capability.PER_KEY_TTL: lambda s, k: s.expire(k, 10),
    Capability.PERSIST: lambda s, k: s.persist(k),
    Capability.COMPARE_AND_SET: lambda s, k: s.compare_and_set(StoredItem(k, b"v", None), b"w"),
    Capability.CONDITIONAL_DELETE: lambda s, k: s.delete_if_unchanged([StoredItem(k, b"v", None)]),
    Capability.IDLE_TIME: lambda s, k: s.idle_seconds([k]),
    Capability.RECLAIM_EXPIRED: lambda s, k: s.reclaim_expired(),
    Capability.CHANGE_FEED: lambda s, k: next(s.watch(k)),
}


def test_every_capability_not_declared_is_unsupported(store: Store, prefix: bytes) -> None:
    for capability in Capability:
        if store.supports(capability):
            store.require(capability, "this test")
            continue
        expected = f"^{re.escape(store.describe())}: this store cannot .*, which this test needs$"
        with pytest.raises(Unsupported, match=expected):
            store.require(capability, "this test")
        operation = _OPERATIONS.get(capability)
        if operation is not None:
            with pytest.raises(Unsupported, match="this store cannot"):
                operation(store, prefix + b"k")


def test_a_declared_change_feed_reports_writes_made_once_it_is_ready(store: Store, prefix: bytes) -> None:
    if not store.supports(Capability.CHANGE_FEED):
        return
    from sesstool.stores.changes import Change, FeedState

    key = prefix + b"watched"
    seen: list[Change] = []
    # enable: the servers are shared; turning notifications on only adds flags.
    feed = store.watch(prefix, idle=0.2, enable=True)
    # memcached before 1.6.20 warns that it logs no deletions; not this test's subject
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            for step in feed:
                if step is FeedState.READY:
                    store.set(prefix.rstrip(b":") + b"-outside", b"v", 60)  # not under the prefix
                    store.set(key, b"v1", 60)
                    store.set(key, b"v2", 60)
                elif isinstance(step, Change):
                    seen.append(step)
                    if len(seen) == 2:
                        break
        finally:
            feed.close()
    assert seen == [Change("created", key), Change("changed", key)]


def test_purge_expired_is_declared_or_unsupported(store: Store) -> None:
    if store.expired_purge is None:
        with pytest.raises(Unsupported, match="purge --expired"):
            store.require_expired_purge()
    else:
        assert store.require_expired_purge() is store.expired_purge


class _Defaults:
    """The base class's batch operations bound to a real store: ``Store.add_many(store,
    ...)`` and so on, over the store's own primitives, its overrides bypassed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> t.Any:
        return functools.partial(getattr(Store, name), self.store)


def _impl(store: Store, impl: str) -> Store:
    return store if impl == "store" else t.cast(Store, _Defaults(store))


# -- the CLI: a missing capability is one line and exit 2 ----------------------------------


@pytest.fixture
def minimal_url(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> str:
    # A new store is one registry line: this one names the in-test class.
    monkeypatch.setitem(registry.SCHEMES, "minimal", (__name__, "PrimitivesStore"))
    import redis

    redis.Redis.from_url(redis_url).set("session:abc", b"\x81\xa1a\x01", ex=600)
    return "minimal://" + redis_url.split("://", 1)[1].rsplit("/", 1)[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purge", "--idle", "1h", "--yes"], "this store cannot report idle time, which purge --idle needs"),
        (["purge", "--expired", "--yes"], "cannot tell expired sessions, which purge --expired needs"),
        (["persist", "abc"], "this store cannot remove a key's expiry"),
        (["expire", "abc", "--in", "1h"], "this store cannot set a key's expiry"),
        (["edit", "abc", "--set", "a=2"], "this store cannot replace a value only if it is unchanged"),
        (["watch", "--limit", "1"], "this store cannot report changes as they happen, which watch needs"),
    ],
)
def test_the_cli_names_what_the_store_cannot_do(cli: t.Any, minimal_url: str, args: list[str], message: str) -> None:
    result = cli(*args, "--store", minimal_url)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "minimal+redis://" in lines[0]
