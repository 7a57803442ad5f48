"""Hostile memcached servers: whatever a server sends, sesstool parses what a real
server means or raises one StoreError (exit 3), never another exception, never
an unbounded buffer, never a wait past its deadline.

The parsers read from a real socket (one end of a socket pair, or a fake server on
loopback for the CLI), fed bytes that hypothesis makes: arbitrary bytes, and
replies shaped like memcached's but wrong (cut off, numbers out of range, sizes
that lie, keys never asked for).
"""

from __future__ import annotations

import socket
import threading
import time
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sesstool.errors import StoreError
from sesstool.stores import memcached_commands as commands
from sesstool.stores.memcached_replies import mg_columns, read_gets, read_idle, read_mg, read_stat, speaks_meta
from sesstool.stores.memcached_wire import FLAG_ZLIB, MAX_LINE, MAX_VALUE, CasToken, Connection, iter_dump
from tests.conftest import CliRunner

HYPOTHESIS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [b"session:a", b"session:b", b"session:c"]


def connection_fed(reply: bytes, **options: t.Any) -> Connection:
    """A connection whose server sends ``reply`` and then closes."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)

    def serve() -> None:
        try:
            theirs.sendall(reply)
            theirs.shutdown(socket.SHUT_WR)
            while theirs.recv(65536):  # take whatever sesstool sends
                pass
        except OSError:
            pass
        finally:
            theirs.close()

    threading.Thread(target=serve, daemon=True).start()
    return Connection("fake", 11211, timeout=5, connect_timeout=5, sock=ours, **options)


PARSERS: dict[str, t.Callable[[Connection], object]] = {
    "mg": lambda conn: read_mg(conn, KEYS, CasToken),
    "mg columns": lambda conn: mg_columns(conn, KEYS),
    "gets": lambda conn: read_gets(conn, KEYS, CasToken, None),
    "idle": lambda conn: read_idle(conn, KEYS),
    "stats": lambda conn: read_stat(conn, b"crawler_reclaimed"),
    "version": lambda conn: speaks_meta(conn, conn.readline()),
    "metadump": lambda conn: list(iter_dump(conn, retry_busy=lambda: False)),
}


def parse_or_store_error(name: str, reply: bytes) -> object:
    conn = connection_fed(reply)
    try:
        return PARSERS[name](conn)
    except StoreError as e:
        assert conn.sock is None, "a connection out of step must be closed"
        assert "\n" not in str(e) and "\r" not in str(e) and "fake:11211" in str(e)
        return e
    finally:
        conn.close()


# Replies shaped like memcached's, with every part drawn from values real servers
# send and values no real server sends.
NUMBERS = st.one_of(
    st.integers(0, 40),
    st.integers(-(2**40), 2**70),
    st.sampled_from([2**31, 2**32, 2**64, 10**30, MAX_VALUE + 1]),
).map(lambda n: str(n).encode())
TOKENS = st.one_of(
    NUMBERS,
    st.sampled_from([b"", b"-", b"x", b"1e9", b"\xff", b"9" * 5000, b" ", b"\t"]),
)
LINES = st.one_of(
    st.builds(lambda n, a, b, c: b"VA %s t%s c%s f%s" % (n, a, b, c), NUMBERS, TOKENS, TOKENS, TOKENS),
    st.builds(lambda n, rest: b"VA %s %s" % (n, rest), TOKENS, st.binary(max_size=20)),
    st.builds(
        lambda k, f, n, c: b"VALUE %s %s %s %s" % (k, f, n, c),
        st.sampled_from(KEYS + [b"other"]),
        TOKENS,
        NUMBERS,
        TOKENS,
    ),  # fmt: skip
    st.builds(lambda a, b: b"HD l%s t%s c1" % (a, b), TOKENS, TOKENS),
    st.builds(lambda name, v: b"STAT %s %s" % (name, v), st.sampled_from([b"crawler_reclaimed", b"pid"]), TOKENS),
    st.builds(lambda n, a: b"key=session%%3A%s exp=%s la=1 cas=1" % (n, a), TOKENS, TOKENS),
    st.sampled_from(
        [
            b"EN",
            b"END",
            b"ERROR",
            b"CLIENT_ERROR bad \x1b[31m",
            b"SERVER_ERROR out of memory",
            b"BUSY",
            b"VERSION 1.6.18",
            b"VERSION x",
            b"OK",
            b"",
            b"\x00" * 10,
        ]  # fmt: skip
    ),
    st.binary(max_size=40),
)
REPLIES = st.lists(st.tuples(LINES, st.binary(max_size=30)), max_size=8).map(
    lambda parts: b"".join(line + b"\r\n" + (value + b"\r\n" if value else b"") for line, value in parts)
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@HYPOTHESIS
@given(reply=st.binary(max_size=400))
def test_arbitrary_bytes_are_parsed_or_a_store_error(name: str, reply: bytes) -> None:
    parse_or_store_error(name, reply)


@pytest.mark.parametrize("name", sorted(PARSERS))
@HYPOTHESIS
@given(reply=REPLIES)
def test_replies_shaped_like_memcacheds_are_parsed_or_a_store_error(name: str, reply: bytes) -> None:
    result = parse_or_store_error(name, reply)
    if name in ("mg", "gets") and isinstance(result, list):
        for item in result:
            assert item.key in KEYS  # a reply never brings a key sesstool did not ask for
            assert item.value is not None and len(item.value) <= MAX_VALUE


@HYPOTHESIS
@given(values=st.lists(st.tuples(st.binary(max_size=50), st.integers(-1, 2**31 - 1), st.integers(0, 2**32 - 1)),
                       min_size=3, max_size=3))  # fmt: skip
def test_well_formed_mg_replies_round_trip(values: list[tuple[bytes, int, int]]) -> None:
    values = [(value, ttl, flags & ~FLAG_ZLIB) for value, ttl, flags in values]
    reply = b"".join(
        b"VA %d t%d c%d f%d\r\n%s\r\n" % (len(value), ttl, cas, flags, value)
        for cas, (value, ttl, flags) in enumerate(values, start=1)
    )
    conn = connection_fed(reply + b"EN\r\n")
    items = read_mg(conn, KEYS, CasToken)
    conn.close()
    assert [item.value for item in items] == [v for v, _, _ in values]
    assert [item.ttl for item in items] == [None if ttl < 0 else ttl for _, ttl, _ in values]
    assert [int(item.version.token) for item in items] == [1, 2, 3]
    assert [item.version.flags for item in items] == [f for _, _, f in values]


@HYPOTHESIS
@given(values=st.lists(st.one_of(st.none(), st.tuples(
           st.one_of(st.binary(max_size=50), st.sampled_from([b"\r\n", b"a\r\nMN\r\n", b"\r\nVA 1 t-1 c1 f0\r\nx"])),
           st.integers(-1, 2**31 - 1))), min_size=3, max_size=3))  # fmt: skip
def test_a_listing_reads_what_read_mg_reads(values: list[tuple[bytes, int] | None]) -> None:
    # The listing's batch-at-once path must agree with the reply-by-reply parser on
    # every batch: misses, and values holding CR LF, the end marker, or text shaped
    # like a further reply (which must not pass for one).
    reply = b"".join(b"EN\r\n" if hit is None else b"VA %d t%d c7 f0\r\n%s\r\n" % (len(hit[0]), hit[1], hit[0])
                     for hit in values)  # fmt: skip
    conn = connection_fed(reply * 2 + b"MN\r\n")
    items = read_mg(conn, KEYS, CasToken)
    conn.close()
    conn = connection_fed(reply + b"MN\r\n" + reply + b"MN\r\n")
    for _ in range(2):  # two batches in one stream: the first must end exactly at its marker
        keys, found, pttls, kinds = mg_columns(conn, KEYS)
        assert keys == [item.key for item in items] and found == [item.value for item in items]
        assert pttls == [-1 if item.ttl is None else item.ttl * 1000 for item in items] and kinds == {}
    conn.close()


def test_a_listing_batch_without_its_end_marker_is_a_store_error() -> None:
    error = parse_or_store_error("mg columns", b"VA 1 t-1 c1 f0\r\nx\r\n" * 3 + b"EN\r\n")
    assert isinstance(error, StoreError)


def test_a_value_header_larger_than_the_bound_fails_at_once() -> None:
    started = time.monotonic()
    for name, reply in (("mg", b"VA %d t-1 c1 f0\r\n" % (MAX_VALUE + 1)),
                        ("gets", b"VALUE session:a 0 99999999999 1\r\n")):  # fmt: skip
        error = parse_or_store_error(name, reply + b"x" * 1000)
        assert isinstance(error, StoreError) and "more than sesstool reads" in str(error)
    assert time.monotonic() - started < 2


def test_a_line_without_an_end_is_cut_at_the_bound() -> None:
    for name in ("mg", "stats", "metadump"):
        error = parse_or_store_error(name, b"VA " + b"9" * (MAX_LINE + 10))
        assert isinstance(error, StoreError) and "longer than" in str(error), name


def test_an_error_reply_is_quoted_without_control_bytes() -> None:
    error = parse_or_store_error("stats", b"SERVER_ERROR \x1b]52;c;aGk=\x07 \xff\r\n")
    assert isinstance(error, StoreError)
    assert "\x1b" not in str(error) and "\x07" not in str(error) and str(error).isascii()


# -- deadlines ----------------------------------------------------------------------------


def trickling_server(stop: threading.Event) -> int:
    """A server that answers every connection one byte every 50 ms, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"V")
                except OSError:
                    break
            conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_a_server_answering_a_byte_at_a_time_meets_the_deadline() -> None:
    from sesstool.stores.memcached import MemcachedStore

    stop = threading.Event()
    port = trickling_server(stop)
    try:
        store = MemcachedStore([("127.0.0.1", port)], timeout=5)
        started = time.monotonic()
        store.set_deadline(started + 0.5)
        with pytest.raises(StoreError, match="did not finish in time"):
            store.get(b"session:a")
        assert time.monotonic() - started < 2.5  # each byte came well within the 5 s timeout
        store.close()
    finally:
        stop.set()


# -- the CLI against a hostile server ---------------------------------------------------------


def fake_memcached(answers: dict[bytes, bytes]) -> tuple[int, threading.Event]:
    """A server that answers each command line starting with a key of ``answers``."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def handle(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    for start, answer in answers.items():
                        if line.startswith(start):
                            conn.sendall(answer)
                            break

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), stop


@pytest.mark.parametrize(
    "mg_answer",
    [
        b"VA 5 t-1 c1 f0\r\nab",
        b"VA 99999999999 t-1 c1 f0\r\n",
        b"VA x\r\n",
        b"\x1b[2J garbage\r\n",
        b"VA 2 t9999999999999999999999 c1 f0\r\nab\r\n",
    ],  # fmt: skip
)
def test_list_against_a_hostile_server_exits_3_with_one_line(cli: CliRunner, mg_answer: bytes) -> None:
    dump = b"key=session%3Aa exp=-1 la=1 cas=1 fetch=no cls=1 size=70\nEND\r\n"
    port, stop = fake_memcached({b"version": b"VERSION 1.6.18\r\n", b"lru_crawler metadump": dump, b"mg": mg_answer,
                                  b"mn": b"MN\r\n"})  # fmt: skip
    try:
        result = cli("list", "--store", f"memcached://127.0.0.1:{port}?timeout=2", "--format", "json")
    finally:
        stop.set()
    assert result.exit_code == 3, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr and f"127.0.0.1:{port}" in result.stderr


def test_keys_a_hostile_dump_lists_are_checked_like_stored_ones(cli: CliRunner) -> None:
    """A server can print any key in its dump, longer than memcached allows or with
    bytes no real dump holds: each is skipped with a warning, the rest listed."""
    long_key = b"session%3A" + b"a" * 300
    dump = b"key=session%3Agood exp=-1\nkey=" + long_key + b" exp=-1\nkey=session%3A\x01x exp=-1\nEND\r\n"
    port, stop = fake_memcached({
        b"version": b"VERSION 1.6.18\r\n",
        b"lru_crawler metadump": dump,
        b"mg session:good ": b"VA 2 t-1 c1 f0\r\n{}\r\n",
        b"mg": b"EN\r\n",
        b"mn": b"MN\r\n",  # a listing ends each batch of reads with a no-op, as a real server answers
    })  # fmt: skip
    try:
        result = cli("list", "--store", f"memcached://127.0.0.1:{port}?timeout=2", "--format", "ndjson")
    finally:
        stop.set()
    assert result.exit_code == 0, result.stderr
    assert [record["sid"] for record in result.ndjson()] == ["good"]
    assert result.stderr.count("warning: skipped an invalid memcached key") == 2
    assert "\x01" not in result.stderr


def test_request_builders_only_make_what_they_were_given() -> None:
    """What builders make is exactly one command line a key (the wire's framing)."""
    request = commands.mg_values(KEYS)
    assert request.count(b"\r\n") == len(KEYS) and not request.writes
    assert commands.delete(KEYS).writes and commands.crawl_all().writes
    with pytest.raises(Exception, match="range"):
        commands.touch(b"session:a", 2**31)
    with pytest.raises(Exception, match="range"):
        commands.cas([(b"session:a", 0, 0, b"v", 2**64)])
