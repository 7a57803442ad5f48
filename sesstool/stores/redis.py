"""Redis where one server answers every key: standalone, TLS, Unix socket, Sentinel.

Listing never uses ``KEYS``: the server is walked with ``SCAN`` and a large
``COUNT``, and the TTL and value of a whole batch come back in one round trip
(one packed pipeline, overlapped with the next SCAN). One batch is held at a time.
Multi-key commands and Lua scripts cover a whole batch here, which
:class:`~sesstool.stores.redis_cluster.RedisClusterStore` cannot do.
"""

from __future__ import annotations

import builtins
import typing as t

from redis.exceptions import ConnectionError, InvalidResponse, TimeoutError

from sesstool.errors import StoreError
from sesstool.stores.base import Columns, StoredItem
from sesstool.stores.redis_base import RedisBase, _connection_lost, _glob_escape, _pttl, _seconds, _value_items
from sesstool.stores.redis_urls import CONNECT_TIMEOUT, SOCKET_TIMEOUT, open_redis
from sesstool.stores.redis_wire import (
    checkout,
    pack_mget,
    pack_mget_fetch,
    read_replies,
    scan_overlapped,
)
from sesstool.stores.scanseen import SeenKeys

__all__ = ["CONNECT_TIMEOUT", "SOCKET_TIMEOUT", "RedisStore", "open_redis"]


class RedisStore(RedisBase):
    """Sessions on one Redis server, through a ready redis-py client."""

    def scan_columns(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[Columns]:
        """:meth:`scan` as :class:`Columns`, without an object per key."""
        yield from scan_overlapped(self.client, _glob_escape(prefix) + b"*", batch, pack_fetch=pack_mget_fetch,
                                   read_fetch=self._read_fetch, errors=self._errors)

    def scan_values(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """:meth:`scan` without the TTLs: one MGET a batch. A PTTL a key costs the
        server about two thirds of what the MGET does (measured), so a ``--where``
        that keeps one session in a thousand reads the TTL of only that one."""
        return map(_value_items, scan_overlapped(self.client, _glob_escape(prefix) + b"*", batch,
                                                 pack_fetch=pack_mget, read_fetch=self._read_values,
                                                 errors=self._errors))

    def _read_values(self, connection: t.Any, keys: list[bytes]) -> Columns:
        values = self._read_replies(connection, 1)[0]
        if not isinstance(values, list) or len(values) != len(keys):
            raise values if isinstance(values, Exception) else InvalidResponse(self._odd_reply("MGET"))
        # A nil is a key gone or of another type: without PTTLs, TYPE tells them apart.
        return self._columns(keys, [-1] * len(keys), values, keep_missing=False)

    def _read_fetch(self, connection: t.Any, keys: list[bytes]) -> Columns:
        replies = self._read_replies(connection, len(keys) + 1)
        values = replies.pop()
        if set(map(type, replies)) != {int} or not isinstance(values, list) or len(values) != len(keys):
            # An error reply (an ACL without PTTL or MGET, say) comes back as a value.
            for reply in (*replies, values):
                if isinstance(reply, Exception):
                    raise reply
            raise InvalidResponse(self._odd_reply("PTTL or MGET"))
        return self._columns(keys, replies, values, keep_missing=False)

    def _read_replies(self, connection: t.Any, count: int) -> list[t.Any]:
        try:
            return read_replies(connection, count)
        except builtins.TimeoutError as e:  # the socket's own timeout
            raise TimeoutError(f"timed out reading from {self.describe()}") from e
        except OSError as e:
            raise ConnectionError(f"error reading from {self.describe()}: {e.strerror or e}") from e

    def _odd_reply(self, command: str) -> str:
        return f"{self.describe()} answered a {command} with something else"

    def _fetch_replies(self, keys: list[bytes]) -> tuple[list[int], list[bytes | None]]:
        """One PTTL per key and one MGET, written as a single packed pipeline.

        Plain pipelined commands cost the server less than the same calls made
        from a Lua script, and unlike a script they never hold it for a whole
        batch. Packing the RESP here skips redis-py's per-command bookkeeping.
        """
        pool = self.client.connection_pool
        connection = checkout(pool)
        try:
            connection.send_packed_command([pack_mget_fetch(keys)])
            read = connection.read_response
            pttls = [read() for _ in keys]
            values = read()
        except BaseException:
            connection.disconnect()  # a half-read reply must not be reused
            raise
        finally:
            pool.release(connection)
        return pttls, values

    def fetch_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
    ) -> list[tuple[StoredItem, int]]:
        """Keys idle for more than ``min_idle`` seconds, with TTL, kind, idle time and
        (with ``values``) value.

        One round trip: a Lua script reads ``OBJECT IDLETIME`` before anything else (a
        GET resets idle time) and never reads keys that do not qualify; without
        ``values`` it reads none at all, so a dry run leaves idle times as they were.
        """
        if not keys:
            return []
        flat = self._idle_script(self._fetch_idle, keys, min_idle, no_expiry_only, "1" if values else "0")
        selected = []
        for index, key in enumerate(keys):
            idle, pttl, value = flat[3 * index : 3 * index + 3]
            if value is None:
                continue
            if isinstance(value, list):
                kind = value[0].decode() if isinstance(value[0], bytes) else str(value[0])
                item = StoredItem(key, None, _seconds(pttl), kind, pttl)
            else:
                item = StoredItem(key, value, _seconds(pttl), version=pttl)
            selected.append((item, int(idle)))
        return selected

    def delete_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
    ) -> tuple[int, dict[str, int]]:
        """Unlink the string keys still idle for more than ``min_idle`` seconds (and,
        with ``no_expiry_only``, without expiry), each checked and deleted atomically.

        :returns: how many were deleted, and the types of idle keys that are not strings.
        """
        if not keys:
            return 0, {}
        return self._delete_idle_keys(keys, min_idle, no_expiry_only)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        if not keys:
            return 0
        with self._errors():
            return int(self.client.unlink(*keys))

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        candidates = [item for item in items if item.value is not None]
        if not candidates:
            return 0
        with self._errors():
            args: list[t.Any] = []
            for item in candidates:
                args += [item.value, _pttl(item)]
            return int(self._delete_unchanged(keys=[item.key for item in candidates], args=args))

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Unlink every key under ``prefix``, any type; yield (keys seen, keys deleted) per batch.

        Each round trip carries the UNLINK of one batch and the SCAN for the next,
        so deleting costs no round trip of its own.
        """
        pattern = _glob_escape(prefix) + b"*"
        count = max(batch, 10)
        seen = SeenKeys()
        with self._errors():
            cursor, keys = self.client.scan(cursor=0, match=pattern, count=count)
        while True:
            keys = seen.fresh(keys)
            if cursor == 0:
                if keys:
                    with self._errors():
                        yield len(keys), int(self.client.unlink(*keys))
                return
            pipe = self.client.pipeline(transaction=False)
            if keys:
                pipe.unlink(*keys)
            pipe.scan(cursor=cursor, match=pattern, count=count)
            with self._errors():
                replies = pipe.execute()
            if keys:
                yield len(keys), int(replies[0])
            cursor, keys = replies[-1]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        writable = [(item, value) for item, value in pairs if item.value is not None]
        if not writable:
            return [False] * len(pairs)
        # Each script runs atomically on its own; the pipeline only saves round trips.
        pipe = self.client.pipeline(transaction=False)
        for item, value in writable:
            self._cas(keys=[item.key], args=[item.value, value], client=pipe)
        try:
            with self._errors():
                results = [bool(reply) for reply in pipe.execute()]
        except StoreError as e:
            if not _connection_lost(e):
                raise
            results = [False] * len(writable)
        # A lost reply (or redis-py's re-send after one) says nothing about what was
        # written: the keys not confirmed are read again. One still holding what was
        # read reports False, so the caller reads it again and retries.
        unsure = [i for i, ok in enumerate(results) if not ok]
        if unsure:
            confirmed = self._holds([writable[i][0].key for i in unsure], [writable[i][1] for i in unsure])
            for i, ok in zip(unsure, confirmed, strict=True):
                results[i] = ok
        replies = iter(results)
        return [next(replies) if item.value is not None else False for item, _ in pairs]
