"""Redis Cluster (every primary scanned) and Sentinel, on real redis-server processes."""

from __future__ import annotations

import subprocess
import time
import typing as t

import redis

from sesstool.stores import open_store


def test_cluster_lists_sessions_from_every_primary(cli, cluster) -> None:
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cluster[0].port)])
    for i in range(300):
        client.set(f"session:s{i}", b"\x81\xa7user_id\x2a" if i % 3 == 0 else b"\x81\xa7user_id\x07", ex=600)
    client.hset("session:ahash", "a", "b")
    per_node = [
        int(subprocess.run(["redis-cli", "-p", str(n.port), "dbsize"], capture_output=True, text=True).stdout)
        for n in cluster
    ]
    assert all(count > 0 for count in per_node)  # the keys really are spread

    url = f"redis+cluster://127.0.0.1:{cluster[0].port}"
    listed = cli("list", "--store", url, "--format", "ndjson")
    assert listed.exit_code == 0, listed.stderr
    assert sorted(r["sid"] for r in listed.ndjson()) == sorted(f"s{i}" for i in range(300))
    assert "1 hash" in listed.stderr
    where = cli("list", "--store", url, "--where", "user_id=42", "--format", "ndjson").ndjson()
    assert len(where) == 100
    shown = cli("show", "s3", "--store", url, "--format", "json").json()
    assert shown["data"] == {"user_id": 42} and 590 <= shown["ttl"] <= 600

    store = open_store(url)
    items = store.fetch([b"session:s1", b"session:s2"])
    assert store.delete_if_unchanged(items) == 2
    assert client.get("session:s1") is None
    client.close()


def test_cluster_scans_every_primary_at_once_and_an_early_stop_leaves_no_thread(cluster) -> None:
    import threading

    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cluster[0].port)])
    keys = [f"parallel:{i:05d}".encode() for i in range(3000)]
    for start in range(0, len(keys), 500):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 500]:
            pipe.set(key, b"v" + key[-5:], ex=900)
        pipe.execute()
    client.hset("parallel:ahash", "a", "b")
    client.close()
    store = open_store(f"redis+cluster://127.0.0.1:{cluster[0].port}")
    before = threading.active_count()
    seen: dict[bytes, bytes | None] = {}
    kinds = []
    for columns in store.scan_columns(b"parallel:", batch=100):
        for i, (key, value) in enumerate(zip(columns.keys, columns.values, strict=True)):
            assert key not in seen
            seen[key] = value
            kinds += [columns.kinds[i]] if i in columns.kinds else []
    assert sorted(k for k in seen if k != b"parallel:ahash") == keys
    assert all(seen[key] == b"v" + key[-5:] for key in keys) and kinds == ["hash"]
    scan = store.scan_columns(b"parallel:", batch=100)
    next(scan)
    scan.close()  # type: ignore[attr-defined]  # --limit stops the scan early
    assert threading.active_count() == before
    store.close()


def test_sentinel_finds_the_primary(cli, sentinel) -> None:
    import redis

    primary, sentinel_port = sentinel
    redis.Redis(port=primary.port, password="primary-pw").set("session:via-sentinel", b"\x81\xa1a\x01", ex=60)
    url = f"redis+sentinel://:primary-pw@127.0.0.1:{sentinel_port}/sessions/0"
    deadline = time.monotonic() + 10
    while True:
        result = cli("list", "--store", url, "--format", "ndjson")
        if result.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # the sentinel needs a moment to learn the primary
    assert result.exit_code == 0, result.stderr
    assert [r["sid"] for r in result.ndjson()] == ["via-sentinel"]
    unknown = cli("list", "--store", f"redis+sentinel://127.0.0.1:{sentinel_port}/nosuchservice")
    assert unknown.exit_code == 3 and unknown.stderr.startswith("error: ")
    missing = cli("list", "--store", f"redis+sentinel://127.0.0.1:{sentinel_port}")
    assert missing.exit_code == 2 and "service name" in missing.stderr


def test_keys_migrated_between_their_scan_and_their_fetch_are_read_from_the_new_node(monkeypatch) -> None:
    """A node answers ASK for a key of a migrating slot that has already left: the
    listing (TTLs and values) and a --where (values, then TTLs of the kept) fetch
    those again through the cluster client, with their values and TTLs intact.
    The keys move at the last moment before their fetch is written, so the redirect
    happens every run; a cluster of its own keeps the shared one's slots still."""
    from redis.cluster import ClusterNode, RedisCluster
    from redis.crc import key_slot

    from sesstool.stores import redis_cluster
    from tests.topologies import started_cluster

    with started_cluster() as nodes:
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", nodes[0].port)])
        moving = [b"session:{moving}%d" % i for i in range(60)]  # one slot, by the hash tag
        staying = [b"session:s%d" % i for i in range(60)]
        for key in moving + staying:
            client.set(key, b"\x81\xa7user_id\x2a", ex=600)
        slot = key_slot(moving[0])
        raw = {node.port: redis.Redis(host="127.0.0.1", port=node.port) for node in nodes}
        source = client.get_node_from_key(moving[0]).port
        target = next(port for port in raw if port != source)
        ids = {port: r.execute_command("CLUSTER", "MYID").decode() for port, r in raw.items()}
        raw[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        raw[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])

        moved: list[bytes] = []
        allowed = [len(moving) // 2]  # half move in the first pass, the rest in the second

        def migrating_first(pack: t.Callable[[list[bytes]], bytes]) -> t.Callable[[list[bytes]], bytes]:
            def packed(keys: list[bytes]) -> bytes:
                mine = [key for key in keys if key in moving and key not in moved][: allowed[0] - len(moved)]
                if mine:
                    raw[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *mine)
                    moved.extend(mine)
                return pack(keys)

            return packed

        monkeypatch.setattr(redis_cluster, "pack_get_fetch", migrating_first(redis_cluster.pack_get_fetch))
        monkeypatch.setattr(redis_cluster, "pack_gets", migrating_first(redis_cluster.pack_gets))
        store = open_store(f"redis+cluster://127.0.0.1:{nodes[0].port}")

        listed = [item for batch in store.scan(b"session:", batch=20) for item in batch]
        assert moved, "no key moved before its fetch: the redirect was not tried"
        assert {item.key for item in listed} == set(moving + staying)
        assert all(item.value == b"\x81\xa7user_id\x2a" and 590 <= (item.ttl or 0) <= 600 for item in listed)

        first, allowed[0] = len(moved), len(moving)
        kept = [item for batch in store.scan_values(b"session:", batch=20) for item in batch]
        assert len(moved) > first
        assert {item.key for item in kept} == set(moving + staying)
        assert all(item.value == b"\x81\xa7user_id\x2a" for item in kept)
        store.read_ttls(kept)
        assert all(590 <= (item.ttl or 0) <= 600 for item in kept)
        store.close()
        client.close()
