"""memcached's text protocol on a plain socket: connections, replies, client flags.

pymemcache has no ``lru_crawler metadump`` and no meta commands (``mg``/``md``),
and its per-key Python objects would dominate a listing of a million items, so
the store speaks the protocol itself. This module knows lines, values and error
replies, turns every socket failure into a one-line
:class:`~sesstool.errors.StoreError` that names the server, and parses value
replies straight into :class:`~sesstool.stores.base.StoredItem` (the hot loop of
a listing). Which server and which command is :mod:`sesstool.stores.memcached`'s
business.
"""

from __future__ import annotations

import re
import socket
import time
import typing as t
import zlib
from urllib.parse import unquote_to_bytes

from sesstool.errors import StoreError
from sesstool.stores.base import STRING, StoredItem

RECV_SIZE = 256 * 1024
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


class Connection:
    """One TCP connection to one memcached server, opened on first use.

    ``buf[pos:]`` holds bytes received but not yet consumed. After any error the
    socket is closed (a half-read reply would poison the next command) and the
    next command reconnects.
    """

    def __init__(self, host: str, port: int, *, timeout: float, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.name = server_name(host, port)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.pos = 0

    # -- socket ------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
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
            return StoreError(f"memcached at {self.name} timed out after {self.timeout:g}s")
        return StoreError(f"lost the connection to memcached at {self.name}: {e.strerror or e}")

    def send(self, data: bytes) -> None:
        sock = self.sock or self._connect()
        try:
            sock.sendall(data)
        except OSError as e:
            raise self._failed(e) from e

    def recv(self) -> bytes:
        """The next chunk straight from the socket, bypassing the buffer (for dumps)."""
        assert self.sock is not None, "recv() before send()"
        try:
            data = self.sock.recv(RECV_SIZE)
        except OSError as e:
            raise self._failed(e) from e
        if not data:
            self.close()
            raise StoreError(f"memcached at {self.name} closed the connection")
        return data

    def fill(self) -> None:
        """Receive one more chunk; drops consumed bytes, so ``pos`` becomes 0."""
        data = self.recv()
        self.buf = self.buf[self.pos :] + data if self.pos else self.buf + data
        self.pos = 0

    # -- replies -----------------------------------------------------------------

    def readline(self) -> bytes:
        """The next reply line, without its ``\\r\\n``."""
        eol = self.buf.find(b"\r\n", self.pos)
        while eol < 0:
            self.fill()
            eol = self.buf.find(b"\r\n", self.pos)
        line = self.buf[self.pos : eol]
        self.pos = eol + 2
        return line

    def read_block(self, size: int) -> bytes:
        """A value of ``size`` bytes and the ``\\r\\n`` after it."""
        while len(self.buf) - self.pos < size + 2:
            self.fill()
        end = self.pos + size
        if self.buf[end : end + 2] != b"\r\n":
            self.close()
            raise StoreError(f"memcached at {self.name} sent a malformed value")
        value = self.buf[self.pos : end]
        self.pos = end + 2
        return value

    def ensure(self, size: int) -> None:
        """Hold at least ``size`` unread bytes in ``buf`` (hot loops index it directly)."""
        while len(self.buf) - self.pos < size:
            self.fill()

    def check(self, line: bytes, what: str) -> bytes:
        """``line`` unless it is an error reply, which becomes a :class:`StoreError`."""
        if line.startswith(ERROR_REPLIES):
            self.close()
            text = line.decode("utf-8", "replace")
            raise StoreError(f"memcached at {self.name} refused {what}: {text}")
        return line

    def unexpected(self, line: bytes, what: str) -> StoreError:
        self.check(line, what)
        self.close()
        return StoreError(f"memcached at {self.name} answered {what} with {line[:60].decode('utf-8', 'replace')!r}")

    def call(self, request: bytes, replies: int, what: str) -> list[bytes]:
        """Send pipelined commands and read one line for each."""
        self.send(request)
        return [self.check(self.readline(), what) for _ in range(replies)]


def iter_dump(conn: Connection, *, retry_busy: t.Callable[[], bool]) -> t.Iterator[bytes]:
    """``lru_crawler metadump all`` on ``conn``: blocks of whole lines, as they arrive.

    Never holds the whole dump: each block is at most one receive plus a partial
    line. ``retry_busy`` is asked whether to try again (after its own pause) when
    the crawler is busy with another dump.

    :raises StoreError: when the server cannot dump (memcached < 1.4.31, or the LRU
        crawler disabled) or fails mid-way.
    """
    while True:
        conn.send(b"lru_crawler metadump all\r\n")
        head = b""
        while b"\n" not in head:
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
        reply = head.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        raise StoreError(
            f"memcached at {conn.name} cannot list its keys ({reply}): sesstool needs "
            "'lru_crawler metadump' (memcached 1.4.31 or later, with the LRU crawler enabled)"
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


def decompress(value: bytes, limit: int = MAX_DECOMPRESSED) -> bytes | None:
    """zlib-decompress a client-compressed value, ``None`` when it is not zlib or
    would exceed ``limit`` bytes (never unbounded: ``zlib.decompress`` has no limit)."""
    engine = zlib.decompressobj()
    try:
        out = engine.decompress(value, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or engine.unconsumed_tail or not engine.eof:
        return None
    return out


# -- replies ----------------------------------------------------------------------


def mg_request(keys: list[bytes]) -> bytes:
    # v t c f: value, seconds left (-1: none), cas, client flags. u: do not bump the
    # item in the LRU or its last-access time (listing is not use).
    return b"".join([b"mg " + key + b" v t c f u\r\n" for key in keys])


def read_pipelined(conn: Connection, chunks: t.Iterable[list[bytes]],
               token: type[CasToken]) -> t.Iterator[list[StoredItem]]:  # fmt: skip
    """Items of each chunk of keys, with the next request sent before a reply is read."""
    pending: list[bytes] | None = None
    for chunk in chunks:
        conn.send(mg_request(chunk))
        if pending is not None:
            yield read_mg(conn, pending, token)
        pending = chunk
    if pending is not None:
        yield read_mg(conn, pending, token)


_MG_HEAD = re.compile(rb"VA (\d+) t(-?\d+) c(\d+) f(\d+)\r\n")


def read_mg(conn: Connection, keys: list[bytes], token: type[CasToken]) -> list[StoredItem]:
    """Parse the replies to :func:`mg_request` (one per key, in order; ``EN`` for
    a miss), building the items as it goes. The hot loop of a listing: one regex
    match per reply header, the value sliced straight out of the buffer."""
    items: list[StoredItem] = []
    append = items.append
    now = int(time.time())
    match = _MG_HEAD.match
    buf, pos = conn.buf, conn.pos
    for key in keys:
        head = match(buf, pos)
        if head is not None:
            size, ttl_b, cas_b, flags_b = head.groups()
            start = head.end()
        else:
            # A miss, a header cut off at the end of the buffer, or flags in
            # another order: the slow path reads the line properly.
            conn.pos = pos
            parsed = _mg_head(conn)
            buf, pos = conn.buf, conn.pos
            if parsed is None:
                continue
            size, ttl_b, cas_b, flags_b = parsed
            start = pos
        end = start + int(size)
        if len(buf) < end + 2:
            conn.pos = start
            conn.ensure(end - start + 2)
            buf, start = conn.buf, conn.pos
            end = start + int(size)
        value = buf[start:end]
        pos = end + 2
        flags = int(flags_b)
        if flags & FLAG_ZLIB:
            value = decompress(value) or value
        ttl = int(ttl_b)
        if ttl < 0:
            append(StoredItem(key, value, None, STRING, token(cas_b), None, None, flags))
        else:
            append(StoredItem(key, value, ttl, STRING, token(cas_b), now + ttl, None, flags))
    conn.pos = pos
    return items


def _mg_head(conn: Connection) -> tuple[bytes, bytes, bytes, bytes] | None:
    """One ``mg`` reply header read the slow way: ``None`` for a miss."""
    line = conn.readline()
    if line == b"EN":
        return None
    parts = line.split()
    if len(parts) < 2 or parts[0] != b"VA":
        raise conn.unexpected(line, "mg")
    found = {part[:1]: part[1:] for part in parts[2:]}
    return parts[1], found.get(b"t", b"-1"), found.get(b"c", b"0"), found.get(b"f", b"0")


def read_gets(conn: Connection, keys: list[bytes], token: type[CasToken],
          expiry: dict[bytes, int] | None) -> list[StoredItem]:  # fmt: skip
    """``gets`` for servers before 1.6: values and cas tokens; expiry from the dump."""
    conn.send(b"gets " + b" ".join(keys) + b"\r\n")
    now = int(time.time())
    items: list[StoredItem] = []
    while True:
        line = conn.readline()
        if line == b"END":
            return items
        parts = line.split()
        if len(parts) != 5 or parts[0] != b"VALUE":
            raise conn.unexpected(line, "gets")
        key, flags = parts[1], int(parts[2])
        value = conn.read_block(int(parts[3]))
        if flags & FLAG_ZLIB:
            value = decompress(value) or value
        item = StoredItem(key, value, None, STRING, token(parts[4]), None, None, flags)
        if expiry is not None:
            set_expiry(item, expiry.get(key, -1), now)
        items.append(item)


def set_expiry(item: StoredItem, exp: int, now: int) -> None:
    if exp >= 0:
        item.expires_at = exp
        item.ttl = max(exp - now, 0)
