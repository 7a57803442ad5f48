"""The Redis snapshot store (``rdb://``) on the formats newer servers write.

The live redis-server of tests/test_store_rdb.py is 7.0 (RDB 10). These dumps were
written by real newer servers and are committed (tests/data/rdb, see its README):
Redis 7.2 and Valkey 8.0 and 8.1 (RDB 11: listpack sets), Redis 7.4, 8.0-m01 and
8.0.2 (RDB 12: hashes with field TTLs; 8.0's vector sets), Redis 8.6 (RDB 13: key
metadata, streams with idempotent producers), Valkey 9.1 (RDB 80,
its own numbering under a VALKEY header), a Redis 7.4 cluster node (slot-info
records) and Redis' own test module (module values and aux data). Beside each dump
its manifest says what the live server reported about every key before the SAVE;
every test here compares what sesstool reads with that.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import typing as t
from dataclasses import dataclass

import pytest

from sesstool.errors import StoreError
from sesstool.stores import open_store
from sesstool.stores.rdb import RdbStore
from sesstool.stores.rdb_format import RdbReader
from tests.conftest import CliRunner
from tests.rdbfiles import DATA, committed, scan_all, with_crc, write

NAMES = sorted(name[:-4] for name in os.listdir(DATA) if name.endswith(".rdb"))


@dataclass(frozen=True)
class Dump:
    path: str
    manifest: dict[str, t.Any]

    @property
    def url(self) -> str:
        return "rdb://" + self.path

    @property
    def data(self) -> bytes:
        return committed(os.path.basename(self.path)[:-4])

    def ttl(self, expire_at_ms: int | str | None) -> int | None:
        """What Redis' TTL would have answered when the dump was written (ctime)."""
        if expire_at_ms is None:
            return None
        if expire_at_ms == "past":
            return 0
        left = t.cast(int, expire_at_ms) - self.manifest["ctime"] * 1000
        return max(0, (left + 500) // 1000)


@pytest.fixture(params=NAMES)
def dump(request: pytest.FixtureRequest) -> Dump:
    with open(os.path.join(DATA, f"{request.param}.json")) as fh:
        return Dump(os.path.join(DATA, f"{request.param}.rdb"), json.load(fh))


def _encodings() -> set[tuple[int, str, str]]:
    found = set()
    for name in NAMES:
        with open(os.path.join(DATA, f"{name}.json")) as fh:
            manifest = json.load(fh)
        for keys in manifest["keys"].values():
            found |= {(manifest["rdb_version"], k["type"], k["encoding"]) for k in keys.values()}
    return found


def test_the_dumps_hold_the_newer_formats_in_every_encoding() -> None:
    """Guards the test data itself: a regenerated dump that lost an encoding fails here."""
    found = _encodings()
    for version in (11, 12, 13, 80):
        assert {(version, "set", "listpack"), (version, "set", "intset"), (version, "set", "hashtable"),
                (version, "list", "listpack"), (version, "list", "quicklist"), (version, "zset", "listpack"),
                (version, "zset", "skiplist"), (version, "hash", "listpack"), (version, "hash", "hashtable"),
                (version, "stream", "stream"), (version, "string", "int"), (version, "string", "embstr"),
                (version, "string", "raw")} <= found  # fmt: skip
    assert {(12, "hash", "listpackex"), (12, "test__rdb", "raw"), (12, "vectorset", "raw")} <= found
    newest = committed("redis-8.6.3")  # key metadata (0xf3) and an idempotent producer's stream
    assert b"metadata of a session" in newest and b"producer-1" in newest
    for name in NAMES:
        assert os.path.getsize(os.path.join(DATA, f"{name}.rdb")) < 50_000


#: who wrote each dump (8.0's first milestone calls itself 7.9.224), and the format that server writes
WRITERS = {"redis-7.2.6": ("redis 7.2.6", 11), "redis-7.4.1": ("redis 7.4.1", 12),
           "redis-7.4.1-cluster": ("redis 7.4.1", 12), "redis-8.0-m01": ("redis 7.9.224", 12),
           "redis-8.0.2": ("redis 8.0.2", 12), "redis-8.6.3": ("redis 8.6.3", 13), "valkey-8.0.1": ("valkey 8.0.1", 11),
           "valkey-8.1.1": ("valkey 8.1.1", 11), "valkey-9.1.2": ("valkey 9.1.2", 80)}  # fmt: skip


def test_each_dump_is_the_version_its_server_writes(dump: Dump) -> None:
    assert sorted(WRITERS) == NAMES
    server, version = WRITERS[os.path.basename(dump.path)[:-4]]
    header = b"VALKEY%03d" % version if version >= 80 else b"REDIS%04d" % version  # Valkey 9 has its own
    assert (dump.manifest["server"], dump.manifest["rdb_version"], dump.data[:9]) == (server, version, header)
    assert RdbStore(dump.path).version == version


def test_every_key_of_every_db_reads_as_the_live_server_reported_it(dump: Dump) -> None:
    for db, keys in dump.manifest["keys"].items():
        items = {key.decode(): item for key, item in scan_all(open_store(f"{dump.url}?db={db}")).items()}
        assert sorted(items) == sorted(keys), db
        for key, expected in keys.items():
            item = items[key]
            assert item.kind == expected["type"], key
            assert item.ttl == dump.ttl(expected["expire_at_ms"]), key
            if expected["type"] == "string":
                assert hashlib.sha256(t.cast(bytes, item.value)).hexdigest() == expected["sha256"], key
            else:
                assert item.value is None, key
    for db in ("2", "15"):  # no keys: the databases of the file's other keys are not mixed in
        if db not in dump.manifest["keys"]:
            assert scan_all(open_store(f"{dump.url}?db={db}")) == {}


def test_sessions_list_and_show_as_flask_session_wrote_them(cli: CliRunner, dump: Dump) -> None:
    by_db = collections.defaultdict(list)
    for session in dump.manifest["sessions"].values():
        by_db[session["db"]].append(session)
    assert len(by_db[0]) == 7 and sum(map(len, by_db.values())) == (7 if dump.manifest["cluster"] else 10)
    for db, sessions in by_db.items():
        url = f"{dump.url}?db={db}"
        result = cli("list", "--data", "--store", url, "--format", "json")
        assert result.exit_code == 0, result.stderr
        expected = [{"sid": s["sid"], "key": f"session:{s['sid']}", "size": s["size"], "serializer": s["serializer"],
                     "data": s["data"], "ttl": dump.ttl(dump.manifest["keys"][str(db)][f"session:{s['sid']}"]
                                                        ["expire_at_ms"])} for s in sessions]  # fmt: skip
        assert sorted(result.json(), key=lambda r: r["sid"]) == sorted(expected, key=lambda r: r["sid"])
        # the keys under the prefix that are not strings: skipped, and said so, as on the live store
        others = collections.Counter(k["type"] for key, k in dump.manifest["keys"][str(db)].items()
                                     if key.startswith("session:") and k["type"] != "string")  # fmt: skip
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(others.items()))
        assert result.stderr == (f"warning: skipped keys under 'session:' that are not session values: {kinds}\n"
                                 if others else "")  # fmt: skip
        show = cli("show", sessions[0]["sid"], "--store", url, "--format", "json")
        assert show.exit_code == 0 and show.json()["data"] == sessions[0]["data"]
    stats = cli("stats", "--store", dump.url, "--format", "json").json()
    assert (stats["count"], stats["serializers"]) == (7, {"msgpack": 6, "json": 1})
    assert cli("show", "expired-but-held", "--store", dump.url, "--format", "json").json()["ttl"] == 0


RDB_PY_KINDS = ("string", "list", "set", "zset", "hash")


def test_rdb_py_reads_the_same_strings_expiries_and_keys(dump: Dump) -> None:
    """rdb-py (a test dependency, see sesstool/stores/rdb_format.py) reads these
    formats too; it omits streams and module values (vector sets among them),
    which we report."""
    import rdb

    if dump.manifest["rdb_version"] >= 80:  # Valkey 9's header: rdb-py 0.4.0 reads none of it
        with pytest.raises(ValueError, match="missing REDIS magic string"):
            next(iter(rdb.RdbDecoder(dump.path)))
        return
    theirs, db = collections.defaultdict(dict), 0
    for record in rdb.RdbDecoder(dump.path):
        if record["type"] == "select_db":
            db = record["db"]
        elif "key" in record and record["type"] != "aux_field":
            theirs[db][record["key"]] = record
    for db_text, keys in dump.manifest["keys"].items():
        with open(dump.path, "rb") as fh:
            ours = {e.key: e for e in RdbReader(fh, os.path.getsize(dump.path)).entries(int(db_text), lambda k: True)}
        omitted = {key.encode() for key, k in keys.items() if k["type"] not in RDB_PY_KINDS}
        assert set(ours) - set(theirs[int(db_text)]) == omitted
        for key, record in theirs[int(db_text)].items():
            assert ours[key].expire_ms == record["expiry"], key
            if record["type"] == "string":
                assert ours[key].value == record["value"], key


# -- what the newer formats hold, damaged -------------------------------------------------


def _value_at(data: bytes, key: bytes) -> int:
    """Where the value of ``key`` starts (keys this short are one length byte)."""
    return data.index(key) + len(key)


def test_a_flipped_byte_in_a_newer_type_is_caught_by_the_checksum(tmp_path: t.Any) -> None:
    data = committed("redis-7.4.1")
    for key in (b"other:hash-listpack-ex", b"other:hash-metadata"):  # the 8-byte minimum field expiry
        flipped = bytearray(data)
        flipped[_value_at(data, key) + 2] ^= 0x40
        store = RdbStore(write(tmp_path, bytes(flipped)))
        with pytest.raises(StoreError, match="the checksum does not match: the file is damaged"):
            scan_all(store)


def test_a_truncated_newer_dump_is_one_clear_error_wherever_it_is_cut(tmp_path: t.Any) -> None:
    for name in ("redis-7.4.1", "redis-7.4.1-cluster", "valkey-8.0.1"):
        data = committed(name)
        for cut in range(9, len(data), 5):
            with pytest.raises(StoreError, match="not a readable Redis snapshot: "):
                scan_all(RdbStore(write(tmp_path, data[:cut])))


def test_what_the_reader_does_not_know_is_named(tmp_path: t.Any) -> None:
    data = committed("redis-7.4.1")
    type_at = data.index(b"other:set-listpack") - 2  # the type byte, then the key's length byte
    function_at = data.rindex(b"\xf5", 0, data.index(b"#!lua"))  # the function library's opcode
    assert data[type_at] == 20
    cases = {
        "a value of RDB type 27, which this reader does not know under a REDIS header (types 0 to 26": (type_at, 27),
        "format of Redis 7.0's release candidates (opcode 0xf6)": (function_at, 0xF6),
    }
    for message, (at, byte) in cases.items():
        with pytest.raises(StoreError, match="not a readable Redis snapshot: ") as error:
            scan_all(RdbStore(write(tmp_path, with_crc(data[:at] + bytes([byte]) + data[at + 1 :]))))
        assert message in str(error.value)
    for header, message in ((b"REDIS0080", "80 is not one this reader knows under a REDIS header (1 to 13"),
                            (b"VALKEY081", "81 is not one this reader knows under a VALKEY header (only 80")):
        with pytest.raises(StoreError, match=re.escape(f"RDB format version {message}")):
            RdbStore(write(tmp_path, header + data[9:]))


def test_valkey_9_gives_its_own_meaning_to_numbers_redis_uses(tmp_path: t.Any) -> None:
    """Type 22 is Valkey 9's hash with field TTLs (a Redis 7.4 release candidate's
    layout under a REDIS header), 23 to 25 are Redis' only, and 0xf3 is Valkey's
    slot-import record (a cluster node's, mid-migration: crafted here into the
    real dump where Valkey writes it, before the first database), where Redis 8.6
    writes key metadata."""
    valkey, redis = committed("valkey-9.1.2"), committed("redis-7.4.1")
    at = valkey.index(b"other:hash-listpack-ex") - 2  # a small hash with field TTLs
    assert valkey[at] == 22
    with pytest.raises(StoreError, match="a value of RDB type 23, which this reader does not know under a "
                                         r"VALKEY header \(types 0 to 22, as Valkey 9 write them\)"):  # fmt: skip
        scan_all(RdbStore(write(tmp_path, with_crc(valkey[:at] + b"\x17" + valkey[at + 1 :]))))
    slot_import = b"\xf3" + b"\x28" + b"j" * 40 + b"\x02" + b"\x00\x0a" + b"\x40\x64\x40\xc8"  # slots 0-10, 100-200
    crafted = _before_the_first_key(tmp_path, valkey, slot_import)
    assert _contents(crafted) == _contents(RdbStore(write(tmp_path, valkey, "valkey.rdb")))
    with pytest.raises(StoreError, match="an unknown module value opcode"):  # read as key metadata, it is not
        scan_all(_before_the_first_key(tmp_path, redis, slot_import))


def _before_the_first_key(tmp_path: t.Any, data: bytes, record: bytes) -> RdbStore:
    """A store of ``data`` with ``record`` where Valkey writes slot imports: after the aux fields."""
    with open(write(tmp_path, data), "rb") as fh:
        reader = RdbReader(fh, len(data))
        reader.header()
        first = reader.src.offset - 1
    return RdbStore(write(tmp_path, with_crc(data[:first] + record + data[first:]), "inserted.rdb"))


def _contents(store: RdbStore) -> dict[bytes, tuple[str | None, bytes | None, int | None]]:
    return {key: (item.kind, item.value, item.ttl) for key, item in scan_all(store).items()}
