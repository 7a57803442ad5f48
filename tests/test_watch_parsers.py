"""The pure logic of the change feeds: memcached's log lines (hostile server output),
Redis's notify-keyspace-events flags and its per-key event sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.errors import StoreError
from sesstool.stores.changes import CHANGED, CREATED, DELETED, EXPIRED, Change
from sesstool.stores.memcached_commands import valid_key
from sesstool.stores.memcached_watch import KnownKeys, LogEntry, LogLines, parse_line, server_version
from sesstool.stores.memcached_wire import MAX_LINE, uri_encode
from sesstool.stores.redis_watch import NEEDED, KeyEvents, enable_command, missing_flags
from tests.properties import examples

# What memcached 1.6.18 wrote for `set session:a` (tests/test_watch.py drives a real one).
STORE_LINE = (
    b"ts=1796629769.826592 gid=2 type=item_store key=session%3Aa status=stored cmd=set ttl=0 clsid=1 cfd=26 size=1"
)
DELETE_LINE = b"ts=1796629769.9 gid=3 type=deleted key=session%3Aa cmd=delete clsid=1 size=1"

keys = st.binary(min_size=1, max_size=250).filter(valid_key)


def store_line(key: bytes, cmd: bytes = b"set", status: bytes = b"stored") -> bytes:
    return (b"ts=1.5 gid=9 type=item_store key=" + uri_encode(key) + b" status=" + status + b" cmd=" + cmd
            + b" ttl=0 clsid=1 cfd=26 size=1")  # fmt: skip


def test_the_lines_memcached_writes() -> None:
    assert parse_line(STORE_LINE) == LogEntry(b"item_store", b"session:a", b"set", b"stored")
    assert parse_line(DELETE_LINE) == LogEntry(b"deleted", b"session:a", b"delete", b"")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"OK",
        STORE_LINE.replace(b"ts=1796629769.826592", b"ts=now"),
        STORE_LINE.replace(b" gid=2", b""),
        STORE_LINE.replace(b"type=item_store", b"type=item_get"),
        STORE_LINE.replace(b"key=session%3Aa", b"key=session%0D%0Aflush_all"),  # decodes to a CR LF key
        STORE_LINE.replace(b"key=session%3Aa", b"key=%"),
        STORE_LINE + b" key=other",  # a field twice
        STORE_LINE.replace(b" status=stored", b""),
        STORE_LINE.replace(b"size=1", b"size=\x1b[2J"),
        STORE_LINE.replace(b" ", b"  ", 1),
        b"ts=1 gid=1 type=item_store key=" + b"a" * 300 + b" status=stored cmd=set",
    ],
)
def test_lines_that_are_not_events(line: bytes) -> None:
    assert parse_line(line) is None


@given(st.binary(max_size=400))
@examples(500)
def test_no_line_makes_the_parser_raise_or_yield_an_invalid_key(line: bytes) -> None:
    entry = parse_line(line)
    assert entry is None or valid_key(entry.key)


@given(keys, st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend", b"cas"]))
@examples(300)
def test_every_valid_key_comes_back_as_stored(key: bytes, cmd: bytes) -> None:
    assert parse_line(store_line(key, cmd)) == LogEntry(b"item_store", key, cmd, b"stored")


@given(st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.data())
@examples(200)
def test_lines_come_out_whole_however_the_stream_is_cut(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    splitter, got = LogLines("test"), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += splitter.feed(stream[start:end])
    assert got == [line[:-1] if line.endswith(b"\r") else line for line in lines]
    assert splitter.buf == b""


def test_a_line_without_end_is_refused_past_the_bound() -> None:
    with pytest.raises(StoreError, match="log line longer"):
        LogLines("test").feed(b"x" * (MAX_LINE + 1))


def test_created_changed_and_deleted_from_the_log() -> None:
    known = KnownKeys(b"session:")
    known.keys.add(b"session:old")
    entries = [
        store_line(b"session:old"),  # listed when the watch started
        store_line(b"session:new"),  # a set of a key never seen
        store_line(b"session:new"),
        store_line(b"session:added", b"add"),
        store_line(b"session:added", b"add", b"not_stored"),  # nothing changed
        store_line(b"session:unseen", b"replace"),  # replace needs the key to exist
        store_line(b"other:key"),  # not under the prefix
        DELETE_LINE.replace(b"session%3Aa", b"session%3Anew"),
        store_line(b"session:new"),
    ]
    changes = [known.change(entry) for line in entries if (entry := parse_line(line)) is not None]
    assert changes == [
        Change(CHANGED, b"session:old"),
        Change(CREATED, b"session:new"),
        Change(CHANGED, b"session:new"),
        Change(CREATED, b"session:added"),
        None,
        Change(CHANGED, b"session:unseen"),
        None,
        Change(DELETED, b"session:new"),
        Change(CREATED, b"session:new"),
    ]


@pytest.mark.parametrize(
    ("line", "version"),
    [(b"VERSION 1.6.18", (1, 6, 18)), (b"VERSION 1.6.20", (1, 6, 20)), (b"VERSION mcrouter 0.1", None),
     (b"VERSION 1.6.18\x1b", None)],
)  # fmt: skip
def test_server_version(line: bytes, version: tuple[int, int, int] | None) -> None:
    assert server_version(line) == version


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "missing"),
    [("", "Kg$xn"), ("AKE", "n"), ("KEA", "n"), ("Ex", "Kg$n"), ("AKEn", ""), ("Kg$xn", ""), ("K$", "gxn")],
)
def test_missing_flags(current: str, missing: str) -> None:
    assert missing_flags(current) == missing


@given(st.text(alphabet="KEg$lshzxetdmnA", max_size=12))
@examples(200)
def test_enabling_adds_what_is_missing_and_removes_nothing(current: str) -> None:
    value = enable_command(current)
    assert value.startswith(current) and missing_flags(value) == ""
    assert set(value) - set(current) <= set(NEEDED)


def test_redis_events_for_one_key() -> None:
    events = KeyEvents(b"__keyspace@0__:")
    channel = b"__keyspace@0__:session:a"
    sequence = [b"new", b"set", b"expire", b"set", b"expire", b"persist", b"del", b"new", b"hset", b"set", b"expired",
                b"evicted"]  # fmt: skip
    changes = [events.feed(channel, event) for event in sequence]
    assert [c.kind if c else None for c in changes] == [
        None, CREATED, None, CHANGED, None, None, DELETED, None, None, CHANGED, EXPIRED, DELETED,
    ]  # fmt: skip
    assert events.feed(b"__keyspace@1__:session:a", b"set") is None  # another database
    assert events.feed("not bytes", b"set") is None
