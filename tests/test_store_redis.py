"""What is specific to the Redis store, on a real redis-server: SCAN batching and glob
escaping, other types, refreshed TTLs, errors, ACLs (the common contract is in
``tests/test_store_contract.py``)."""

from __future__ import annotations

import pytest

from sesstool.errors import InvalidInput, StoreError
from sesstool.stores import open_store
from sesstool.stores.redis import RedisStore
from tests.servers import free_port, start_redis


def test_scan_yields_every_key_under_the_prefix_once(redis_url: str, redis_client) -> None:
    pipe = redis_client.pipeline()
    for i in range(2500):
        pipe.set(f"session:{i}", b"\x80", ex=100 + i)
    pipe.set("other:1", b"\x80")
    pipe.execute()
    store = open_store(redis_url)
    batches = list(store.scan(b"session:", batch=300))
    keys = [item.key for batch in batches for item in batch]
    assert sorted(keys) == sorted(f"session:{i}".encode() for i in range(2500))
    # Streamed a SCAN step at a time (COUNT is a hint: a step may hold a few more).
    assert len(batches) >= 2500 // 600 and max(len(batch) for batch in batches) <= 600
    ttl = {item.key: item.ttl for batch in batches for item in batch}
    assert ttl[b"session:7"] == 107


def test_prefix_with_glob_characters_matches_literally(redis_url: str, redis_client) -> None:
    redis_client.set("s[1]*:a", b"x")
    redis_client.set("s1x:b", b"x")
    items = [i for batch in open_store(redis_url).scan(b"s[1]*:") for i in batch]
    assert [i.key for i in items] == [b"s[1]*:a"]


def test_fetch_reports_other_types_and_missing_keys(redis_url: str, redis_client) -> None:
    redis_client.hset("session:h", "a", "b")
    redis_client.rpush("session:l", "a")
    redis_client.set("session:s", b"value")
    store = open_store(redis_url)
    items = store.fetch([b"session:h", b"session:l", b"session:s", b"session:gone"])
    assert [i.kind for i in items] == ["hash", "list", "string", "none"]
    assert items[2].value == b"value" and items[2].ttl is None
    assert store.get(b"session:gone") is None


def test_delete_if_unchanged_keeps_changed_and_refreshed_sessions(redis_url: str, redis_client) -> None:
    for name in ("same", "changed", "refreshed", "no_ttl"):
        redis_client.set(f"session:{name}", b"v", ex=1000 if name != "no_ttl" else None)
    store = open_store(redis_url)
    items = store.fetch([b"session:same", b"session:changed", b"session:refreshed", b"session:no_ttl"])
    redis_client.set("session:changed", b"w", ex=1000)
    redis_client.set("session:refreshed", b"v", ex=2000)  # same bytes, new lifetime
    assert store.delete_if_unchanged(items) == 2
    assert sorted(redis_client.scan_iter("session:*")) == [b"session:changed", b"session:refreshed"]


def test_closed_port_is_a_store_error_naming_the_store() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match="cannot connect to redis://127.0.0.1"):
        list(store.scan(b"session:"))


def test_wrong_password_is_refused_without_printing_it() -> None:
    server = start_redis(password="right-password")
    try:
        store = open_store(f"redis://:wrong-password@127.0.0.1:{server.port}/0")
        with pytest.raises(StoreError) as caught:
            store.get(b"session:x")
        assert "authentication refused" in str(caught.value)
        assert "wrong-password" not in str(caught.value)
        ok = open_store(f"redis://:right-password@127.0.0.1:{server.port}/0")
        assert ok.get(b"session:x") is None
    finally:
        server.stop()


def test_unknown_scheme_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unsupported store URL"):
        open_store("mongodb://localhost")


def test_a_ready_client_is_wrapped_and_described_without_password(redis_server) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port, password=None, db=3)
    store = RedisStore(client)
    assert store.describe() == f"redis://127.0.0.1:{redis_server.port}/3"


def test_tls_with_an_untrusted_certificate_is_a_store_error(tls_redis) -> None:
    """rediss:// against a real TLS redis-server (the contract suite covers the rest)."""
    untrusted = open_store(f"rediss://127.0.0.1:{tls_redis.port}/0")
    with pytest.raises(StoreError, match="certificate verify failed"):
        untrusted.get(b"session:tls")


def test_acl_user_and_password(redis_server) -> None:
    import redis

    admin = redis.Redis(port=redis_server.port)
    admin.execute_command("ACL", "SETUSER", "sess", "on", ">s3cret", "~session:*", "+@all")
    try:
        store = open_store(f"redis://sess:s3cret@127.0.0.1:{redis_server.port}/0")
        store.set(b"session:acl", b"\x80", 60)
        assert store.get(b"session:acl") is not None
        with pytest.raises(StoreError, match="authentication refused") as caught:
            open_store(f"redis://sess:nope@127.0.0.1:{redis_server.port}/0").get(b"session:acl")
        assert "nope" not in str(caught.value)
    finally:
        admin.execute_command("ACL", "DELUSER", "sess")
        admin.delete("session:acl")


def test_listing_as_a_user_denied_pttl_is_a_store_error(redis_server, cli) -> None:
    """The listing reads its per-key replies past redis-py's wrapper: an error reply
    among them must still be one ``error:`` line (exit 3), never a traceback."""
    import redis

    admin = redis.Redis(port=redis_server.port)
    admin.execute_command("ACL", "SETUSER", "nopttl", "on", ">pw", "~*", "+@all", "-pttl")
    admin.set("session:one", b"\x80")
    try:
        result = cli("list", "--store", f"redis://nopttl:pw@127.0.0.1:{redis_server.port}/0")
        assert result.exit_code == 3, (result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert "pttl" in result.stderr.lower()
    finally:
        admin.execute_command("ACL", "DELUSER", "nopttl")
        admin.delete("session:one")


def _sessions(redis_client, n: int, *, every: int = 0) -> None:
    """``n`` msgpack sessions of varied sizes and TTLs; with ``every``, each one in
    ``every`` has user_id 42."""
    import msgspec

    pipe = redis_client.pipeline()
    for i in range(n):
        data = {"user_id": 42 if every and i % every == 0 else -i, "pad": "x" * (i % 97)}
        pipe.set(f"session:{i}", msgspec.msgpack.encode(data), ex=1000 + i)
    pipe.execute()


def test_replies_split_across_many_socket_reads_are_read_whole(redis_server, redis_url, redis_client) -> None:
    # A 64-byte read buffer ends it inside nearly every reply of a batch: TTLs and
    # values must still pair with their keys.
    import redis

    _sessions(redis_client, 1500)
    store = RedisStore(redis.Redis(connection_pool=redis.ConnectionPool(port=redis_server.port, socket_read_size=64)))
    expected = {f"session:{i}".encode(): (redis_client.get(f"session:{i}"), 1000 + i) for i in range(1500)}
    columns = list(store.scan_columns(b"session:", batch=400))
    seen = {key: (value, (pttl + 500) // 1000) for c in columns for key, value, pttl in zip(*c[:3], strict=True)}
    assert seen.keys() == expected.keys()
    assert all(seen[key][0] == value and abs(seen[key][1] - ttl) <= 2 for key, (value, ttl) in expected.items())
    values = {item.key: item.value for batch in store.scan_values(b"session:", batch=400) for item in batch}
    assert values == {key: value for key, (value, _) in expected.items()}


def test_a_scan_closed_part_way_leaves_no_stray_reply_for_the_next_command(redis_url, redis_client) -> None:
    # Two fetches are in flight when the caller stops reading: the next command on
    # the store must get its own reply, not one of theirs.
    _sessions(redis_client, 3000)
    store = open_store(redis_url)
    scan = store.scan_columns(b"session:", batch=200)
    next(scan)
    next(scan)
    scan.close()
    item = store.get(b"session:7")
    assert item is not None and item.value == redis_client.get("session:7")
    assert sum(len(batch) for batch in store.scan(b"session:", batch=500)) == 3000


def test_list_where_reads_the_ttl_of_the_matching_sessions_only(redis_url, redis_client, cli) -> None:
    import json

    _sessions(redis_client, 2000, every=100)
    redis_client.hset("session:h", "a", "b")
    redis_client.config_resetstat()
    result = cli("list", "--store", redis_url, "--where", "user_id=42", "--format", "ndjson")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["key"] for r in records) == sorted(f"session:{i}" for i in range(0, 2000, 100))
    assert all(abs(r["ttl"] - (1000 + int(r["sid"]))) <= 2 for r in records)
    # A PTTL for each of the 20 matches, none for the 1,980 others (nor the hash).
    assert redis_client.info("commandstats")["cmdstat_pttl"]["calls"] == 20


def test_a_session_deleted_between_its_value_and_its_ttl_is_reported_gone(redis_url, redis_client) -> None:
    _sessions(redis_client, 10)
    store = open_store(redis_url)
    items = [item for batch in store.scan_values(b"session:") for item in batch]
    assert all(item.ttl is None for item in items)  # not read yet
    redis_client.delete("session:3")
    store.read_ttls(items)
    by_key = {item.key: item for item in items}
    assert by_key[b"session:3"].kind == "none" and by_key[b"session:3"].value is None
    assert abs((by_key[b"session:4"].ttl or 0) - 1004) <= 2
