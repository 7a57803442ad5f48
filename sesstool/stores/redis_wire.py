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
import typing as t

from sesstool.stores.base import Columns
from sesstool.stores.scanseen import SeenKeys

#: what turns a batch's keys into the packed commands that fetch their TTL and value
PackFetch = t.Callable[[list[bytes]], bytes]
#: what reads those replies back from the connection as :class:`Columns`
ReadFetch = t.Callable[[t.Any, list[bytes]], Columns]


def pack_mget_fetch(keys: list[bytes]) -> bytes:
    """RESP for one PTTL per key, then one MGET of them all."""
    packed = [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    packed.append(b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1))
    packed += [b"$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    return b"".join(packed)


def pack_get_fetch(keys: list[bytes]) -> bytes:
    """RESP for one PTTL per key, then one GET per key (keys of several slots)."""
    packed = [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    packed += [b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    return b"".join(packed)


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

    Each round writes the fetch of the keys in hand and the next SCAN in one go,
    then hands the caller the previous batch: the server answers both requests
    while the caller decodes and prints, instead of each waiting for the other.
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
            cursor, keys = connection.read_response()
        keys = seen.fresh(keys)
        previous: Columns | None = None
        while True:
            request = pack_fetch(keys) if keys else b""
            if cursor != b"0":
                request += pack_scan(cursor, pattern, count)
            with errors():
                if request:
                    connection.send_packed_command([request])
            if previous is not None:
                yield previous
            with errors():
                previous = read_fetch(connection, keys) if keys else None
                if cursor == b"0":
                    break
                cursor, keys = connection.read_response()
            keys = seen.fresh(keys)
        if previous is not None:
            yield previous
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)


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
