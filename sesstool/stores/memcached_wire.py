"""memcached's text protocol on a plain socket: connections, lines, values, the dump.

pymemcache has no ``lru_crawler metadump`` and no meta commands (``mg``/``md``),
and its per-key Python objects would dominate a listing of a million items, so
the store speaks the protocol itself. This module knows lines, values and error
replies, bounds what a server can make it hold, and turns every socket failure
into a one-line :class:`~sesstool.errors.StoreError` that names the server. What
is sent is built in :mod:`~sesstool.stores.memcached_commands`; what replies mean
is parsed in :mod:`~sesstool.stores.memcached_replies`.

Every socket gets its timeouts here (:class:`Connection`), and only here.

Client flags, as python-memcached, pylibmc and pymemcache's serdes set them:

- ``0``: raw bytes (Flask-Session 0.7+ with any client; 0.5 and older store
  ``pickle.dumps(dict(session), 0)`` as bytes, also flags 0).
- ``1``: pickled by the client (a dict handed to ``set``); the value is pickle bytes,
  read by sesstool's safe unpickler. Writes keep the flag and must stay pickle.
- ``8``: zlib-compressed by the client (python-memcached and pylibmc
  ``min_compress_len``, pymemcache ``CompressedSerde``); decompressed with a size
  bound, and written back uncompressed (every client reads that). A value that does
  not decompress within the bound is left as stored (and so decodes as ``unknown``).
- ``16`` (text), ``2``/``4`` (int/long): not sessions; the bytes are shown as stored.
"""

from __future__ import annotations

import socket
import time
import typing as t
from urllib.parse import unquote_to_bytes

from sesstool.codecs.compression import InflateError, inflate
from sesstool.errors import StoreError
from sesstool.stores import memcached_commands as commands
from sesstool.stores.memcached_commands import Request

RECV_SIZE = 256 * 1024
#: Longest reply line read (a metadump line is under 1 KiB, an error line shorter).
MAX_LINE = 64 * 1024
#: Largest value read: memcached's item limit is 1 MiB unless raised (``-I``, at
#: most 1 GiB); a session is far smaller, and a hostile header must not make
#: sesstool wait for, or hold, a gigabyte.
MAX_VALUE = 64 * 1024 * 1024
ERROR_REPLIES = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")

# Client flags as python-memcached, pylibmc and pymemcache set them (see
# sesstool.stores.memcached for what each means to sesstool).
FLAG_PICKLE = 1 << 0
FLAG_INTEGER = 1 << 1
FLAG_LONG = 1 << 2
FLAG_ZLIB = 1 << 3
FLAG_TEXT = 1 << 4
#: Largest decompressed value; a zlib bomb stops here (memcached's own item limit
#: is 1 MiB by default, 1 GiB at most).
MAX_DECOMPRESSED = 32 * 1024 * 1024

# memcached's own uriencode(): every byte but ASCII letters, digits and -._~ is %XX.
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def uri_encode(raw: bytes) -> bytes:
    """A key as ``lru_crawler metadump`` prints it (so a prefix can be matched encoded)."""
    return b"".join(bytes([b]) if b in _URI_SAFE else b"%%%02X" % b for b in raw)


def uri_decode(encoded: bytes) -> bytes:
    return unquote_to_bytes(encoded) if b"%" in encoded else encoded


def server_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LostConnection(StoreError):
    """The connection failed or closed mid-command: what was sent may have been done."""


class Connection:
    """One TCP connection to one memcached server, opened on first use.

    ``buf[pos:]`` holds bytes received but not yet consumed. After any error the
    socket is closed (a half-read reply would poison the next command) and the
    next command reconnects.

    Only a :class:`~sesstool.stores.memcached_commands.Request` is sent, and a
    connection opened ``read_only`` refuses one that writes. A server's replies are
    bounded: a line longer than :data:`MAX_LINE` or a value larger than
    :data:`MAX_VALUE` is a :class:`StoreError`, never an ever-growing buffer.

    ``timeout`` bounds each connect, send and receive; ``deadline`` (a
    :func:`time.monotonic` instant) bounds them all together, so a server that
    answers a byte at a time cannot keep a command waiting.
    """

    def __init__(self, host: str, port: int, *, timeout: float, connect_timeout: float,
                 read_only: bool = False, deadline: float | None = None,
                 sock: socket.socket | None = None) -> None:  # fmt: skip
        self.host = host
        self.port = port
        self.name = server_name(host, port)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.read_only = read_only
        self.deadline = deadline
        self.sock: socket.socket | None = sock
        self.buf = b""
        self.pos = 0

    # -- socket ------------------------------------------------------------------

    def _left(self, timeout: float) -> float:
        """``timeout``, or less when the overall deadline comes sooner."""
        if self.deadline is None:
            return timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise StoreError(f"memcached at {self.name} did not finish in time (the command's deadline passed)")
        return min(timeout, left)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._left(self.connect_timeout))
        except TimeoutError as e:
            raise StoreError(f"timed out connecting to memcached at {self.name}") from e
        except OSError as e:
            raise StoreError(f"cannot connect to memcached at {self.name}: {e.strerror or e}") from e
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf, self.pos = sock, b"", 0
        return sock

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buf, self.pos = None, b"", 0

    def _failed(self, e: OSError) -> StoreError:
        self.close()
        if isinstance(e, TimeoutError):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return LostConnection(
                    f"memcached at {self.name} did not finish in time (the command's deadline passed)"
                )
            return LostConnection(f"memcached at {self.name} timed out after {self.timeout:g}s")
        return LostConnection(f"lost the connection to memcached at {self.name}: {e.strerror or e}")

    def send(self, request: Request) -> None:
        if not isinstance(request, Request):
            # Only the builders of memcached_commands check what goes on the wire.
            raise TypeError(f"not a memcached Request: {type(request).__name__}")
        if request.writes and self.read_only:
            raise StoreError(f"refused to send a write to memcached at {self.name} on a read-only connection")
        sock = self.sock or self._connect()
        try:
            if self.deadline is not None:
                sock.settimeout(self._left(self.timeout))
            sock.sendall(request)
        except OSError as e:
            raise self._failed(e) from e

    def recv(self) -> bytes:
        """The next chunk straight from the socket, bypassing the buffer (for dumps)."""
        assert self.sock is not None, "recv() before send()"
        try:
            if self.deadline is not None:
                self.sock.settimeout(self._left(self.timeout))
            data = self.sock.recv(RECV_SIZE)
        except OSError as e:
            raise self._failed(e) from e
        if not data:
            self.close()
            raise LostConnection(f"memcached at {self.name} closed the connection")
        return data

    def fill(self) -> None:
        """Receive one more chunk; drops consumed bytes, so ``pos`` becomes 0."""
        data = self.recv()
        self.buf = self.buf[self.pos :] + data if self.pos else self.buf + data
        self.pos = 0

    def garbled(self, what: str) -> StoreError:
        """Close (the stream is out of step) and say what the server got wrong."""
        self.close()
        return StoreError(f"memcached at {self.name} sent {what}")

    # -- replies -----------------------------------------------------------------

    def readline(self) -> bytes:
        """The next reply line, without its ``\\r\\n``."""
        eol = self.buf.find(b"\r\n", self.pos)
        while eol < 0:
            if len(self.buf) - self.pos > MAX_LINE:
                raise self.garbled(f"a reply line longer than {MAX_LINE:,} bytes")
            self.fill()
            eol = self.buf.find(b"\r\n", self.pos)
        if eol - self.pos > MAX_LINE:
            raise self.garbled(f"a reply line longer than {MAX_LINE:,} bytes")
        line = self.buf[self.pos : eol]
        self.pos = eol + 2
        return line

    def read_block(self, size: int) -> bytes:
        """A value of ``size`` bytes and the ``\\r\\n`` after it."""
        self.ensure(size + 2)
        end = self.pos + size
        if self.buf[end : end + 2] != b"\r\n":
            raise self.garbled("a malformed value")
        value = self.buf[self.pos : end]
        self.pos = end + 2
        return value

    def ensure(self, size: int) -> None:
        """Hold at least ``size`` unread bytes in ``buf`` (hot loops index it directly)."""
        if size > MAX_VALUE + 2:
            raise self.garbled(f"a value of {size - 2:,} bytes, more than sesstool reads ({MAX_VALUE:,})")
        while len(self.buf) - self.pos < size:
            self.fill()

    def check(self, line: bytes, what: str) -> bytes:
        """``line`` unless it is an error reply, which becomes a :class:`StoreError`."""
        if line.startswith(ERROR_REPLIES):
            self.close()
            raise StoreError(f"memcached at {self.name} refused {what}: {shown(line)}")
        return line

    def unexpected(self, line: bytes, what: str) -> StoreError:
        self.check(line, what)
        return self.garbled(f"{shown(line)} in answer to {what}")

    def call(self, request: Request, replies: int, what: str) -> list[bytes]:
        """Send pipelined commands and read one line for each."""
        self.send(request)
        return [self.check(self.readline(), what) for _ in range(replies)]


def shown(data: bytes, limit: int = 80) -> str:
    """Server bytes quoted for a message: ASCII, control bytes escaped, cut short."""
    text = ascii(data[:limit].decode("utf-8", "backslashreplace"))
    return text + ("..." if len(data) > limit else "")


def iter_dump(conn: Connection, *, retry_busy: t.Callable[[], bool]) -> t.Iterator[bytes]:
    """``lru_crawler metadump all`` on ``conn``: blocks of whole lines, as they arrive.

    Never holds the whole dump: each block is at most one receive plus a partial
    line. ``retry_busy`` is asked whether to try again (after its own pause) when
    the crawler is busy with another dump.

    :raises StoreError: when the server cannot dump (memcached < 1.4.31, or the LRU
        crawler disabled) or fails mid-way.
    """
    while True:
        conn.send(commands.metadump())
        head = b""
        while b"\n" not in head:
            if len(head) > MAX_LINE:
                raise conn.garbled(f"a metadump line longer than {MAX_LINE:,} bytes")
            head += conn.recv()
        if head.startswith(b"BUSY"):
            # One crawler per server: another dump (another sesstool?) is running.
            conn.close()
            if retry_busy():
                continue
            raise StoreError(f"memcached at {conn.name}: the LRU crawler stayed busy with another dump")
        break
    if head.startswith(ERROR_REPLIES):
        conn.close()
        reply = shown(head.split(b"\r\n", 1)[0])
        raise StoreError(
            f"memcached at {conn.name} cannot list its keys ({reply}): sesstool "
            "needs 'lru_crawler metadump' (memcached 1.4.31 or later, with the LRU crawler enabled)"
        )
    pending = head
    while True:
        last = pending.rfind(b"\n")
        if last >= 0:
            block, pending = pending[: last + 1], pending[last + 1 :]
            # URL-encoded keys hold no \r, so "END\r\n" at a line start is the end.
            if block.endswith(b"END\r\n") and (len(block) == 5 or block[-6] == 10):
                if len(block) > 5:
                    yield block[:-5]
                return
            yield block
        elif len(pending) > MAX_LINE:
            raise conn.garbled(f"a metadump line longer than {MAX_LINE:,} bytes")
        pending += conn.recv()


# -- values ------------------------------------------------------------------------


class CasToken(int):
    """A cas token that also remembers which server the item was read from.

    It is the token itself (``==``, ``int()``, JSON), so callers can treat it as
    one; writes that take an item go back to the server that held it, even when
    the key would hash elsewhere (left behind by a change of the server list).
    """

    __slots__ = ()
    server: int = -1


class ItemVersion(t.NamedTuple):
    """What a memcached item was read with, for the writes that must keep or check it.

    :param token: the cas token (the server it came from in :class:`CasToken`).
    :param expires_at: absolute Unix expiry; ``None`` for none.
    :param flags: the client flags stored with the value (pickled, compressed, ...).
    """

    token: int
    expires_at: int | None
    flags: int


def decompress(value: bytes, limit: int = MAX_DECOMPRESSED) -> bytes | None:
    """zlib-decompress a client-compressed value, ``None`` when it is not zlib or
    would exceed ``limit`` bytes."""
    try:
        return inflate(value, limit)
    except InflateError:
        return None
