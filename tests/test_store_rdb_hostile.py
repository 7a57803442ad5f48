"""The Redis snapshot store (``rdb://``) on hostile files: real dumps of the real
redis-server with bytes changed (and, where a test needs the parser to get past
the end, the CRC64 recomputed), and the byte-level pieces (CRC64, LZF) alone.

Each file is one clear :class:`StoreError` (exit 3), or, for one bad value, that
session reported as unknown while the rest reads on; nothing allocates past the
budgets.
"""

from __future__ import annotations

import tempfile
import tracemalloc
import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.errors import StoreError
from sesstool.stores.rdb import RdbStore
from sesstool.stores.rdb_codec import crc64, lzf_decompress, module_type_name
from sesstool.stores.rdb_format import Budget
from tests.conftest import CliRunner
from tests.properties import examples
from tests.rdbfiles import committed, scan_all, with_crc, write
from tests.servers import ServerProcess, snapshot

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
        store_path = write(tmp_path, small_dump[:cut])
        with pytest.raises(StoreError, match="not a readable Redis snapshot: "):
            store = RdbStore(store_path)
            scan_all(store)


def test_a_damaged_checksum_is_an_error_and_a_disabled_one_is_not(small_dump: bytes, tmp_path: t.Any) -> None:
    flipped = bytearray(small_dump)
    flipped[small_dump.index(b"\x81\xa1a\x01") + 3] ^= 0x01  # a byte of a value: only the CRC notices
    store = RdbStore(write(tmp_path, bytes(flipped)))
    with pytest.raises(StoreError, match="the checksum does not match: the file is damaged"):
        scan_all(store)
    unchecked = RdbStore(write(tmp_path, small_dump[:-8] + bytes(8), "nocrc.rdb"))  # rdbchecksum no
    assert len(scan_all(unchecked)) == 5


def test_a_huge_declared_length_allocates_nothing(small_dump: bytes, tmp_path: t.Any) -> None:
    at = small_dump.index(b"session:a") + len(b"session:a")
    assert small_dump[at] == 4  # the value's length
    huge = with_crc(small_dump[:at] + b"\x81" + (1 << 62).to_bytes(8, "big") + small_dump[at + 1 :])
    store = RdbStore(write(tmp_path, huge))
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match="runs past the end of the file"):
            scan_all(store)
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
    path = write(tmp_path, with_crc(bytes(corrupt)))
    result = cli("list", "--store", "rdb://" + path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    by_sid = {r["sid"]: r for r in result.json()}
    assert by_sid["lzf"]["serializer"] == "unknown" and by_sid["lzf"]["size"] == 0
    assert by_sid["a"]["serializer"] == "msgpack" and by_sid["n"]["ttl"] is None
    assert "the value of 'session:lzf' cannot be read (corrupt LZF data" in result.stderr


def test_an_lzf_bomb_stops_at_the_value_budget(small_dump: bytes, tmp_path: t.Any) -> None:
    warned: list[str] = []
    store = RdbStore(write(tmp_path, small_dump), warn=warned.append, budget=Budget(value_limit=100))
    items = scan_all(store)
    assert items[b"session:lzf"].value == b"" and "over the 100-byte budget" in warned[0]
    assert items[b"session:a"].value == b"\x81\xa1a\x01"


def test_keys_over_the_key_budget_are_skipped_with_a_warning(small_dump: bytes, tmp_path: t.Any) -> None:
    warned: list[str] = []
    store = RdbStore(write(tmp_path, small_dump), warn=warned.append, budget=Budget(key_limit=9))
    assert sorted(scan_all(store)) == [b"session:a", b"session:h", b"session:n", b"session:x"]
    assert warned == [f"rdb://{store.path}: skipped 1 key longer than 9 bytes (no session key is that long)"]


def test_plain_values_and_keys_keep_to_the_budget_too(small_dump: bytes, tmp_path: t.Any) -> None:
    # Plain strings take the reader's fast path: it must apply the same budgets.
    warned: list[str] = []
    items = scan_all(RdbStore(write(tmp_path, small_dump), warn=warned.append, budget=Budget(value_limit=3)))
    assert items[b"session:a"].value == b"" and "over the 3-byte budget" in warned[0]
    assert items[b"session:n"].value == b"42"
    warned.clear()
    store = RdbStore(write(tmp_path, small_dump), warn=warned.append, budget=Budget(key_limit=8))
    assert scan_all(store) == {}
    assert warned == [f"rdb://{store.path}: skipped 5 keys longer than 8 bytes (no session key is that long)"]


#: newer formats' dumps beside the live 7.0 one: field-TTL hashes (Redis' and Valkey's), module values
#: and aux, vector sets, key metadata, idempotent stream producers, slot info
NEWER = [committed(name) for name in ("redis-7.4.1-cluster", "redis-8.6.3", "valkey-9.1.2")]


@examples(300)
@given(
    which=st.integers(0, len(NEWER)),
    changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    fix_crc=st.booleans(),
)
def test_mutated_dumps_never_crash_nor_allocate_past_the_budget(
    small_dump: bytes, which: int, changes: list[tuple[int, int]], cut: int | None, fix_crc: bool
) -> None:
    data = bytearray(NEWER[which - 1] if which else small_dump)
    for where, byte in changes:
        data[9 + where % (len(data) - 9)] = byte  # past the header, which a test above covers
    blob = with_crc(bytes(data)) if fix_crc else bytes(data)
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    with tempfile.TemporaryDirectory() as directory:
        path = write(directory, blob)
        tracemalloc.start()
        try:
            store = RdbStore(path, warn=lambda message: None, budget=Budget(value_limit=1 << 16, key_limit=1 << 10))
            scan_all(store)
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
