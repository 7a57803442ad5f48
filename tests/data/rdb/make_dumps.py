"""Regenerate one committed test dump from a real server binary.

    .venv/bin/python -m tests.data.rdb.make_dumps /path/to/redis-server redis-7.4.1 [--policy lfu]

(run from the repository root) starts the binary on a free loopback port in a
temporary directory, fills it, ``SAVE``s, and writes ``tests/data/rdb/NAME.rdb``
with ``NAME.json`` beside it: what the live server said about every key (TYPE,
OBJECT ENCODING, expiry, a digest of each string), the sessions' decoded data, the
dump's ctime and RDB version. tests/test_store_rdb_versions.py reads each dump
back through sesstool and compares it with that manifest.

What goes in, so that every type and encoding the server has is in the file:

- sessions written by a real Flask-Session 0.8 app (msgspec msgpack, one JSON) in
  db 0, 1 and 3, some given an exact expiry (``PEXPIREAT``), some none
  (``PERSIST``), and one past its expiry but still held (active expiry off: Redis
  saves keys it has not yet reclaimed);
- strings (int, embstr, raw, LZF-compressible), lists (listpack; quicklist with
  compressed and plain nodes), sets (intset, listpack from 7.2, hashtable), sorted
  sets (listpack, skiplist), hashes (listpack, hashtable; with field TTLs from 7.4:
  listpack-ex and hash-with-metadata), streams (several nodes, deleted entries,
  groups with pending entries and consumers, an empty one), a Lua function library;
- a ``session:`` key that is a hash, which a listing must skip as the live store's does;
- LRU idle times (``--policy lru``) or LFU counters (``--policy lfu``) before each key;
- Redis 8's vector sets (a module type built into the server), when it has them;
- Redis 8.6's idempotent stream producers (XADD IDMP), when it has them;
- with ``--module``, values of the test module's type and its aux data;
- with ``--keymeta`` (Redis 8.6's test module), key metadata on a session and another key;
- with ``--cluster``, a one-node cluster owning every slot: db 0 only, and from 7.4
  a slot-info record before each slot's keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t

HERE = os.path.dirname(os.path.abspath(__file__))
# Small limits so that a few KB hold every encoding (the defaults need far bigger values).
SERVER_CONFIG = ["--list-max-listpack-size", "8", "--list-compress-depth", "1", "--stream-node-max-entries", "10",
                 "--set-max-listpack-entries", "16", "--hash-max-listpack-entries", "16",
                 "--zset-max-listpack-entries", "16", "--set-max-intset-entries", "64"]  # fmt: skip
POLICIES = {"lru": "allkeys-lru", "lfu": "allkeys-lfu", "none": "noeviction"}
LIBRARY = "#!lua name=sesslib\nredis.register_function('ping_sessions', function(keys, args) return 1 end)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", help="a redis-server or valkey-server binary")
    parser.add_argument("name", help="the dump's name, e.g. redis-7.4.1")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="none", help="what the file holds per key")
    parser.add_argument("--cluster", action="store_true", help="a one-node cluster (db 0 only)")
    parser.add_argument("--module", help="Redis' own tests/modules/testrdb.so, built from the same source")
    parser.add_argument("--keymeta", help="Redis' own tests/modules/test_keymeta.so (8.6 on)")
    args = parser.parse_args(argv)
    from tests.servers import _cluster_port, free_port, wait_for_port

    port, workdir = _cluster_port() if args.cluster else free_port(), tempfile.mkdtemp(prefix="sesstool-dumps-")
    process = subprocess.Popen(
        [args.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, "--enable-debug-command", "yes", "--maxmemory-policy", POLICIES[args.policy],
         *SERVER_CONFIG, *(["--cluster-enabled", "yes"] if args.cluster else []),
         *(["--loadmodule", args.module, "6"] if args.module else []),  # 6: module aux data before and after the keys
         *(["--loadmodule", args.keymeta] if args.keymeta else [])],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        manifest = _fill_and_save(port, args.policy, cluster=args.cluster, modules=(bool(args.module),
                                                                                    bool(args.keymeta)))
        dump = open(os.path.join(workdir, "dump.rdb"), "rb").read()
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    manifest["rdb_version"] = int(dump[6:9] if dump.startswith(b"VALKEY") else dump[5:9])  # Valkey 9: VALKEY080
    manifest["ctime"] = _ctime(dump)
    with open(os.path.join(HERE, f"{args.name}.rdb"), "wb") as fh:
        fh.write(dump)
    with open(os.path.join(HERE, f"{args.name}.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"{args.name}: {manifest['server']}, RDB {manifest['rdb_version']}, {len(dump):,} bytes")


def _ctime(dump: bytes) -> int:
    # The aux field as every server of these versions writes it: an integer-encoded string.
    at = dump.index(b"\xfa\x05ctime\xc2") + 8
    return int.from_bytes(dump[at : at + 4], "little")


def _fill_and_save(port: int, policy: str, *, cluster: bool, modules: tuple[bool, bool]) -> dict[str, t.Any]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    info = client.info("server")
    name = str(info.get("server_name") or "redis")
    version = str(info.get(f"{name}_version") or info["redis_version"])
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    if cluster:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 30
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster never came up")
            time.sleep(0.1)
    client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    client.execute_command("DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1000")  # an element past it: a plain node
    now_ms = int(client.time()[0]) * 1000
    sessions: dict[str, dict[str, t.Any]] = {}
    for db, datas in {0: SESSIONS_DB0, 1: SESSIONS_DB1, 3: SESSIONS_DB3}.items():
        if db == 0 or not cluster:
            sessions.update(_sessions(port, db, datas, now_ms))
    field_ttls = major_minor >= ((7, 4) if name == "redis" else (9, 0))
    _other_types(client, field_ttls=field_ttls, other_db=not cluster)
    client.execute_command("FUNCTION", "LOAD", LIBRARY)
    _newer_features(client, next(iter(sessions)), *modules)
    keys = {str(db): _describe(port, db) for db in range(1 if cluster else 16)}
    keys = {db: described for db, described in keys.items() if described}
    # Past its expiry but held: written last, never looked up (a lookup would reclaim it).
    expired = b"\x81\xa7user_id\x05"
    client.set("session:expired-but-held", expired, px=1)
    time.sleep(1.1)  # past the next whole second: expired before the dump's ctime, however it rounds
    keys["0"]["session:expired-but-held"] = {"type": "string", "encoding": "embstr", "expire_at_ms": "past",
                                             "sha256": hashlib.sha256(expired).hexdigest()}  # fmt: skip
    sessions["session:expired-but-held"] = _session(0, "expired-but-held", "msgpack", expired)
    client.save()
    client.close()
    return {"server": f"{name} {version}", "policy": policy, "cluster": cluster, "module": modules[0],
            "keymeta": modules[1], "keys": keys, "sessions": sessions}


SESSIONS_DB0: list[tuple[dict[str, t.Any], str, int | None]] = [
    # (data, serializer, seconds to expiry from the fill's start: None for none)
    ({"user_id": 42, "cart": [1, 2, 3], "csrf_token": "c" * 40}, "msgpack", 31 * 86400),
    ({"user_id": 7, "name": "Zoë", "prefs": {"theme": "dark", "tz": "Europe/Paris"}}, "msgpack", 3600),
    ({"user_id": 7, "flash": [["message", "saved"]]}, "msgpack", None),
    ({"n": 0}, "msgpack", 600),
    ({"user_id": 9, "roles": ["admin", "ops"]}, "json", 86400),
    ({"blob": "x" * 300}, "msgpack", None),  # LZF-compressed in the file
]
SESSIONS_DB1 = [({"user_id": 100}, "msgpack", 7200), ({"user_id": 101}, "msgpack", None)]
SESSIONS_DB3 = [({"user_id": 300, "cart": []}, "msgpack", 120)]


def _sessions(port: int, db: int, datas: list[tuple[dict[str, t.Any], str, int | None]],
              now_ms: int) -> dict[str, dict[str, t.Any]]:  # fmt: skip
    import redis

    from tests.flaskapps import make_app, write_session

    client = redis.Redis(host="127.0.0.1", port=port, db=db)
    written = {}
    for data, fmt, ttl in datas:
        app = make_app(redis_url=f"redis://127.0.0.1:{port}/{db}", fmt=fmt)
        sid = write_session(app, data).sid
        key = f"session:{sid}"
        if ttl is None:
            client.persist(key)
        else:
            client.pexpireat(key, now_ms + ttl * 1000 + 123)  # not whole seconds: TTL rounds
        written[key] = _session(db, sid, fmt, t.cast(bytes, client.get(key)))
    client.close()
    return written


def _newer_features(client: t.Any, session_key: str, module: bool, keymeta: bool) -> None:
    if _has_command(client, "VCARD", "other:none"):  # Redis 8's vector sets: a built-in module
        for quantisation in ("Q8", "NOQUANT", "BIN"):
            for i in range(5):
                client.execute_command("VADD", f"other:vectorset-{quantisation.lower()}", "VALUES", 3, i, 1 / (i + 1),
                                       -i, f"e{i}", quantisation)  # fmt: skip
    if _has_command(client, "XADD", "other:stream-idmp", "IDMP", "producer-1", "iid-1", "*", "f", "v"):  # 8.6
        client.execute_command("XADD", "other:stream-idmp", "IDMP", "producer-1", "iid-2", "*", "f", "w")
        client.execute_command("XADD", "other:stream-idmp", "IDMPAUTO", "producer-2", "*", "f", "x")
    if module:  # a module type's values (RDB type 7) and its aux records (opcode 0xf7)
        client.execute_command("TESTRDB.SET.BEFORE", "aux before the keys")
        client.execute_command("TESTRDB.SET.AFTER", "aux after the keys")
        client.execute_command("TESTRDB.SET.KEY", "other:module", "a module value")
        client.execute_command("TESTRDB.SET.KEY", "session:a-module-value", "not a session")
    if keymeta:  # Redis 8.6's key metadata (opcode 0xf3) before a session's record and another key's
        client.execute_command("KEYMETA.REGISTER", "KMT1", 1, "ALLOWIGNORE:RDBLOAD:RDBSAVE")
        client.execute_command("KEYMETA.SET", "KMT1", session_key, "metadata of a session")
        client.execute_command("KEYMETA.SET", "KMT1", "other:hash-hashtable", "metadata of a hash")


def _has_command(client: t.Any, *command: str) -> bool:
    import redis

    try:
        client.execute_command(*command)
    except redis.ResponseError:  # unknown command
        return False
    return True


def _session(db: int, sid: str, fmt: str, stored: bytes) -> dict[str, t.Any]:
    """What a listing must show of it, decoded by the serializer's own library."""
    import msgspec

    data = msgspec.msgpack.decode(stored) if fmt == "msgpack" else json.loads(stored)
    return {"db": db, "sid": sid, "serializer": fmt, "size": len(stored), "data": data}


def _other_types(client: t.Any, *, field_ttls: bool, other_db: bool) -> None:
    client.set("other:int", "12345")
    client.set("other:embstr", "short")
    client.set("other:raw", os.urandom(200))  # random: stored as is
    client.set("other:lzf", b"abc" * 2000)
    client.rpush("other:list-listpack", "a", "b", 3)
    client.rpush("other:list-quicklist", *[f"item-{i}" for i in range(60)])
    client.rpush("other:list-plain", *["small"] * 10, os.urandom(1500), "small")  # past 8: a quicklist
    client.sadd("other:set-intset", 1, 2, 3, -4)
    client.sadd("other:set-listpack", "a", "b", "c")
    client.sadd("other:set-hashtable", *[f"m{i}" for i in range(40)])
    client.sadd("other:set-big-intset", *range(100))  # over set-max-intset-entries: a hashtable
    client.zadd("other:zset-listpack", {"a": 1.5, "b": -2})
    client.zadd("other:zset-skiplist", {f"m{i}": i / 3 for i in range(40)})
    client.hset("other:hash-listpack", mapping={"f": "v", "n": 1})
    client.hset("other:hash-hashtable", mapping={f"f{i}": f"v{i}" for i in range(40)})
    if field_ttls:  # hash field expiration: Redis 7.4's RDB types 24 and 25, Valkey 9's 22
        client.hset("other:hash-listpack-ex", mapping={"f": "v", "g": "w", "h": "x"})
        client.execute_command("HPEXPIRE", "other:hash-listpack-ex", 86_400_000, "FIELDS", 2, "f", "g")
        client.hset("other:hash-metadata", mapping={f"f{i}": f"v{i}" for i in range(40)})
        client.execute_command("HEXPIRE", "other:hash-metadata", 3600, "FIELDS", 3, "f1", "f2", "f30")
        client.execute_command("HEXPIRE", "other:hash-metadata", 99_999, "FIELDS", 1, "f4")
        client.hset("session:a-hash-with-field-ttls", mapping={"f": "v"})
        client.execute_command("HEXPIRE", "session:a-hash-with-field-ttls", 600, "FIELDS", 1, "f")
    else:
        client.hset("session:a-hash", mapping={"f": "v"})
    for i in range(25):
        client.xadd("other:stream", {"n": i, "who": "me"}, id=f"{1000 + i}-1")
    client.xdel("other:stream", "1003-1", "1004-1")
    client.xgroup_create("other:stream", "readers", id="0")
    client.xgroup_create("other:stream", "idle", id="$")
    client.xreadgroup("readers", "alice", {"other:stream": ">"}, count=5)
    client.xreadgroup("readers", "bob", {"other:stream": ">"}, count=3)
    client.xack("other:stream", "readers", "1000-1", "1001-1")
    client.execute_command("XGROUP", "CREATECONSUMER", "other:stream", "readers", "carol")
    client.xgroup_create("other:stream-empty", "g", id="$", mkstream=True)
    if other_db:
        client.execute_command("SELECT", 1)  # one connection: this client is used by no other thread
        client.sadd("other:db1-set", "x", "y")
        client.execute_command("SELECT", 0)


def _describe(port: int, db: int) -> dict[str, dict[str, t.Any]]:
    """What the live server says about every key of ``db``."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, db=db)
    described = {}
    for key in client.scan_iter(count=1000):
        pexpiretime = client.execute_command("PEXPIRETIME", key)
        entry = {"type": client.type(key).decode(), "encoding": client.object("encoding", key).decode(),
                 "expire_at_ms": None if pexpiretime < 0 else pexpiretime}  # fmt: skip
        if entry["type"] == "string":
            entry["sha256"] = hashlib.sha256(client.get(key)).hexdigest()
        described[key.decode()] = entry
    client.close()
    return described


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    main()
