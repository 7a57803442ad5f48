"""RESP written by hand for the listing hot path, and the overlapped SCAN loop.

redis-py's per-command bookkeeping costs about a microsecond a command, a third of
what listing a session costs; packing a batch's commands here and reading the
replies with its parser skips it. Kept apart from the stores: one standalone server
and each node of a Cluster run the same loop, with different fetch commands (a
Cluster node refuses an ``MGET`` whose keys span slots).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import typing as t

from sesstool.stores.base import Columns
from sesstool.stores.scanseen import SeenKeys

#: what turns a batch's keys into the packed commands that fetch their TTL and value
PackFetch = t.Callable[[list[bytes]], bytes]
#: what reads those replies back from the connection as :class:`Columns`
ReadFetch = t.Callable[[t.Any, list[bytes]], Columns]


def pack_mget_fetch(keys: list[bytes]) -> bytes:
    """RESP for one PTTL per key, then one MGET of them all."""
    # Each key's RESP argument is written once and used by both commands.
    args = [b"$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    return _PTTL + _PTTL.join(args) + b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1) + b"".join(args)


def pack_mget(keys: list[bytes]) -> bytes:
    """RESP for one MGET of ``keys``: their values without TTLs."""
    return b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1) + b"".join([b"$%d\r\n%s\r\n" % (len(key), key) for key in keys])


def pack_get_fetch(keys: list[bytes]) -> bytes:
    """RESP for one PTTL per key, then one GET per key (keys of several slots)."""
    args = [b"$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    return _PTTL + _PTTL.join(args) + _GET + _GET.join(args)


def pack_gets(keys: list[bytes]) -> bytes:
    """RESP for one GET per key: values without TTLs, for keys of several slots."""
    return _GET + _GET.join([b"$%d\r\n%s\r\n" % (len(key), key) for key in keys])


_PTTL = b"*2\r\n$4\r\nPTTL\r\n"
_GET = b"*2\r\n$3\r\nGET\r\n"


def pack_scan(cursor: bytes, pattern: bytes, count: bytes) -> bytes:
    parts = (b"SCAN", cursor, b"MATCH", pattern, b"COUNT", count)
    return b"*6\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def scan_overlapped(
    client: t.Any,
    pattern: bytes,
    batch: int,
    *,
    pack_fetch: PackFetch,
    read_fetch: ReadFetch,
    errors: t.Callable[[], contextlib.AbstractContextManager[None]],
) -> t.Iterator[Columns]:
    """SCAN ``client``'s server and fetch each batch, the server working while the caller works.

    The server sets the pace (fetching a batch's TTLs and values costs it about 1.6
    times what the SCAN does, measured), so it must never wait for the caller. Each
    request is the next SCAN, then the fetch of the keys the last SCAN returned.
    Before the caller gets a batch, the next SCAN's reply is read and the request
    after it written, so while the caller decodes and prints, the server has two
    fetches and a SCAN queued: a caller late to wake (a busy machine) does not leave
    it idle. At most three batches are held: the caller's and two in flight.
    Every step runs inside ``errors()``, the store's translation of driver errors.
    """
    count = b"%d" % max(batch, 10)
    pool = client.connection_pool
    seen = SeenKeys()
    with errors():
        connection = checkout(pool)
    try:
        with errors():
            connection.send_packed_command([pack_scan(b"0", pattern, count)])
        # Unread, in order: the fetch of `older`, the SCAN reply (while `scanning`),
        # the fetch of `newer`. An empty key list has no fetch.
        older: list[bytes] = []
        newer: list[bytes] = []
        scanning = True
        while True:
            with errors():
                done = read_fetch(connection, older) if older else None
                older, newer = newer, []
                if scanning:
                    cursor, keys = connection.read_response()
                    newer = seen.fresh(keys)
                    scanning = cursor != b"0"
                    request = (pack_scan(cursor, pattern, count) if scanning else b"") + (
                        pack_fetch(newer) if newer else b""
                    )
                    if request:
                        connection.send_packed_command([request])
            if done is not None:
                yield done
            if not (scanning or older or newer):
                break
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)


def read_replies(connection: t.Any, count: int) -> list[t.Any]:
    """The next ``count`` replies on ``connection``; error replies come back as exceptions.

    A fetch brings a reply a key. redis-py's ``read_response`` wraps each in about
    a microsecond of bookkeeping (push frames, error checks); its hiredis reader,
    called directly, parses whatever is buffered in C. Without that parser (another
    redis-py), the replies are read one by one as redis-py reads them.
    """
    parser = getattr(connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    fill = getattr(parser, "read_from_socket", None)
    if reader is None or fill is None:
        read = getattr(parser, "read_response", None) or connection.read_response
        return [read() for _ in range(count)]
    # What the reader answers while a reply is incomplete: redis-py 5.1+ gives it a
    # marker object of its own, earlier releases keep hiredis's False.
    incomplete = getattr(sys.modules.get(type(parser).__module__), "NOT_ENOUGH_DATA", False)
    gets = reader.gets
    replies = [gets() for _ in range(count)]
    # Once the buffer runs out, every later call answers ``incomplete`` too: read
    # more and parse on from the first of them.
    while replies and replies[-1] is incomplete:
        done = _first(replies, incomplete)
        fill()
        replies[done:] = [gets() for _ in range(count - done)]
    return replies


def _first(replies: list[t.Any], marker: object) -> int:
    """Where the run of ``marker`` that ends ``replies`` starts."""
    low, high = 0, len(replies) - 1
    while low < high:
        middle = (low + high) // 2
        if replies[middle] is marker:
            high = middle
        else:
            low = middle + 1
    return low


def checkout(pool: t.Any) -> t.Any:
    """A connection from ``pool`` on every redis-py the dependency range allows.

    redis-py before 5.3 requires a command name (it never uses it for a plain
    pool); 5.3 and later deprecate passing one.
    """
    global _POOL_NEEDS_NAME
    if _POOL_NEEDS_NAME is None:
        parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
        _POOL_NEEDS_NAME = parameter is not None and parameter.default is inspect.Parameter.empty
    return pool.get_connection("PING") if _POOL_NEEDS_NAME else pool.get_connection()


_POOL_NEEDS_NAME: bool | None = None
