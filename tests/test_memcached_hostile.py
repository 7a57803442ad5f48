"""Hostile data and hostile servers on memcached: planted keys never reach the wire as
commands, TTLs are range-checked, reads never write, and any reply a server sends is
either parsed or a one-line StoreError (exit 3), within bounded memory."""

from __future__ import annotations

import base64
import socket

import pytest

from sesstool import serializers
from tests.conftest import CliRunner
from tests.servers import ServerProcess

pytestmark = pytest.mark.network


def raw(port: int, request: bytes) -> bytes:
    """Send raw protocol and read until the reply ends (what any client can send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request + b"mn\r\n")
        out = b""
        while not out.endswith(b"MN\r\n"):
            out += sock.recv(65536)
    return out[:-4]


def plant_binary_key(port: int, key: bytes, value: bytes = b"x") -> None:
    """Store ``key`` as any client can: memcached 1.6's meta ``ms`` takes a base64 key
    (flag ``b``) and then holds the raw bytes, CR/LF and spaces included."""
    reply = raw(port, b"ms %s %d b T0\r\n%s\r\n" % (base64.b64encode(key), len(value), value))
    assert reply == b"HD\r\n"


@pytest.fixture
def mc(memcached_server: ServerProcess) -> ServerProcess:
    assert raw(memcached_server.port, b"flush_all\r\n") == b"OK\r\n"
    return memcached_server


def good_sessions(port: int, count: int) -> None:
    for i in range(count):
        value = serializers.encode({"user_id": i}, "msgpack")
        assert raw(port, b"set session:good%d 0 0 %d\r\n%s\r\n" % (i, len(value), value)) == b"STORED\r\n"


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
