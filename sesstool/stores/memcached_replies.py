"""memcached's replies to the commands sesstool sends, parsed without trusting them.

A server (or whatever answers on its port) may send anything: a reply cut off,
numbers too long for any real item, a value larger than the item limit, keys it
was not asked for, garbage. Each parser here either returns what a real server
means or raises one :class:`~sesstool.errors.StoreError` naming the server, and
never reads more than the bounds of :class:`~sesstool.stores.memcached_wire.Connection`.

``mg_rows`` is the hot loop of a listing: one regex match per reply header and
the value sliced straight out of the receive buffer, no object made per item
but a tuple (a plain ``list`` turns the rows into columns; commands that write
back get :class:`~sesstool.stores.base.StoredItem` objects from ``read_mg``).
"""

from __future__ import annotations

import itertools
import re
import time
import typing as t

from sesstool.stores import memcached_commands as commands
from sesstool.stores.base import STRING, Columns, StoredItem
from sesstool.stores.memcached_wire import FLAG_ZLIB, CasToken, Connection, ItemVersion, decompress

# Digit counts bounded so that no reply can ask int() for a huge number: sizes and
# flags fit 32 bits (10 digits), cas tokens 64 bits (20), seconds left 32 bits.
_SIZE = rb"\d{1,10}"
_TTL = rb"-?\d{1,10}"
_CAS = rb"\d{1,20}"
_MG_HEAD = re.compile(rb"VA (%s) t(%s) c(%s) f(%s)\r\n" % (_SIZE, _TTL, _CAS, _SIZE))
_MG_TOKEN = {
    b"t": re.compile(_TTL),
    b"c": re.compile(_CAS),
    b"f": re.compile(_SIZE),
    b"l": re.compile(_SIZE),
    b"s": re.compile(_SIZE),
}
_NUMBER = re.compile(_CAS)
#: Unread bytes a marked batch may take before its ``MN`` is found; past it the
#: replies are read one by one (a batch of sessions is far smaller).
MARKED_BATCH = 16 * 1024 * 1024


R = t.TypeVar("R")
#: One ``mg`` hit as the hot loop reads it: key, value (decompressed), seconds left
#: (``-1``: none), cas token and client flags, the numbers as the server wrote them.
MgRow = tuple[bytes, bytes, int, bytes, bytes]


def read_pipelined(conn: Connection, chunks: t.Iterable[t.Sequence[bytes]],
                   parse: t.Callable[[Connection, t.Sequence[bytes]], R], *,
                   marked: bool = False) -> t.Iterator[R]:  # fmt: skip
    """``parse`` of the replies to each chunk of keys' :func:`~sesstool.stores.memcached_commands.mg_values`
    (``marked`` as given), with the next request sent before a reply is read (the
    server answers while the caller works on the previous chunk)."""
    pending: t.Sequence[bytes] | None = None
    for chunk in chunks:
        conn.send(commands.mg_values(chunk, marked=marked))
        if pending is not None:
            yield parse(conn, pending)
        pending = chunk
    if pending is not None:
        yield parse(conn, pending)


def read_mg(conn: Connection, keys: t.Sequence[bytes], token: type[CasToken]) -> list[StoredItem]:
    """The items the replies to :func:`~sesstool.stores.memcached_commands.mg_values` hold."""
    now = int(time.time())  # before the replies are read: the server's clock lags, never leads
    rows = mg_rows(conn, keys)
    return [
        StoredItem(key, value, None, STRING, ItemVersion(token(cas), None, int(flags)))
        if ttl < 0
        else StoredItem(key, value, ttl, STRING, ItemVersion(token(cas), now + ttl, int(flags)))
        for key, value, ttl, cas, flags in rows
    ]


def mg_columns(conn: Connection, keys: t.Sequence[bytes]) -> Columns:
    """The replies to a marked :func:`~sesstool.stores.memcached_commands.mg_values`
    as :class:`Columns` (keys, values, milliseconds left), for a listing that needs
    no item objects.

    The usual batch (every key found, no value holding CR LF) is split and checked
    in a few calls over the whole batch, no Python step per reply but the TTL's;
    any other falls back to reading reply by reply (:func:`mg_rows`), which refuses
    what a real server would not send.
    """
    end = _marked_end(conn)
    columns = _split_batch(conn, end, keys) if end >= 0 else None
    if columns is not None:
        conn.pos = end
        return columns
    rows = mg_rows(conn, keys)
    line = conn.readline()
    if line != b"MN":
        raise conn.unexpected(line, "mg")
    if not rows:
        return Columns([], [], [], {})
    found, values, ttls, _, _ = zip(*rows, strict=True)
    return Columns(list(found), list(values), [ttl * 1000 if ttl >= 0 else -1 for ttl in ttls], {})


def _marked_end(conn: Connection) -> int:
    """Where the batch's ``MN`` line ends in ``conn.buf`` (read as far as it), or
    ``-1`` past :data:`MARKED_BATCH` unread bytes (the slow path reads on)."""
    buf, pos = conn.buf, conn.pos
    if buf.startswith(b"MN\r\n", pos):
        return pos + 4
    searched = pos
    while True:
        found = buf.find(b"\r\nMN\r\n", searched)
        if found >= 0:
            return found + 6
        if len(buf) - pos > MARKED_BATCH:
            return -1
        searched = max(pos, len(buf) - 5) - pos  # fill() moves the unread bytes to 0
        conn.fill()
        buf, pos = conn.buf, conn.pos
        searched += pos


def _split_batch(conn: Connection, end: int, keys: t.Sequence[bytes]) -> Columns | None:
    """A whole batch of hits up to ``end`` as columns, or ``None`` if it is anything else."""
    n = len(keys)
    pieces = conn.buf[conn.pos : end - 4].split(b"\r\n")
    if len(pieces) != 2 * n + 1 or pieces[-1]:
        return None  # a miss (EN has no value), or CR LF inside a value
    heads = b"\r\n".join(pieces[0:-1:2]) + b"\r\n"
    fields = _MG_HEAD.findall(heads)
    # Matches never overlap: n of them whose lengths add up to the whole text are
    # each exactly one header, in order.
    if len(fields) != n or 11 * n + len(b"".join(itertools.chain.from_iterable(fields))) != len(heads):
        return None
    values = t.cast("list[bytes | None]", pieces[1::2])
    sizes, ttls, _, flags = zip(*fields, strict=True)
    # A value holding CR LF is cut short by the split, so its size tells: no value
    # can pass for another reply.
    if list(map(int, sizes)) != list(map(len, pieces[1::2])):
        return None
    if flags.count(b"0") != n:
        values = [decompress(value) or value if int(flag) & FLAG_ZLIB else value
                  for value, flag in zip(pieces[1::2], flags, strict=True)]  # fmt: skip
    return Columns(list(keys), values, [ttl * 1000 if ttl >= 0 else -1 for ttl in map(int, ttls)], {})


def mg_rows(conn: Connection, keys: t.Sequence[bytes]) -> list[MgRow]:
    """Parse the replies to :func:`~sesstool.stores.memcached_commands.mg_values`
    (one per key, in order; ``EN`` for a miss): the hot loop of a listing."""
    rows: list[MgRow] = []
    append = rows.append
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
        # The \r\n after the value is not checked here (the hot loop): a size that
        # lies leaves the next header out of place, which the slow path refuses.
        value = buf[start:end]
        pos = end + 2
        if flags_b != b"0" and int(flags_b) & FLAG_ZLIB:
            value = decompress(value) or value
        append((key, value, int(ttl_b), cas_b, flags_b))
    conn.pos = pos
    return rows


def _mg_head(conn: Connection) -> tuple[bytes, bytes, bytes, bytes] | None:
    """One ``mg`` reply header read the slow way: ``None`` for a miss."""
    line = conn.readline()
    if line == b"EN":
        return None
    parts = line.split(b" ")
    if len(parts) < 2 or parts[0] != b"VA" or not re.fullmatch(_SIZE, parts[1]):
        raise conn.unexpected(line, "mg")
    found = _mg_tokens(conn, line, parts[2:])
    return parts[1], found.get(b"t", b"-1"), found.get(b"c", b"0"), found.get(b"f", b"0")


def _mg_tokens(conn: Connection, line: bytes, tokens: list[bytes]) -> dict[bytes, bytes]:
    found = {}
    for part in tokens:
        pattern = _MG_TOKEN.get(part[:1])
        if pattern is None or not pattern.fullmatch(part, 1):
            raise conn.unexpected(line, "mg")
        found[part[:1]] = part[1:]
    return found


def read_idle(conn: Connection, keys: list[bytes]) -> dict[bytes, tuple[int, int | None, int]]:
    """Replies to :func:`~sesstool.stores.memcached_commands.mg_idle`: ``(idle
    seconds, ttl or None, cas)`` of each key found."""
    found: dict[bytes, tuple[int, int | None, int]] = {}
    for key in keys:
        line = conn.readline()
        if line == b"EN":
            continue
        parts = line.split(b" ")
        if parts[0] != b"HD":
            raise conn.unexpected(line, "mg")
        tokens = {name: int(value) for name, value in _mg_tokens(conn, line, parts[1:]).items()}
        ttl = tokens.get(b"t", -1)
        found[key] = (tokens.get(b"l", 0), None if ttl < 0 else ttl, tokens.get(b"c", 0))
    return found


def read_gets(conn: Connection, keys: list[bytes], token: type[CasToken],
          expiry: dict[bytes, int] | None) -> list[StoredItem]:  # fmt: skip
    """``gets`` for servers before 1.6: values and cas tokens; expiry from the dump."""
    conn.send(commands.gets(keys))
    asked = set(keys)
    now = int(time.time())
    items: list[StoredItem] = []
    while True:
        line = conn.readline()
        if line == b"END":
            return items
        parts = line.split(b" ")
        if (
            len(parts) != 5
            or parts[0] != b"VALUE"
            or parts[1] not in asked
            or not all(_NUMBER.fullmatch(part) for part in parts[2:])
            or len(parts[2]) > 10
        ):
            raise conn.unexpected(line, "gets")
        key, flags = parts[1], int(parts[2])
        value = conn.read_block(int(parts[3]))
        if flags & FLAG_ZLIB:
            value = decompress(value) or value
        item = StoredItem(key, value, None, STRING, ItemVersion(token(parts[4]), None, flags))
        if expiry is not None:
            set_expiry(item, expiry.get(key, -1), now)
        items.append(item)


def read_stat(conn: Connection, name: bytes) -> int:
    """The integer stat ``name`` from the reply to ``stats`` (0 when absent)."""
    value = 0
    while True:
        line = conn.check(conn.readline(), "stats")
        if line == b"END":
            return value
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] != b"STAT":
            raise conn.unexpected(line, "stats")
        if parts[1] == name:
            if not _NUMBER.fullmatch(parts[2]):
                raise conn.unexpected(line, "stats")
            value = int(parts[2])


def speaks_meta(conn: Connection, line: bytes) -> bool:
    """Whether a ``version`` reply names memcached 1.6 or later (meta commands)."""
    if not line.startswith(b"VERSION "):
        raise conn.unexpected(line, "version")
    # A proxy may name itself instead (mcrouter, twemproxy): the classic protocol then.
    match = re.match(rb"VERSION (\d{1,6})\.(\d{1,6})", line)
    return match is not None and (int(match[1]), int(match[2])) >= (1, 6)


def set_expiry(item: StoredItem, exp: int, now: int) -> None:
    if exp >= 0:
        item.version = t.cast(ItemVersion, item.version)._replace(expires_at=exp)
        item.ttl = max(exp - now, 0)
