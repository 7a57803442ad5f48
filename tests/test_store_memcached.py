"""The memcached store against real memcached processes and the real Flask-Session 0.8 app.

Every contract test runs twice: with meta commands (memcached 1.6+) and with the
classic protocol sesstool falls back to on older servers (forced on the same server).
"""

from __future__ import annotations

import socket
import time
import typing as t
import zlib

import pytest

from sesstool.codecs import serializers
from sesstool.errors import InvalidInput, StoreError, UndecodableValue, Unsupported
from sesstool.stores import open_store
from sesstool.stores.base import StoredItem
from sesstool.stores.memcached import (
    FLAG_PICKLE,
    FLAG_ZLIB,
    THIRTY_DAYS,
    MemcachedStore,
    decompress,
    memcached_exptime,
    open_memcached,
    parse_url,
)
from tests.flaskapps import make_app, read_session, settle, write_session
from tests.servers import (
    ServerProcess,
    free_port,
    memcached_clock,
    memcached_exchange,
    memcached_raw,
    start_memcached,
    wait_for_memcached_clock,
)

pytestmark = pytest.mark.network

DAY = 24 * 60 * 60


# -- helpers ---------------------------------------------------------------------------


def metadump(port: int) -> bytes:
    return memcached_exchange(port, b"lru_crawler metadump all\r\n", b"END\r\n")


def flush(*servers: ServerProcess) -> None:
    for server in servers:
        assert memcached_raw(server.port, b"flush_all\r\n") == b"OK\r\n"


def raw_set(port: int, key: bytes, value: bytes, *, flags: int = 0, exptime: int = 0) -> None:
    reply = memcached_raw(port, b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), value))
    assert reply == b"STORED\r\n"


def everything(store: MemcachedStore, prefix: bytes = b"") -> dict[bytes, StoredItem]:
    return {item.key: item for batch in store.scan(prefix) for item in batch}


def url_of(*servers: ServerProcess) -> str:
    return "memcached://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)


@pytest.fixture
def mc(memcached_server: ServerProcess) -> ServerProcess:
    flush(memcached_server)
    return memcached_server


@pytest.fixture(params=["meta", "classic"])
def store(request: pytest.FixtureRequest, mc: ServerProcess) -> t.Iterator[MemcachedStore]:
    built = MemcachedStore([("127.0.0.1", mc.port)], meta=request.param == "meta")
    yield built
    built.close()


@pytest.fixture
def pair(memcached_pair: tuple[ServerProcess, ServerProcess]) -> tuple[ServerProcess, ServerProcess]:
    flush(*memcached_pair)
    return memcached_pair


# -- listing ---------------------------------------------------------------------------


def test_scan_lists_every_item_under_the_prefix_in_batches(store: MemcachedStore, mc: ServerProcess) -> None:
    request = b"".join(b"set session:%d 0 %d 3 noreply\r\nv%02d\r\n" % (i, 1000 + i, i % 100) for i in range(1234))
    memcached_raw(mc.port, request + b"set other:1 0 0 1 noreply\r\nx\r\n")
    batches = list(store.scan(b"session:", batch=100))
    items = {item.key: item for batch in batches for item in batch}
    assert sorted(items) == sorted(b"session:%d" % i for i in range(1234))
    assert len(batches) >= 12 and max(len(b) for b in batches) <= 100
    item = items[b"session:7"]
    assert item.value == b"v07" and item.kind == "string" and item.version.flags == 0
    assert 1005 <= t.cast(int, item.ttl) <= 1010
    assert abs(item.version.expires_at - (time.time() + 1007)) <= 3
    assert item.version.token > 0
    assert sorted(k for batch in store.scan_keys(b"session:", batch=500) for k in batch) == sorted(items)


def test_keys_are_url_decoded_and_prefixes_match_literally(store: MemcachedStore, mc: ServerProcess) -> None:
    keys = [b"a%b:1", b"a%b:n\xc3\xa9", b"a%bc:2", b"a_b:3", "a%b:€".encode()]
    for key in keys:
        raw_set(mc.port, key, b"x")
    assert sorted(everything(store, b"a%b:")) == sorted([b"a%b:1", b"a%b:n\xc3\xa9", "a%b:€".encode()])
    assert sorted(everything(store)) == sorted(keys)


def test_an_item_without_expiry_has_no_ttl(store: MemcachedStore, mc: ServerProcess) -> None:
    raw_set(mc.port, b"session:forever", b"x")
    item = store.get(b"session:forever")
    assert item is not None and item.ttl is None and item.version.expires_at is None


def test_values_larger_than_a_socket_read_and_many_keys(store: MemcachedStore) -> None:
    big = bytes(range(256)) * 4000  # ~1 MB minus a little: memcached's default item limit
    store.set(b"session:big", big[: 1000 * 1000], None)
    for i in range(700):
        store.set(b"session:%d" % i, b"\r\nEN\r\nVA 1 t1 c1 f0\r\n%d" % i, None)
    items = everything(store, b"session:")
    assert items[b"session:big"].value == big[: 1000 * 1000]
    assert items[b"session:699"].value == b"\r\nEN\r\nVA 1 t1 c1 f0\r\n699"
    assert len(items) == 701


# -- writing ---------------------------------------------------------------------------


def test_set_add_and_the_thirty_day_rule(store: MemcachedStore) -> None:
    store.set(b"session:long", b"v", 31 * DAY)  # relative, this would have expired at once
    item = store.get(b"session:long")
    assert item is not None and item.value == b"v"
    assert 31 * DAY - 5 <= t.cast(int, item.ttl) <= 31 * DAY + 3
    store.set(b"session:short", b"v", 30 * DAY)
    assert 30 * DAY - 5 <= t.cast(int, t.cast(StoredItem, store.get(b"session:short")).ttl) <= 30 * DAY + 3
    assert not store.add(b"session:long", b"other", 10)
    assert store.add(b"session:new", b"n", None)
    assert t.cast(StoredItem, store.get(b"session:long")).value == b"v"
    with pytest.raises(InvalidInput):
        store.set(b"session:x", b"v", 0)
    with pytest.raises(InvalidInput, match="not a valid memcached key"):
        store.set(b"session:with space", b"v", None)


def test_memcached_exptime() -> None:
    assert memcached_exptime(None) == 0
    assert memcached_exptime(-5) == -1 and memcached_exptime(0) == -1
    assert memcached_exptime(THIRTY_DAYS) == THIRTY_DAYS
    assert memcached_exptime(THIRTY_DAYS + 1, now=1_800_000_000) == 1_800_000_000 + THIRTY_DAYS + 1


def test_compare_and_set_keeps_the_expiry_and_refuses_a_changed_item(store: MemcachedStore, mc: ServerProcess) -> None:
    store.set(b"session:a", b"one", 31 * DAY)
    item = store.get(b"session:a")
    assert item is not None
    assert store.compare_and_set(item, b"two")
    after = store.get(b"session:a")
    assert after is not None and after.value == b"two"
    # Kept as the absolute expiry read before (over 30 days: a Unix time). memcached
    # reads it back on its own clock, which may have fallen behind the wall clock the
    # expiry was computed on (seconds, on a loaded machine), never gained on it.
    before = t.cast(int, item.ttl)
    assert before - 5 <= t.cast(int, after.ttl) <= before + 10
    assert not store.compare_and_set(item, b"three")  # the cas token moved on
    raw_set(mc.port, b"session:a", b"app wrote this", exptime=600)  # the app, concurrently
    assert not store.compare_and_set(after, b"four")
    final = store.get(b"session:a")
    assert final is not None and final.value == b"app wrote this"
    assert 590 <= t.cast(int, final.ttl) <= 603


def test_compare_and_set_without_a_token_compares_the_value(store: MemcachedStore) -> None:
    store.set(b"session:v", b"one", 100)
    assert store.compare_and_set(StoredItem(b"session:v", b"one", 100), b"two")
    assert not store.compare_and_set(StoredItem(b"session:v", b"one", 100), b"three")
    assert t.cast(StoredItem, store.get(b"session:v")).value == b"two"


def test_delete_and_delete_if_unchanged(store: MemcachedStore, mc: ServerProcess) -> None:
    for name in (b"same", b"changed", b"deleted", b"forever"):
        store.set(b"session:" + name, b"v", None if name == b"forever" else 1000)
    items = [item for batch in store.scan(b"session:") for item in batch]
    raw_set(mc.port, b"session:changed", b"v", exptime=1000)  # same bytes, new cas: a rewrite
    assert store.delete([b"session:deleted", b"session:never"]) == 1
    assert store.delete_if_unchanged(items) == 2
    left = everything(store)
    assert sorted(left) == [b"session:changed"]
    assert store.delete_if_unchanged([StoredItem(b"session:changed", b"v", 1000)]) == 1  # value compared
    assert everything(store) == {}


def test_idle_seconds_and_listing_does_not_bump_items(mc: ServerProcess) -> None:
    store = open_memcached(url_of(mc))
    store.set(b"session:i", b"v", None)
    assert store.idle_seconds([b"session:i", b"session:gone"])[1] is None
    assert 0 <= t.cast(int, store.idle_seconds([b"session:i"])[0]) <= 2
    # meta reads with "u": a listing does not mark items fetched (metadump shows it)
    list(store.scan(b"session:"))
    store.get(b"session:i")
    assert b"fetch=no" in metadump(mc.port)


# -- client flags ------------------------------------------------------------------------


def test_compressed_values_are_decompressed_and_written_back_plain(store: MemcachedStore, mc: ServerProcess) -> None:
    data = {"user_id": 42, "blob": "y" * 3000}
    raw_value = serializers.encode(data, "msgpack")
    raw_set(mc.port, b"session:z", zlib.compress(raw_value), flags=FLAG_ZLIB, exptime=900)
    item = everything(store)[b"session:z"]
    assert item.value == raw_value and item.version.flags == FLAG_ZLIB
    assert serializers.decode(t.cast(bytes, item.value)) == ("msgpack", data)
    assert store.compare_and_set(item, serializers.encode({"user_id": 43}, "msgpack"))
    plain = serializers.encode({"user_id": 43}, "msgpack")
    assert memcached_raw(mc.port, b"mg session:z f v\r\n") == b"VA %d f0\r\n%s\r\n" % (len(plain), plain)


def test_decompression_is_bounded() -> None:
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024))
    assert decompress(bomb) is None  # over MAX_DECOMPRESSED: refused, not inflated
    assert decompress(zlib.compress(b"abc"), limit=3) == b"abc"
    assert decompress(zlib.compress(b"abcd"), limit=3) is None
    assert decompress(b"not zlib") is None


def test_a_zlib_bomb_in_the_store_is_left_as_stored(store: MemcachedStore, mc: ServerProcess) -> None:
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024))
    raw_set(mc.port, b"session:bomb", bomb, flags=FLAG_ZLIB)
    item = t.cast(StoredItem, store.get(b"session:bomb"))
    assert item.value == bomb and item.version.flags == FLAG_ZLIB
    assert serializers.decode(bomb) == ("unknown", None)


def test_client_pickled_values_stay_pickle(store: MemcachedStore, mc: ServerProcess) -> None:
    import pickle

    raw_set(mc.port, b"session:pk", pickle.dumps({"user_id": 7}, 0), flags=FLAG_PICKLE)
    item = t.cast(StoredItem, store.get(b"session:pk"))
    assert item.version.flags == FLAG_PICKLE
    assert serializers.decode(t.cast(bytes, item.value)) == ("pickle", {"user_id": 7})
    with pytest.raises(UndecodableValue, match="must stay pickle"):
        store.compare_and_set(item, serializers.encode({"user_id": 8}, "msgpack"))
    assert store.compare_and_set(item, serializers.encode({"user_id": 8}, "pickle"))
    assert memcached_raw(mc.port, b"mg session:pk f\r\n") == b"HD f1\r\n"


# -- the real Flask-Session 0.8 app ---------------------------------------------------------


def test_sessions_written_by_flask_session_08_are_read_and_changed(mc: ServerProcess) -> None:
    app = make_app(memcached_servers=[("127.0.0.1", mc.port)])
    written = [write_session(app, {"user_id": i, "name": f"u{i}"}) for i in range(20)]
    settle(app)
    store = open_store(url_of(mc))
    items = everything(t.cast(MemcachedStore, store), b"session:")
    assert sorted(items) == sorted(f"session:{w.sid}".encode() for w in written)
    item = items[f"session:{written[3].sid}".encode()]
    assert serializers.decode(t.cast(bytes, item.value))[1] == {"user_id": 3, "name": "u3", "_permanent": True}
    # Flask-Session 0.8 writes 31 days as an absolute time; the TTL reads back as 31 days.
    assert 31 * DAY - 5 <= t.cast(int, item.ttl) <= 31 * DAY + 3

    data = serializers.decode(t.cast(bytes, item.value))[1]
    assert store.compare_and_set(item, serializers.encode({**data, "user_id": 99}, "msgpack"))
    assert read_session(app, written[3].cookie)["user_id"] == 99
    assert 31 * DAY - 5 <= t.cast(int, t.cast(StoredItem, store.get(item.key)).ttl) <= 31 * DAY + 3

    # The app changes the session after sesstool read it: sesstool's write is refused.
    stale = t.cast(StoredItem, store.get(item.key))
    client = app.test_client()
    client.set_cookie("session", written[3].cookie)
    client.post("/set", json={"name": "from the app"})
    settle(app)
    assert not store.compare_and_set(stale, serializers.encode({**data, "user_id": 1}, "msgpack"))
    assert read_session(app, written[3].cookie) == {"user_id": 99, "name": "from the app", "_permanent": True}

    assert store.expire(item.key, 3600) and store.persist(item.key)
    assert read_session(app, written[3].cookie)["user_id"] == 99
    settle(app)  # that read re-saved the session with noreply: let it land before the delete
    assert store.delete([item.key]) == 1
    assert "user_id" not in read_session(app, written[3].cookie)  # a new, empty session


def test_a_compressing_pymemcache_client_in_a_flask_session_08_app(mc: ServerProcess) -> None:
    from pymemcache.client.hash import HashClient
    from pymemcache.serde import CompressedSerde

    app = make_app(memcached_servers=[("127.0.0.1", mc.port)])
    app.session_interface.client = HashClient([("127.0.0.1", mc.port)], serde=CompressedSerde(min_compress_len=100))
    written = write_session(app, {"user_id": 5, "notes": "n" * 2000})
    settle(app)
    store = open_memcached(url_of(mc))
    item = t.cast(StoredItem, store.get(f"session:{written.sid}".encode()))
    assert item.version.flags & FLAG_ZLIB
    _, data = serializers.decode(t.cast(bytes, item.value))
    assert data == {"user_id": 5, "notes": "n" * 2000, "_permanent": True}
    assert store.compare_and_set(item, serializers.encode({**data, "user_id": 6}, "msgpack"))
    assert read_session(app, written.cookie)["user_id"] == 6


# -- two servers -----------------------------------------------------------------------------


def test_two_servers_route_keys_as_the_apps_hash_client_does(pair: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = pair
    app = make_app(memcached_servers=[("127.0.0.1", first.port), ("127.0.0.1", second.port)])
    written = [write_session(app, {"user_id": i}) for i in range(40)]
    settle(app)
    on_first = everything(MemcachedStore([("127.0.0.1", first.port)]))
    on_second = everything(MemcachedStore([("127.0.0.1", second.port)]))
    assert on_first and on_second  # the app spread them over both

    store = open_memcached(url_of(first, second))
    assert len(everything(store, b"session:")) == 40
    for w in written:
        key = f"session:{w.sid}".encode()
        assert store.server_for(key).port == (first.port if key in on_first else second.port)
        item = t.cast(StoredItem, store.get(key))
        assert store.compare_and_set(item, serializers.encode({"user_id": 1000, "_permanent": True}, "msgpack"))
    assert all(read_session(app, w.cookie) == {"user_id": 1000, "_permanent": True} for w in written)

    # sesstool writes a new session where the app will look for it.
    for i in range(20):
        store.set(b"session:new%d" % i, serializers.encode({"n": i}, "msgpack"), 600)
        assert read_session(app, f"new{i}") == {"n": i}

    # A store built from the app's own client routes the same way.
    from_app = open_store(url_of(first, second), client=app.session_interface.client)
    assert all(t.cast(MemcachedStore, from_app).server_for(k).port == store.server_for(k).port for k in on_first)


def test_items_are_written_back_to_the_server_they_were_listed_on(pair: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = pair
    store = open_memcached(url_of(first, second))
    key = next(b"session:s%d" % i for i in range(100) if store.server_for(b"session:s%d" % i).port == first.port)
    raw_set(second.port, key, b"stray", exptime=900)  # left behind on the other server
    raw_set(first.port, key, b"home", exptime=900)
    items = [item for batch in store.scan(b"session:") for item in batch]
    stray = next(item for item in items if item.value == b"stray")
    assert store.compare_and_set(stray, b"stray2")
    assert memcached_raw(second.port, b"mg %s v\r\n" % key) == b"VA 6\r\nstray2\r\n"
    assert store.delete_if_unchanged(items) == 1  # the stray's token moved on
    assert memcached_raw(first.port, b"mg %s v\r\n" % key) == b"EN\r\n"


# -- errors and URLs --------------------------------------------------------------------------


def test_a_closed_port_is_a_store_error_naming_the_server() -> None:
    port = free_port()
    store = open_store(f"memcached://127.0.0.1:{port}")
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as caught:
        list(store.scan(b"session:"))
    assert caught.value.exit_code == 3
    with pytest.raises(StoreError, match="cannot connect"):
        store.get(b"session:x")


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts; nobody ever answers
        port = listener.getsockname()[1]
        store = open_store(f"memcached://127.0.0.1:{port}?timeout=0.3")
        started = time.monotonic()
        with pytest.raises(StoreError, match=rf"127.0.0.1:{port} timed out after 0.3s"):
            store.get(b"session:x")
        assert time.monotonic() - started < 3


def test_a_server_without_the_lru_crawler_says_metadump_is_needed() -> None:
    server = start_memcached(["-o", "no_lru_crawler"])
    try:
        store = open_store(f"memcached://127.0.0.1:{server.port}")
        store.set(b"session:a", b"v", None)
        with pytest.raises(StoreError, match=r"lru crawler disabled.*metadump.*1\.4\.31") as caught:
            list(store.scan(b"session:"))
        assert f"127.0.0.1:{server.port}" in str(caught.value)
        assert t.cast(StoredItem, store.get(b"session:a")).value == b"v"  # everything else works
    finally:
        server.stop()


def test_parse_url() -> None:
    assert parse_url("memcached://a")[0] == [("a", 11211)]
    assert parse_url("memcached://a:1,b:2, [::1]:3,[::1]")[0] == [("a", 1), ("b", 2), ("::1", 3), ("::1", 11211)]
    assert parse_url("memcached://a:1?hash=crc32&timeout=2")[1] == {"hash": "crc32", "timeout": "2"}
    for bad in (
        "memcached://",
        "memcached://a:x",
        "memcached://u:p@a",
        "memcached://a/db",
        "memcached://a?nope=1",
        "memcached://a:70000",
    ):
        with pytest.raises(InvalidInput):
            open_store(bad)
    with pytest.raises(InvalidInput, match="hash"):
        open_store("memcached://a?hash=ketama")
    assert open_store("memcached://h1:1,h2?timeout=3").describe() == "memcached://h1:1,h2"


# -- batches and reclaiming ------------------------------------------------------------------


def test_batch_writes_pipeline_per_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    store = open_memcached(url_of(*pair))
    store.set_many([(b"session:%d" % i, b"v%d" % i, None if i % 2 else 31 * DAY) for i in range(600)])
    items = everything(store)
    assert len(items) == 600 and items[b"session:3"].ttl is None
    # Past 30 days memcached keeps an absolute expiry and counts what is left on its own
    # clock, which falls behind the wall clock on a loaded machine: allow its lag.
    lag = max(0, max(int(time.time()) - memcached_clock(p.port) for p in pair))
    assert 31 * DAY - 5 <= t.cast(int, items[b"session:4"].ttl) <= 31 * DAY + 3 + lag
    assert store.add_many([(b"session:1", b"x", 10), (b"session:new", b"n", 10)]) == [False, True]
    pairs = [(items[b"session:%d" % i], b"w%d" % i) for i in range(600)]
    home = pair[0] if store.server_for(b"session:0").port == pair[0].port else pair[1]
    raw_set(home.port, b"session:0", b"app", exptime=100)  # the app rewrites one meanwhile
    results = store.compare_and_set_many(pairs)
    assert results[0] is False and all(results[1:])
    after = everything(store)
    assert after[b"session:0"].value == b"app" and after[b"session:599"].value == b"w599"
    assert 31 * DAY - 5 <= t.cast(int, after[b"session:4"].ttl) <= 31 * DAY + 3 + lag
    assert store.delete_each([b"session:1", b"session:gone", b"session:2"]) == [True, False, True]


def test_idle_keys_are_chosen_and_deleted_without_reading_them(store: MemcachedStore) -> None:
    if not store.servers[0].uses_meta():
        # Told to speak without meta commands: idle time is not declared (an old server
        # found too old only on asking raises StoreError instead).
        with pytest.raises(Unsupported, match="cannot report idle time"):
            store.fetch_idle([b"session:a"], min_idle=0)
        return
    for name in (b"a", b"b", b"c", b"d"):
        store.set(b"session:" + name, name, None if name in b"ac" else 100)
    wait_for_memcached_clock(store.servers[0].port, 2)  # idle is now at least 2
    store.set(b"session:c", b"c2", None)  # used again: no longer idle
    keys = [b"session:a", b"session:b", b"session:c", b"session:gone"]
    chosen = store.fetch_idle(keys, min_idle=1)
    assert sorted((item.key, item.value) for item, _ in chosen) == [(b"session:a", b"a"), (b"session:b", b"b")]
    assert all(idle >= 2 for _, idle in chosen)
    bare = store.fetch_idle(keys, min_idle=1, no_expiry_only=True, values=False)
    assert [(item.key, item.value, item.ttl) for item, _ in bare] == [(b"session:a", None, None)]
    assert store.fetch_idle(keys, min_idle=3600) == []
    # Reading does not renew idle time (meta reads with "u"), so a listing changes nothing.
    list(store.scan(b"session:"))
    assert store.delete_idle(keys + [b"session:d"], min_idle=1, no_expiry_only=True) == (1, {})
    assert store.delete_idle(keys + [b"session:d"], min_idle=1) == (2, {})
    assert sorted(everything(store)) == [b"session:c"]


def test_reclaim_expired_frees_items_past_their_expiry() -> None:
    # No LRU maintainer: nothing reclaims in the background, so the count is exact.
    server = start_memcached(["-o", "no_lru_maintainer"])
    try:
        request = b"".join(b"set session:old%d 0 1 1 noreply\r\nx\r\n" % i for i in range(5))
        memcached_raw(server.port, request + b"set session:live 0 0 1 noreply\r\nx\r\n")
        wait_for_memcached_clock(server.port, 2)  # past the 1 s expiry on the server's clock
        store = open_memcached(url_of(server))
        assert sorted(everything(store)) == [b"session:live"]  # invisible, but still held
        assert store.reclaim_expired() == 5
        assert store.reclaim_expired() == 0
        assert sorted(everything(store)) == [b"session:live"]
    finally:
        server.stop()


# -- older stacks: Flask-Session 0.5 with python-memcached, and pylibmc -------------------------

CLIENT_SCRIPT = r"""
import json, pickle, sys
spec = json.load(sys.stdin)
if spec["client"] == "pylibmc":
    import pylibmc
    client = pylibmc.Client(spec["servers"])
else:
    import memcache
    client = memcache.Client(spec["servers"])
out = {}
for key, value, compress in spec.get("write", []):
    if not client.set(key, value, 0, min_compress_len=10 if compress else 0):
        raise SystemExit("set failed: " + key)
for key in spec.get("read", []):
    value = client.get(key)
    out[key] = value if not isinstance(value, bytes) else {"$pickle": pickle.loads(value)}
print(json.dumps(out))
"""


def run_client(python: str, tmp_path: t.Any, spec: dict[str, t.Any]) -> dict[str, t.Any]:
    import json
    import subprocess

    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT)
    result = subprocess.run([python, str(script)], input=json.dumps(spec), capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return t.cast(dict[str, t.Any], json.loads(result.stdout))


@pytest.mark.interop
@pytest.mark.parametrize("client", ["python-memcached", "pylibmc"])
def test_values_pickled_and_compressed_by_old_clients(client: str, mc: ServerProcess, tmp_path: t.Any) -> None:
    from tests.oldapps import old_python
    from tests.venvs import venv_python

    python = old_python("0.5") if client == "python-memcached" else venv_python("pylibmc", ["pylibmc==1.6.3"])
    servers = [f"127.0.0.1:{mc.port}"]
    session = {"user_id": 42, "notes": "n" * 400}
    run_client(python, tmp_path, {"client": client, "servers": servers, "write": [
        ["session:pickled", session, False],
        ["session:compressed", session, True],
        ["session:text", "just text", False],
    ]})  # fmt: skip
    store = open_memcached(url_of(mc))
    items = everything(store, b"session:")
    assert items[b"session:pickled"].version.flags == FLAG_PICKLE
    assert items[b"session:compressed"].version.flags == FLAG_PICKLE | FLAG_ZLIB
    for name in (b"session:pickled", b"session:compressed"):
        assert serializers.decode(t.cast(bytes, items[name].value)) == ("pickle", session)
    assert items[b"session:text"].value == b"just text"  # text flag: shown as stored
    assert serializers.decode(b"just text")[0] == "unknown"

    for name in (b"session:pickled", b"session:compressed"):
        assert store.compare_and_set(items[name], serializers.encode({**session, "user_id": 7}, "pickle"))
    read = run_client(python, tmp_path, {"client": client, "servers": servers,
                                         "read": ["session:pickled", "session:compressed"]})  # fmt: skip
    assert read == {"session:pickled": {**session, "user_id": 7}, "session:compressed": {**session, "user_id": 7}}


@pytest.mark.interop
def test_flask_session_05_sessions_on_two_servers(pair: tuple[ServerProcess, ServerProcess]) -> None:
    from tests.oldapps import read_old_session, update_old_session, write_old_sessions

    first, second = pair
    url = f"memcached://127.0.0.1:{first.port},127.0.0.1:{second.port}"
    written = write_old_sessions("0.5", url, [{"user_id": i} for i in range(12)])
    store = open_store(url + "?hash=crc32")
    assert isinstance(store, MemcachedStore)
    on_first = everything(MemcachedStore([("127.0.0.1", first.port)]))
    assert on_first and len(on_first) < 12  # python-memcached spread them over both
    items = everything(store, b"session:")
    assert len(items) == 12
    for i, w in enumerate(written):
        key = f"session:{w['sid']}".encode()
        assert store.server_for(key).port == (first.port if key in on_first else second.port)
        item = t.cast(StoredItem, store.get(key))
        assert item.version.flags == 0  # Flask-Session 0.5 pickles itself and hands bytes over
        assert serializers.decode(t.cast(bytes, item.value)) == ("pickle", {"user_id": i, "_permanent": True})
        assert 31 * DAY - 5 <= t.cast(int, item.ttl) <= 31 * DAY + 3  # absolute time, as 0.5 writes it

    # (The old app's script takes --cookie VALUE: an id starting with "-" would read as an option.)
    first_w, second_w, third_w = [w for w in written if not w["cookie"].startswith("-")][:3]
    key = f"session:{first_w['sid']}".encode()
    item = t.cast(StoredItem, store.get(key))
    assert store.compare_and_set(item, serializers.encode({"user_id": 500, "_permanent": True}, "pickle"))
    assert read_old_session("0.5", url, first_w["cookie"])["data"] == {"user_id": 500, "_permanent": True}

    # The old app changes a session after sesstool selected it: it is not deleted.
    stale = [t.cast(StoredItem, store.get(f"session:{w['sid']}".encode())) for w in (second_w, third_w)]
    update_old_session("0.5", url, second_w["cookie"], {"user_id": 1001})
    assert store.delete_if_unchanged(stale) == 1
    assert read_old_session("0.5", url, second_w["cookie"])["data"]["user_id"] == 1001
    assert read_old_session("0.5", url, third_w["cookie"])["new"] is True


@pytest.mark.interop
def test_pylibmc_on_two_servers_routes_like_libmemcached(
    pair: tuple[ServerProcess, ServerProcess], tmp_path: t.Any
) -> None:
    import pickle

    from tests.venvs import venv_python

    first, second = pair
    python = venv_python("pylibmc", ["pylibmc==1.6.3"])
    servers = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
    # The é keys land elsewhere if high bytes are not sign-extended as libmemcached does.
    keys = [f"session:k{i}" for i in range(30)] + [f"session:é{i}" for i in (0, 1, 2, 4)]
    spec = {"client": "pylibmc", "servers": servers, "write": [[k, {"n": n}, False] for n, k in enumerate(keys)]}
    run_client(python, tmp_path, spec)
    on_first = set(everything(MemcachedStore([("127.0.0.1", first.port)])))
    assert 0 < len(on_first) < len(keys)
    store = open_store(url_of(first, second) + "?hash=modula")
    assert isinstance(store, MemcachedStore)
    for key in (k.encode() for k in keys):
        assert store.server_for(key).port == (first.port if key in on_first else second.port), key
    new = [f"session:new{i}" for i in range(10)]
    for i, key in enumerate(new):
        store.set(key.encode(), pickle.dumps({"i": i}), 600)
    read = run_client(python, tmp_path, {"client": "pylibmc", "servers": servers, "read": new})
    assert read == {key: {"$pickle": {"i": i}} for i, key in enumerate(new)}


def test_servers_are_read_at_once_and_one_that_dies_mid_scan_stops_it_with_a_store_error() -> None:
    import threading

    # No LRU maintainer: it moves fresh items between LRUs while the dump walks them,
    # and the dump skips an item it finds in motion (memcached's limit, not the subject here).
    servers = [start_memcached(["-o", "no_lru_maintainer"]) for _ in range(3)]
    try:
        store = open_memcached(url_of(*servers))
        keys = [b"session:k%05d" % i for i in range(6000)]
        store.set_many([(key, b"v" + key[-5:], 600) for key in keys])
        before = threading.active_count()
        listed = everything(store, b"session:")
        assert sorted(listed) == keys and listed[keys[7]].value == b"v00007"
        scan = store.scan(b"session:", batch=100)
        next(scan)
        servers[1].kill()  # its values still have to be read: the scan cannot finish
        with pytest.raises(StoreError):
            for _ in scan:
                pass
        assert threading.active_count() == before
        store.close()
    finally:
        for server in servers:
            server.stop()
