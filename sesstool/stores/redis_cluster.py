"""Redis Cluster: keys spread over slots on several primaries.

Every primary is scanned, all at once (a thread a primary, batches merged as they
come: :mod:`~sesstool.stores.parallel`). A Lua script or a multi-key command may not span slots,
so what :class:`~sesstool.stores.redis.RedisStore` does in one call a batch is a
non-transactional pipeline here (redis-py groups it per node) or one script call
a key.
"""

from __future__ import annotations

import functools
import typing as t

from redis.exceptions import AskError, MovedError, ResponseError

from sesstool.stores.base import Columns, StoredItem, idle_pairs
from sesstool.stores.parallel import merged
from sesstool.stores.redis_base import RedisBase, _glob_escape, _seconds, _value_items
from sesstool.stores.redis_wire import pack_get_fetch, pack_gets, read_replies, scan_overlapped


class RedisClusterStore(RedisBase):
    """Sessions on a Redis Cluster, through a ready ``RedisCluster`` client."""

    def nodes(self) -> list[t.Any]:
        """A client per node to scan: every primary."""
        with self._errors():
            return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]

    def scan_columns(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[Columns]:
        """:meth:`scan` as :class:`Columns`: every primary at once (:mod:`.parallel`),
        each walked with SCAN and its batches fetched from the node itself."""
        pattern = _glob_escape(prefix) + b"*"
        return merged([
            functools.partial(scan_overlapped, node, pattern, batch, pack_fetch=pack_get_fetch,
                              read_fetch=self._read_node_fetch, errors=self._errors)
            for node in self.nodes()
        ])  # fmt: skip

    def scan_values(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """:meth:`scan` without the TTLs: a GET a key, every primary at once; a
        ``--where`` reads the TTLs of the few sessions it keeps (:meth:`read_ttls`),
        which spares each node a PTTL a key, as on one server."""
        pattern = _glob_escape(prefix) + b"*"
        return map(_value_items, merged([
            functools.partial(scan_overlapped, node, pattern, batch, pack_fetch=pack_gets,
                              read_fetch=self._read_node_values, errors=self._errors)
            for node in self.nodes()
        ]))  # fmt: skip

    def _read_node_fetch(self, connection: t.Any, keys: list[bytes]) -> Columns:
        replies = read_replies(connection, 2 * len(keys))
        return self._node_columns(keys, replies[: len(keys)], replies[len(keys) :])

    def _read_node_values(self, connection: t.Any, keys: list[bytes]) -> Columns:
        # No TTLs read: -1 stands in, and a nil value is told apart by TYPE.
        return self._node_columns(keys, [-1] * len(keys), read_replies(connection, len(keys)))

    def _node_columns(self, keys: list[bytes], pttls: list[t.Any], values: list[t.Any]) -> Columns:
        # The parser hands error replies back as values. A key SCAN just found on
        # this node answers MOVED or ASK only while its slot migrates: those few are
        # fetched again through the cluster client, which follows the redirect.
        moved = []
        for i, (pttl, value) in enumerate(zip(pttls, values, strict=True)):
            if isinstance(pttl, int) and not isinstance(value, Exception):
                continue
            if isinstance(pttl, (MovedError, AskError)) or isinstance(value, (MovedError, AskError)):
                moved.append(i)
            elif isinstance(pttl, Exception):
                raise pttl
            elif str(value).startswith("WRONGTYPE"):
                values[i] = None  # another type: _columns asks which
            else:
                raise t.cast(Exception, value)
        if moved:
            again = self._fetch_replies([keys[i] for i in moved])
            for i, pttl, value in zip(moved, *again, strict=True):
                pttls[i], values[i] = pttl, value
        return self._columns(keys, pttls, values, keep_missing=False)

    def _fetch_replies(self, keys: list[bytes]) -> tuple[list[int], list[bytes | None]]:
        # A script or MGET may not span slots on Cluster: a non-transactional
        # pipeline, which redis-py groups per node, stands in.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
            pipe.get(key)
        replies = pipe.execute(raise_on_error=False)
        values = [None if isinstance(v, ResponseError) else v for v in replies[1::2]]
        return list(replies[0::2]), values

    def fetch_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
    ) -> list[tuple[StoredItem, int]]:
        # Cluster: a script may not span slots. Idle times in one pipeline, then only
        # the qualifying keys: their TTL and type (which leave idle time alone) and,
        # when asked, their values.
        if not keys:
            return []
        idles = self.idle_seconds(keys)
        chosen = [(key, idle) for key, idle in zip(keys, idles, strict=True) if idle is not None and idle > min_idle]
        if values:
            items = self.fetch([key for key, _ in chosen])
        else:
            pipe = self.client.pipeline(transaction=False)
            for key, _ in chosen:
                pipe.pttl(key)
                pipe.type(key)
            with self._errors():
                replies = pipe.execute()
            items = [
                StoredItem(key, None, _seconds(pttl), kind.decode() if isinstance(kind, bytes) else str(kind), pttl)
                for (key, _), pttl, kind in zip(chosen, replies[0::2], replies[1::2], strict=True)
            ]
        return idle_pairs(items, chosen, no_expiry_only=no_expiry_only)

    def delete_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
    ) -> tuple[int, dict[str, int]]:
        """:meth:`RedisBase.delete_idle`, one script call per key (a script may not
        span slots)."""
        deleted, others = 0, dict[str, int]()
        for key in keys:
            count, kinds = self._delete_idle_keys([key], min_idle, no_expiry_only)
            deleted += count
            for kind, n in kinds.items():
                others[kind] = others.get(kind, 0) + n
        return deleted, others

    def delete(self, keys: t.Sequence[bytes]) -> int:
        # Multi-key UNLINK may not span slots: one per key, pipelined per node.
        if not keys:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        with self._errors():
            return sum(pipe.execute())

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        with self._errors():
            return sum(self._delete_one_if_unchanged(item) for item in items if item.value is not None)
