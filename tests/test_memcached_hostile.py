"""Hostile data and hostile servers on memcached: planted keys never reach the wire as
commands, TTLs are range-checked, reads never write, and any reply a server sends is
either parsed or a one-line StoreError (exit 3), within bounded memory."""

from __future__ import annotations

import base64
import socket
import threading
import typing as t

import pytest

from sesstool.codecs import serializers
from tests.conftest import CliRunner
from tests.servers import ServerProcess, memcached_raw, wait_for_memcached_clock

pytestmark = pytest.mark.network


def plant_binary_key(port: int, key: bytes, value: bytes = b"x") -> None:
    """Store ``key`` as any client can: memcached 1.6's meta ``ms`` takes a base64 key
    (flag ``b``) and then holds the raw bytes, CR/LF and spaces included."""
    reply = memcached_raw(port, b"ms %s %d b T0\r\n%s\r\n" % (base64.b64encode(key), len(value), value))
    assert reply == b"HD\r\n"


@pytest.fixture
def mc(memcached_server: ServerProcess) -> ServerProcess:
    assert memcached_raw(memcached_server.port, b"flush_all\r\n") == b"OK\r\n"
    return memcached_server


def good_sessions(port: int, count: int) -> None:
    for i in range(count):
        value = serializers.encode({"user_id": i}, "msgpack")
        assert memcached_raw(port, b"set session:good%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"


INJECTIONS = [
    b"session:x\r\nflush_all\r\n",
    b"session:x flush_all",
    b"session:x\nflush_all\n",
    b"session:x\r\nmd session:good0\r\n",
    b"session:x\tstats\x7f",
    b"session:\x00\x1b]52;c;aGk=\x07",
]


@pytest.mark.parametrize("planted", INJECTIONS, ids=range(len(INJECTIONS)))
@pytest.mark.parametrize("command", [["list"], ["list", "--data"], ["stats"], ["export"]])
def test_a_planted_key_never_runs_as_a_command_during_a_read(
    cli: CliRunner, mc: ServerProcess, planted: bytes, command: list[str]
) -> None:
    good_sessions(mc.port, 3)
    plant_binary_key(mc.port, planted)
    url = f"memcached://127.0.0.1:{mc.port}"
    # export writes ndjson whatever --format says (and on main takes no --format).
    result = cli(*command, "--store", url, *([] if command == ["export"] else ["--format", "ndjson"]))
    assert result.exit_code == 0, result.stderr
    # Every other session is still there (no flush_all, no delete ran) ...
    after = cli("list", "--store", url, "--format", "json")
    assert sorted(r["sid"] for r in after.json()) == ["good0", "good1", "good2"]
    # ... the listing itself shows only the good ones, and says what it skipped, escaped.
    if command[0] != "stats":
        assert sorted(r["sid"] for r in result.ndjson()) == ["good0", "good1", "good2"]
    else:
        assert result.ndjson()[0]["count"] == 3
    warnings = [line for line in result.stderr.splitlines() if "invalid memcached key" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")
    assert not any(ch in result.stderr for ch in "\r\t\x00\x1b\x07\x7f")


# -- TTLs memcached cannot hold ----------------------------------------------------------

# 2**31 (January 2038) and later: memcached keeps exptime as a signed 32-bit number,
# so sent as is such an expiry wraps to "already expired" (2**31) or "never" (2**32).
FAR_FUTURE = ["--at", "2040-01-01T00:00:00+00:00"], ["--at", "4294967296"], ["--in", "5000d"]


@pytest.mark.parametrize("when", FAR_FUTURE, ids=["iso", "unix", "duration"])
def test_an_expiry_memcached_cannot_hold_is_refused_and_the_session_kept(
    cli: CliRunner, mc: ServerProcess, when: list[str]
) -> None:
    good_sessions(mc.port, 1)
    url = f"memcached://127.0.0.1:{mc.port}"
    result = cli("expire", "--store", url, *when, "--", "good0")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and "2038" in result.stderr
    assert b"VA" in memcached_raw(mc.port, b"mg session:good0 v\r\n")  # not expired by a wrapped exptime
    assert b"t-1" in memcached_raw(mc.port, b"mg session:good0 t\r\n")  # and its expiry untouched


def test_ttls_are_range_checked_before_anything_is_sent(mc: ServerProcess) -> None:
    from sesstool.errors import InvalidInput
    from sesstool.stores.memcached import MemcachedStore
    from sesstool.stores.memcached_commands import MAX_EXPTIME, THIRTY_DAYS, memcached_exptime

    store = MemcachedStore([("127.0.0.1", mc.port)])
    now = 1_800_000_000
    assert memcached_exptime(THIRTY_DAYS, now) == THIRTY_DAYS
    assert memcached_exptime(THIRTY_DAYS + 1, now) == now + THIRTY_DAYS + 1
    assert memcached_exptime(MAX_EXPTIME - now, now) == MAX_EXPTIME
    with pytest.raises(InvalidInput, match="2038"):
        memcached_exptime(MAX_EXPTIME - now + 1, now)
    for ttl in (0, -5, 400 * 365 * 86400):
        with pytest.raises(InvalidInput):
            store.set(b"session:new", b"v", ttl)
        with pytest.raises(InvalidInput):
            store.set_many([(b"session:ok", b"v", 60), (b"session:new", b"v", ttl)])
    # A batch with one bad entry writes none of them.
    assert memcached_raw(mc.port, b"mg session:ok v\r\nmg session:new v\r\n") == b"EN\r\nEN\r\n"
    store.close()


# -- reads cannot write -------------------------------------------------------------------


def test_a_read_only_store_refuses_every_write_before_sending_it(mc: ServerProcess) -> None:
    from sesstool.errors import InvalidInput
    from sesstool.stores.memcached import open_memcached

    good_sessions(mc.port, 2)
    store = open_memcached(f"memcached://127.0.0.1:{mc.port}", read_only=True)
    items = [item for batch in store.scan(b"session:") for item in batch]
    assert len(items) == 2 and store.get(b"session:good0") is not None
    writes: list[t.Callable[[], object]] = [
        lambda: store.set(b"session:good0", b"x", None),
        lambda: store.add(b"session:new", b"x", 60),
        lambda: store.delete([b"session:good0"]),
        lambda: store.delete_if_unchanged(items),
        lambda: store.compare_and_set(items[0], b"x"),
        lambda: store.expire(b"session:good0", 1),
        lambda: store.persist(b"session:good0"),
        lambda: store.set_many([(b"session:new", b"x", None)]),
        lambda: list(store.unlink_prefix(b"session:")),
        lambda: store.reclaim_expired(),
    ]
    for write in writes:
        with pytest.raises(InvalidInput, match="read-only"):
            write()
    assert len([item for batch in store.scan(b"session:") for item in batch]) == 2
    store.close()


def test_a_read_connection_sends_only_requests_that_read(mc: ServerProcess) -> None:
    from sesstool.errors import StoreError
    from sesstool.stores import memcached_commands as commands
    from sesstool.stores.memcached_wire import Connection

    good_sessions(mc.port, 1)
    conn = Connection("127.0.0.1", mc.port, timeout=5, connect_timeout=5, read_only=True)
    with pytest.raises(StoreError, match="read-only"):
        conn.send(commands.delete([b"session:good0"]))
    with pytest.raises(TypeError):
        conn.send(b"flush_all\r\n")  # type: ignore[arg-type]
    assert conn.call(commands.version(), 1, "version")[0].startswith(b"VERSION")
    conn.close()
    assert b"VA" in memcached_raw(mc.port, b"mg session:good0 v\r\n")


@pytest.mark.parametrize("key", [b"", b"a" * 251, b"a b", b"a\rb", b"a\nb", b"a\x00", b"a\x7f", b"a\tb"])
def test_every_builder_refuses_a_key_memcached_cannot_carry(key: bytes) -> None:
    from sesstool.stores import memcached_commands as commands

    builders: list[t.Callable[[], object]] = [
        lambda: commands.mg_values([b"ok", key]),
        lambda: commands.mg_idle([key]),
        lambda: commands.gets([b"ok", key]),
        lambda: commands.store(b"set", [(key, b"v", 0)]),
        lambda: commands.cas([(key, 0, 0, b"v", 1)]),
        lambda: commands.delete([key]),
        lambda: commands.md_if([(key, 1)]),
        lambda: commands.touch(key, 0),
    ]
    for build in builders:
        with pytest.raises(commands.InvalidKey) as caught:
            build()
        assert caught.value.exit_code == 2
        assert not any(ch in str(caught.value) for ch in "\r\n\x00\x7f\t")


# -- properties of the parsers and builders -------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sesstool.errors import InvalidInput  # noqa: E402
from sesstool.stores import memcached_commands as commands  # noqa: E402
from sesstool.stores.memcached_listing import InvalidKeys, decode_keys  # noqa: E402
from sesstool.stores.memcached_wire import uri_encode  # noqa: E402
from tests.properties import examples  # noqa: E402

ANY_KEY = st.one_of(
    st.binary(max_size=260),
    st.text(max_size=80).map(str.encode),
    st.lists(st.sampled_from([b"a", b"%", b"%0D", b"%0A", b"\r\n", b" ", b"\xff", b"\x7f", b"\x00"]), max_size=12).map(
        b"".join
    ),  # fmt: skip
)


@settings(deadline=None)
@given(keys=st.lists(ANY_KEY, min_size=1, max_size=6))
def test_a_request_holds_exactly_one_line_a_key_or_is_refused(keys: list[bytes]) -> None:
    for build in (commands.mg_values, commands.mg_idle, commands.delete):
        try:
            request = build(keys)
        except commands.InvalidKey as e:
            assert not commands.valid_key(e.key) and e.key in keys
            assert str(e).isascii() and not any(c in str(e) for c in "\r\n\t\x00")
            continue
        assert all(commands.valid_key(key) for key in keys)
        lines = request.split(b"\r\n")
        assert lines[-1] == b"" and len(lines) == len(keys) + 1
        assert [line.split(b" ")[1] for line in lines[:-1]] == keys


@settings(deadline=None)
@given(rests=st.lists(ANY_KEY, min_size=1, max_size=8), prefix=st.sampled_from([b"session:", b"a%b:", b""]))
def test_listed_keys_round_trip_through_the_dump_encoding_or_are_reported(rests: list[bytes], prefix: bytes) -> None:
    warned: list[str] = []
    keys = decode_keys(prefix, [uri_encode(rest) for rest in rests], InvalidKeys(warned.append), "server")
    expected = [prefix + rest for rest in rests if commands.valid_key(prefix + rest)]
    assert list(keys) == expected
    assert len(warned) == min(len(rests) - len(expected), 5)
    assert all(line.isascii() and "\n" not in line and "\r" not in line for line in warned)


@settings(deadline=None)
@given(ttl=st.one_of(st.none(), st.integers(), st.integers(-10, 2 * commands.THIRTY_DAYS)),
       now=st.integers(0, 2**31))  # fmt: skip
def test_every_exptime_sent_is_one_memcached_can_hold(ttl: int | None, now: int) -> None:
    try:
        exptime = commands.memcached_exptime(ttl, now)
    except InvalidInput as e:
        assert ttl is not None and ttl > commands.THIRTY_DAYS and "2038" in str(e)
        return
    assert -1 <= exptime <= commands.MAX_EXPTIME
    if ttl is not None and 0 < ttl <= commands.THIRTY_DAYS:
        assert exptime == ttl  # relative
    elif ttl is not None and ttl > commands.THIRTY_DAYS:
        assert exptime == now + ttl  # absolute, the 30-day rule


@settings(deadline=None)
@given(url=st.one_of(
    st.text(max_size=60).map(lambda rest: "memcached://" + rest),
    st.builds(lambda h, p, q: f"memcached://{h}:{p}?{q}", st.sampled_from(["a", "[::1]", "", "a,b"]),
              st.one_of(st.integers(-5, 10**7).map(str), st.text(max_size=8)),
              st.sampled_from(["", "timeout=nan", "timeout=inf", "timeout=-1", "timeout=1e400",
                               "connect_timeout=0", "hash=crc32", "timeout=2", "x=1"])),
))  # fmt: skip
def test_store_urls_open_or_are_invalid_input(url: str) -> None:
    from sesstool.stores.memcached import open_memcached

    try:
        store = open_memcached(url)
    except InvalidInput as e:
        assert str(e)
        return
    assert all(0 < server.port < 65536 and server.host for server in store.servers)
    assert all(0 < server.timeout <= 3600 and 0 < server.connect_timeout <= 3600 for server in store.servers)


VALID_KEY_BYTES = st.binary(min_size=1, max_size=40).filter(lambda key: commands.valid_key(b"session:" + key))


@examples(50)
@given(rests=st.lists(VALID_KEY_BYTES, min_size=1, max_size=5, unique=True))
def test_any_valid_key_is_listed_and_read_back_from_a_real_server(memcached_server: ServerProcess,
                                                                  rests: list[bytes]) -> None:  # fmt: skip
    from sesstool.stores.memcached import MemcachedStore

    memcached_raw(memcached_server.port, b"flush_all\r\n")
    for rest in rests:
        assert memcached_raw(memcached_server.port, b"set session:%s 0 0 1\r\nx\r\n" % rest) == b"STORED\r\n"
    store = MemcachedStore([("127.0.0.1", memcached_server.port)])
    listed = sorted(item.key for batch in store.scan(b"session:") for item in batch)
    store.close()
    assert listed == sorted(b"session:" + rest for rest in rests)


@pytest.mark.parametrize("selector", [["--where", "user_id=1"], ["--idle", "0"], ["--all"]])
def test_purge_skips_a_planted_key_and_deletes_only_what_it_selected(
    cli: CliRunner, mc: ServerProcess, selector: list[str]
) -> None:
    good_sessions(mc.port, 3)
    plant_binary_key(mc.port, b"session:x\r\nflush_all\r\n")
    url = f"memcached://127.0.0.1:{mc.port}"
    if selector[0] == "--idle":
        wait_for_memcached_clock(mc.port, 1)  # let the items be idle > 0 s
    result = cli("purge", *selector, "--yes", "--store", url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("warning: skipped an invalid memcached key") >= 1
    left = sorted(r["sid"] for r in cli("list", "--store", url, "--format", "json").json())
    assert left == ([] if selector[0] != "--where" else ["good0", "good2"])
    assert result.json()["deleted"] == (1 if selector[0] == "--where" else 3)


# -- a reply lost after the write was done ---------------------------------------------------


def reply_dropping_proxy(upstream: int, stop: threading.Event) -> int:
    """A proxy to a real memcached that passes every command on, but hangs up
    instead of passing back the reply to a ``cas`` (the write is done; the
    client never hears so)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def relay(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", upstream), timeout=5) as server:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    request = client.recv(65536)
                except OSError:
                    return
                if not request:
                    return
                server.sendall(request)
                reply = b""
                while not reply.endswith(b"\r\n"):
                    try:
                        reply += server.recv(65536)
                    except TimeoutError:
                        break
                if request.startswith(b"cas "):
                    return  # hang up: the reply is lost
                client.sendall(reply)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=relay, args=(client,), daemon=True).start()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_a_cas_whose_reply_is_lost_is_read_back_and_reported_as_written(cli: CliRunner, mc: ServerProcess) -> None:
    good_sessions(mc.port, 1)
    stop = threading.Event()
    port = reply_dropping_proxy(mc.port, stop)
    try:
        url = f"memcached://127.0.0.1:{port}?timeout=2"
        result = cli("edit", "--store", url, "--set", "user_id=7", "--", "good0")
    finally:
        stop.set()
    assert result.exit_code == 0, result.stderr
    value = memcached_raw(mc.port, b"mg session:good0 v\r\n").split(b"\r\n")[1]
    assert serializers.decode(value)[1] == {"user_id": 7}
