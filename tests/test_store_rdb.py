"""The Redis snapshot store (``rdb://``): what the real redis-server writes, read offline.

Every dump here is written by the redis-server of tests/servers.py (``SAVE``, then
the file its ``dir``/``dbfilename`` name), holding sessions the real Flask-Session
apps wrote. Hostile files: tests/test_store_rdb_hostile.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import tracemalloc
import typing as t

import pytest

from sesstool.errors import InvalidInput
from sesstool.stores import open_store
from sesstool.stores.base import MISSING, STRING, Capability
from sesstool.stores.rdb import RdbStore, parse_rdb_url
from sesstool.stores.rdb_format import RdbReader
from tests.conftest import CliRunner
from tests.flaskapps import make_app, write_session
from tests.rdbfiles import scan_all, with_crc, write
from tests.servers import ServerProcess, snapshot

# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def live(redis_url: str, redis_server: ServerProcess) -> t.Iterator[t.Any]:
    """An empty redis-server (every db flushed) to fill before a SAVE."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.flushall()
    client.function_flush()
    yield client
    client.function_flush()
    client.close()



def _ctime_at(data: bytes) -> int:
    # Redis 7 writes ctime as an integer-encoded string: 0xc2 then 4 bytes little-endian
    at = data.index(b"\x05ctime\xc2") + 7
    return at


# -- what the real server writes ----------------------------------------------------------


def _fill_every_kind(live: t.Any) -> None:
    live.set("k:int", "12345")
    live.set("k:neg", "-7")
    live.set("k:short", b"\x81\xa1a\x01", ex=1000)
    live.set("k:lzf", b"abc" * 3000)  # compressible: written LZF-compressed
    live.set("k:big", os.urandom(3 << 20))  # past the reader's 1 MiB chunks
    live.hset("k:hash", mapping={"a": "1"})
    live.hset("k:hash-big", mapping={f"f{i}": "v" * 80 for i in range(300)})
    live.rpush("k:list", "a", "b")
    live.rpush("k:list-big", *[f"item-{i}" * 20 for i in range(3000)])
    live.sadd("k:intset", 1, 2, 3)
    live.sadd("k:set", *[f"m{i}" for i in range(300)])
    live.zadd("k:zset", {"a": 1.5})
    live.zadd("k:zset-big", {f"m{i}": i / 3 for i in range(300)})
    live.xadd("k:stream", {"f": "v"})
    live.xgroup_create("k:stream", "group", id="0")
    live.xreadgroup("group", "consumer", {"k:stream": ">"})  # a pending entry and a consumer
    live.execute_command("FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('f', function() return 1 end)")
    live.select(1)
    live.set("k:db1", "one", ex=500)
    live.select(2)
    live.set("k:db2", "two")
    live.select(0)


def test_every_kind_and_encoding_reads_as_the_live_server_reports_it(live: t.Any, redis_server: ServerProcess,
                                                                      tmp_path: t.Any) -> None:  # fmt: skip
    _fill_every_kind(live)
    store = open_store("rdb://" + snapshot(redis_server, tmp_path))
    items = scan_all(store, b"k:")
    assert sorted(items) == sorted(live.scan_iter("k:*"))
    for key, item in items.items():
        assert item.kind == live.type(key).decode(), key
        if item.kind == STRING:
            assert item.value == live.get(key)
        else:
            assert item.value is None
    assert abs(t.cast(int, items[b"k:short"].ttl) - live.ttl("k:short")) <= 2
    assert items[b"k:int"].ttl is None
    # databases: ?db=N
    assert [item.key for batch in open_store(store.describe() + "?db=1").scan(b"") for item in batch] == [b"k:db1"]
    db2 = open_store(store.describe() + "?db=2")
    assert db2.get(b"k:db2") is not None and db2.get(b"k:db1") is None
    assert open_store(store.describe() + "?db=7").fetch([b"k:db2"])[0].kind == MISSING


def test_agrees_with_rdb_py_on_strings_and_expiries(live: t.Any, redis_server: ServerProcess, tmp_path: t.Any) -> None:
    """rdb-py (a test dependency only: see sesstool/stores/rdb_format.py)
    reads the same strings and expiries; it omits the stream key, which we report."""
    import rdb

    _fill_every_kind(live)
    path = snapshot(redis_server, tmp_path)
    theirs, db = {}, 0
    for record in rdb.RdbDecoder(path):
        if record["type"] == "select_db":
            db = record["db"]
        elif db == 0 and "key" in record and record["type"] != "aux_field":
            theirs[record["key"]] = record
    with open(path, "rb") as fh:
        ours = {e.key: e for e in RdbReader(fh, os.path.getsize(path)).entries(0, lambda key: True)}
    assert set(ours) - set(theirs) == {b"k:stream"}
    for key, record in theirs.items():
        assert ours[key].expire_ms == record["expiry"]
        if record["type"] == "string":
            assert ours[key].value == record["value"]


def test_fetch_reads_the_file_once_for_any_number_of_keys(
    live: t.Any, redis_server: ServerProcess, tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.mset({f"session:s{i}": f"v{i}" for i in range(50)})
    store = open_store("rdb://" + snapshot(redis_server, tmp_path))
    passes = []
    real = RdbReader.entries

    def counted(self: RdbReader, *args: t.Any, **kwargs: t.Any) -> t.Iterator[t.Any]:
        passes.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RdbReader, "entries", counted)
    keys = [b"session:s%d" % i for i in range(50)] + [b"session:gone"]
    items = store.fetch(keys)
    assert len(passes) == 1
    assert [item.value for item in items[:3]] == [b"v0", b"v1", b"v2"] and items[-1].kind == MISSING
    assert [len(batch) for batch in store.scan(b"session:", batch=16)] == [16, 16, 16, 2]
    assert sorted(k for batch in store.scan_keys(b"session:s1", batch=4) for k in batch)[:2] == [
        b"session:s1", b"session:s10"]  # fmt: skip


def test_a_scan_holds_one_batch_and_one_buffer_however_big_the_dump(live: t.Any, redis_server: ServerProcess,
                                                                     tmp_path: t.Any) -> None:  # fmt: skip
    for i in range(2):
        live.set(f"other:{i}", os.urandom(3 << 19))  # 3 MiB the scan skips
    live.mset({f"session:s{i:03d}": b"v" * 100 for i in range(300)})
    store = open_store("rdb://" + snapshot(redis_server, tmp_path))
    tracemalloc.start()
    try:
        sizes = [len(batch) for batch in store.scan(b"session:", batch=100)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sizes == [100, 100, 100]
    assert peak < 5 << 19, peak  # the 1 MiB read buffer and a batch, never a skipped value


# -- TTL: measured from when the dump was written ------------------------------------------


def test_ttl_is_measured_from_ctime_and_a_key_past_its_expiry_is_held_with_ttl_zero(
    live: t.Any, redis_server: ServerProcess, tmp_path: t.Any
) -> None:
    live.set("session:a", b"x", ex=1000)
    live.set("session:forever", b"y")
    data = open(snapshot(redis_server, tmp_path), "rb").read()
    at = _ctime_at(data)
    ctime = int.from_bytes(data[at : at + 4], "little")

    def with_ctime(value: int) -> str:
        return write(tmp_path, with_crc(data[:at] + value.to_bytes(4, "little") + data[at + 4 :]), f"c{value}.rdb")

    # Written 500 s before its real ctime: 1500 s were left then.
    store = RdbStore(with_ctime(ctime - 500))
    assert 1495 <= t.cast(int, t.cast(t.Any, store.get(b"session:a")).ttl) <= 1501  # ctime is whole seconds
    # Written 2000 s later: the key was past its expiry, still in the file: ttl 0.
    later = RdbStore(with_ctime(ctime + 2000))
    assert t.cast(t.Any, later.get(b"session:a")).ttl == 0
    assert t.cast(t.Any, later.get(b"session:forever")).ttl is None
    # No ctime field (renamed): the file's modification time counts instead.
    no_ctime = write(tmp_path, with_crc(data.replace(b"\x05ctime", b"\x05ctimx")), "noctime.rdb")
    os.utime(no_ctime, (ctime - 100, ctime - 100))
    assert 1095 <= t.cast(int, t.cast(t.Any, RdbStore(no_ctime).get(b"session:a")).ttl) <= 1101


# -- the CLI: what works, what is refused ----------------------------------------------------


def _same(records: list[dict[str, t.Any]], others: list[dict[str, t.Any]]) -> None:
    """Equal records, TTLs within a few seconds (the dump's TTLs count from its ctime)."""
    assert len(records) == len(others)
    for a, b in zip(sorted(records, key=lambda r: r["key"]), sorted(others, key=lambda r: r["key"]), strict=True):
        ttl_a, ttl_b = a.pop("ttl"), b.pop("ttl")
        assert a == b
        assert (ttl_a is None) == (ttl_b is None) and (ttl_a is None or abs(ttl_a - ttl_b) <= 5)


def test_flask_session_sessions_read_the_same_from_the_dump_as_from_the_live_store(
    cli: CliRunner, live: t.Any, redis_url: str, redis_server: ServerProcess, tmp_path: t.Any
) -> None:
    datas = ({"user_id": 42, "cart": [1, 2]}, {"user_id": 7})
    apps = [make_app(redis_url=redis_url, fmt=fmt) for fmt in ("msgpack", "json")]
    written = [write_session(app, data) for app in apps for data in datas]
    live.set("session:broken", b"\xc1 not a session")
    live.hset("session:a-hash", "f", "v")
    live.select(1)
    live.set("session:in-db1", b"\x81\xa1a\x01")
    live.select(0)
    url = "rdb://" + snapshot(redis_server, tmp_path)
    for args in (["list", "--data"], ["export"]):
        fmt = "json" if args[0] == "list" else "ndjson"
        ours, theirs = cli(*args, "--store", url, "--format", fmt), cli(*args, "--store", redis_url, "--format", fmt)
        assert ours.exit_code == theirs.exit_code == 0, ours.stderr
        assert ours.stderr == theirs.stderr  # the same warnings: a hash skipped, one undecodable
        _same(ours.json() if fmt == "json" else ours.ndjson(), theirs.json() if fmt == "json" else theirs.ndjson())
    show = cli("show", written[0].sid, "--store", url, "--format", "json")
    assert show.exit_code == 0 and show.json()["data"] == {"user_id": 42, "cart": [1, 2], "_permanent": True}
    assert cli("show", "nobody", "--store", url).exit_code == 1
    stats = cli("stats", "--store", url, "--format", "json").json()
    live_stats = cli("stats", "--store", redis_url, "--format", "json").json()
    assert {k: v for k, v in stats.items() if k != "ttl"} == {k: v for k, v in live_stats.items() if k != "ttl"}
    assert stats["count"] == 5
    doctor = cli("doctor", "--store", url, "--format", "json")
    assert doctor.exit_code == 0 and {c["id"] for c in doctor.json()["checks"]} >= {"store.reachable"}
    db1 = cli("list", "--store", url + "?db=1", "--format", "json")
    assert [r["sid"] for r in db1.json()] == ["in-db1"]
    assert db1.json()[0]["serializer"] == "msgpack"


def test_pickled_sessions_of_an_old_flask_session_read_from_the_dump(
    cli: CliRunner, live: t.Any, redis_url: str, redis_server: ServerProcess, tmp_path: t.Any
) -> None:
    from tests.oldapps import VERSIONS, write_old_sessions

    (session,) = write_old_sessions(VERSIONS[0], redis_url, [{"user_id": 7}], pickle_only=True)
    url = "rdb://" + snapshot(redis_server, tmp_path)
    ours, theirs = (cli("show", session["sid"], "--store", u, "--format", "json") for u in (url, redis_url))
    assert ours.exit_code == theirs.exit_code == 0, ours.stderr
    _same([ours.json()], [theirs.json()])
    assert ours.json()["serializer"] == "pickle"


WRITES = [
    ["edit", "abc", "--set", "a=2"],
    ["expire", "abc", "--in", "1h"],
    ["persist", "abc"],
    ["delete", "abc"],
    ["delete", "-"],
    ["purge", "--all", "--yes"],
    ["purge", "--empty"],  # on a terminal: refused before asking
    ["import", "-"],
    ["migrate", "--to", "json"],
]


@pytest.mark.parametrize("args", WRITES, ids=[" ".join(a) for a in WRITES])
def test_every_writing_command_is_refused_in_one_line_before_asking(
    cli: CliRunner, live: t.Any, redis_server: ServerProcess, tmp_path: t.Any, args: list[str]
) -> None:
    live.set("session:abc", b"\x81\xa1a\x01", ex=600)
    path = snapshot(redis_server, tmp_path)
    before = (hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns)
    record = '{"sid": "x", "key": "session:x", "ttl": null, "size": 1, "serializer": "json", "data": {}}\n'
    result = cli(*args, "--store", "rdb://" + path, input="abc\n" if args[0] == "delete" else record,
                 stdin_isatty=args == ["purge", "--empty"])  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == f"error: rdb://{path}: this store cannot write: it is read-only, which {args[0]} needs\n"
    assert (hashlib.sha256(open(path, "rb").read()).hexdigest(), os.stat(path).st_mtime_ns) == before


def test_dry_runs_only_read_so_they_work_on_a_snapshot(cli: CliRunner, live: t.Any, redis_server: ServerProcess,
                                                      tmp_path: t.Any) -> None:  # fmt: skip
    live.set("session:abc", b"\x81\xa1a\x01", ex=600)
    live.set("session:empty", b"\x80")
    url = "rdb://" + snapshot(redis_server, tmp_path)
    purge = cli("purge", "--empty", "--dry-run", "--store", url, "--format", "json")
    assert purge.exit_code == 0, purge.stderr
    counts = {k: purge.json()[k] for k in ("matched", "deleted", "dry_run")}
    assert counts == {"matched": 1, "deleted": 0, "dry_run": True}
    assert cli("migrate", "--to", "json", "--dry-run", "--store", url).exit_code == 0
    # what the snapshot cannot do at all is named
    expired = cli("purge", "--expired", "--dry-run", "--store", url)
    assert expired.exit_code == 2 and "cannot tell expired sessions" in expired.stderr
    assert RdbStore.capabilities == frozenset({Capability.ENUMERABLE_IDS}) and RdbStore.expired_purge is None


# -- files that cannot be read ---------------------------------------------------------------


def test_files_that_are_not_readable_snapshots_are_one_error_line(cli: CliRunner, tmp_path: t.Any) -> None:
    fifo = os.path.join(tmp_path, "fifo")
    os.mkfifo(fifo)
    cases = {
        str(tmp_path / "missing.rdb"): "cannot open the snapshot: No such file or directory",
        str(tmp_path): "is a directory, not a snapshot file",
        fifo: "is not a regular file",  # never opened: a FIFO would block
        write(tmp_path, b"", "empty.rdb"): "not a Redis snapshot (no REDIS or VALKEY header)",
        write(tmp_path, b"GIF89a....", "gif.rdb"): "not a Redis snapshot (no REDIS or VALKEY header)",
        write(tmp_path, b"REDIS0099\xff" + bytes(8), "new.rdb"): "RDB format version 99 is not one this reader knows",
    }
    for path, message in cases.items():
        result = cli("list", "--store", "rdb://" + path)
        assert result.exit_code == 3, (path, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: rdb://{path}: ") and message in lines[0]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rdb://host/tmp/dump.rdb", "names a local file"),
        ("rdb://", "give the snapshot's path"),
        ("rdb:///tmp/dump.rdb?db=x", "db must be a database number"),
        ("rdb:///tmp/dump.rdb?db=1&db=2", "db must be a database number"),
        ("rdb:///tmp/dump.rdb?dbx=1", "takes only ?db=N"),
    ],
)
def test_malformed_urls_are_invalid_input(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_rdb_url(url)


def test_url_paths_are_percent_decoded() -> None:
    assert parse_rdb_url("rdb:///srv/my%20dumps/dump.rdb?db=3") == ("/srv/my dumps/dump.rdb", 3)
    assert parse_rdb_url("rdb://localhost/dump.rdb") == ("/dump.rdb", 0)
