"""The Redis snapshot store (``rdb://``): what the real redis-server writes, read offline.

Every dump here is written by the redis-server of tests/servers.py (``SAVE``, then
the file its ``dir``/``dbfilename`` name), holding sessions the real Flask-Session
apps wrote. Hostile files are real dumps with bytes changed (and, where a test
needs the parser to get past the end, the CRC64 recomputed).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import tracemalloc
import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.errors import InvalidInput, StoreError
from sesstool.stores import open_store
from sesstool.stores.base import MISSING, STRING, Capability
from sesstool.stores.rdb import RdbStore, parse_rdb_url
from sesstool.stores.rdb_codec import crc64, lzf_decompress, module_type_name
from sesstool.stores.rdb_format import Budget, RdbReader
from tests.conftest import CliRunner
from tests.flaskapps import make_app, write_session
from tests.properties import examples
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


def _with_crc(data: bytes) -> bytes:
    """``data`` (a whole dump) with its trailing CRC64 recomputed after a change."""
    return data[:-8] + crc64(0, data[:-8]).to_bytes(8, "little")


def _write(directory: t.Any, data: bytes, name: str = "crafted.rdb") -> str:
    path = os.path.join(str(directory), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _scan_all(store: t.Any, prefix: bytes = b"") -> dict[bytes, t.Any]:
    return {item.key: item for batch in store.scan(prefix, batch=7) for item in batch}


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
    items = _scan_all(store, b"k:")
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
    """rdb-py (declared, and not used at run time: see sesstool/stores/rdb_format.py)
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
        return _write(tmp_path, _with_crc(data[:at] + value.to_bytes(4, "little") + data[at + 4 :]), f"c{value}.rdb")

    # Written 500 s before its real ctime: 1500 s were left then.
    store = RdbStore(with_ctime(ctime - 500))
    assert 1495 <= t.cast(int, t.cast(t.Any, store.get(b"session:a")).ttl) <= 1501  # ctime is whole seconds
    # Written 2000 s later: the key was past its expiry, still in the file: ttl 0.
    later = RdbStore(with_ctime(ctime + 2000))
    assert t.cast(t.Any, later.get(b"session:a")).ttl == 0
    assert t.cast(t.Any, later.get(b"session:forever")).ttl is None
    # No ctime field (renamed): the file's modification time counts instead.
    no_ctime = _write(tmp_path, _with_crc(data.replace(b"\x05ctime", b"\x05ctimx")), "noctime.rdb")
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
        _write(tmp_path, b"", "empty.rdb"): "not a Redis snapshot (no REDIS header)",
        _write(tmp_path, b"GIF89a....", "gif.rdb"): "not a Redis snapshot (no REDIS header)",
        _write(tmp_path, b"REDIS0099\xff" + bytes(8), "new.rdb"): "RDB format version 99 is not one this reader knows",
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


# -- hostile files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dump(redis_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real dump: sessions, an LZF value, a hash, a stream with a group, db 1."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.flushall()
    client.set("session:a", b"\x81\xa1a\x01", ex=1000)
    client.set("session:lzf", b'{"user": "' + b"x" * 200 + b'"}')
    client.set("session:n", "42")
    client.hset("session:h", "f", "v")
    client.xadd("session:x", {"f": "v"})
    client.xgroup_create("session:x", "g", id="0")
    client.select(1)
    client.set("session:b", b"one")
    path = snapshot(redis_server, tmp_path_factory.mktemp("dump"))
    client.flushall()
    client.close()
    return open(path, "rb").read()


def test_a_truncated_file_is_one_clear_error_wherever_it_is_cut(small_dump: bytes, tmp_path: t.Any) -> None:
    for cut in range(0, len(small_dump), 3):
        store_path = _write(tmp_path, small_dump[:cut])
        with pytest.raises(StoreError, match="not a readable Redis snapshot: "):
            store = RdbStore(store_path)
            _scan_all(store)


def test_a_damaged_checksum_is_an_error_and_a_disabled_one_is_not(small_dump: bytes, tmp_path: t.Any) -> None:
    flipped = bytearray(small_dump)
    flipped[small_dump.index(b"\x81\xa1a\x01") + 3] ^= 0x01  # a byte of a value: only the CRC notices
    store = RdbStore(_write(tmp_path, bytes(flipped)))
    with pytest.raises(StoreError, match="the checksum does not match: the file is damaged"):
        _scan_all(store)
    unchecked = RdbStore(_write(tmp_path, small_dump[:-8] + bytes(8), "nocrc.rdb"))  # rdbchecksum no
    assert len(_scan_all(unchecked)) == 5


def test_a_huge_declared_length_allocates_nothing(small_dump: bytes, tmp_path: t.Any) -> None:
    at = small_dump.index(b"session:a") + len(b"session:a")
    assert small_dump[at] == 4  # the value's length
    huge = _with_crc(small_dump[:at] + b"\x81" + (1 << 62).to_bytes(8, "big") + small_dump[at + 1 :])
    store = RdbStore(_write(tmp_path, huge))
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match="runs past the end of the file"):
            _scan_all(store)
        assert tracemalloc.get_traced_memory()[1] < 4 << 20
    finally:
        tracemalloc.stop()


def _lzf_at(dump: bytes) -> int:
    at = dump.index(b"session:lzf") + len(b"session:lzf")
    assert dump[at] == 0xC3  # an LZF-compressed string
    return at


def test_one_bad_value_is_reported_as_unknown_and_the_rest_reads_on(
    cli: CliRunner, small_dump: bytes, tmp_path: t.Any
) -> None:
    at = _lzf_at(small_dump)
    corrupt = bytearray(small_dump)
    corrupt[at + 4] = 0xFF  # the first LZF control byte: a back reference before the start
    path = _write(tmp_path, _with_crc(bytes(corrupt)))
    result = cli("list", "--store", "rdb://" + path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    by_sid = {r["sid"]: r for r in result.json()}
    assert by_sid["lzf"]["serializer"] == "unknown" and by_sid["lzf"]["size"] == 0
    assert by_sid["a"]["serializer"] == "msgpack" and by_sid["n"]["ttl"] is None
    assert "the value of 'session:lzf' cannot be read (corrupt LZF data" in result.stderr


def test_an_lzf_bomb_stops_at_the_value_budget(small_dump: bytes, tmp_path: t.Any) -> None:
    warned: list[str] = []
    store = RdbStore(_write(tmp_path, small_dump), warn=warned.append, budget=Budget(value_limit=100))
    items = _scan_all(store)
    assert items[b"session:lzf"].value == b"" and "over the 100-byte budget" in warned[0]
    assert items[b"session:a"].value == b"\x81\xa1a\x01"


def test_keys_over_the_key_budget_are_skipped_with_a_warning(small_dump: bytes, tmp_path: t.Any) -> None:
    warned: list[str] = []
    store = RdbStore(_write(tmp_path, small_dump), warn=warned.append, budget=Budget(key_limit=9))
    assert sorted(_scan_all(store)) == [b"session:a", b"session:h", b"session:n", b"session:x"]
    assert warned == [f"rdb://{store.path}: skipped 1 keys longer than 9 bytes (no session key is that long)"]


@examples(150)
@given(
    changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    fix_crc=st.booleans(),
)
def test_mutated_dumps_never_crash_nor_allocate_past_the_budget(
    small_dump: bytes, changes: list[tuple[int, int]], cut: int | None, fix_crc: bool
) -> None:
    data = bytearray(small_dump)
    for where, byte in changes:
        data[9 + where % (len(data) - 9)] = byte  # past the header, which a test above covers
    blob = _with_crc(bytes(data)) if fix_crc else bytes(data)
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    with tempfile.TemporaryDirectory() as directory:
        path = _write(directory, blob)
        tracemalloc.start()
        try:
            store = RdbStore(path, warn=lambda message: None, budget=Budget(value_limit=1 << 16, key_limit=1 << 10))
            _scan_all(store)
            store.fetch([b"session:a", b"session:b"])
        except StoreError as e:
            assert str(e).startswith(f"rdb://{path}: not a readable Redis snapshot: ")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 4 << 20


# -- the byte-level pieces -------------------------------------------------------------------


def test_crc64_is_redis_crc64_jones() -> None:
    assert crc64(0, b"123456789") == 0xE9C6D914C4B8D9CA  # the check value in Redis' crc64.c
    assert crc64(crc64(0, b"1234"), b"56789") == crc64(0, b"123456789")


def test_lzf_decompress_expands_literals_and_overlapping_back_references() -> None:
    # a literal "ab", then a back reference of length 7 at distance 2: "ababababa"
    assert lzf_decompress(b"\x01ab" + bytes([(5 << 5) | 0, 1]), 9) == b"ababababa"
    with pytest.raises(ValueError, match="more output than declared"):
        lzf_decompress(b"\x01ab" + bytes([(5 << 5) | 0, 1]), 5)
    with pytest.raises(ValueError, match="were declared"):
        lzf_decompress(b"\x01ab", 3)


@examples(200)
@given(data=st.binary(max_size=200), length=st.integers(0, 5000))
def test_lzf_decompress_never_writes_past_the_declared_length(data: bytes, length: int) -> None:
    try:
        out = lzf_decompress(data, length)
    except ValueError:
        return
    assert len(out) == length


def test_module_type_names_decode_from_their_ids() -> None:
    charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    module_id = 0
    for ch in "ReJSON-RL":
        module_id = (module_id << 6) | charset.index(ch)
    assert module_type_name((module_id << 10) | 3) == "ReJSON-RL"
