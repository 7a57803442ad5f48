"""Redis as a session store: standalone, TLS, Unix socket, Sentinel and Cluster.

The variants differ only in how the client is built (:func:`open_redis`); the
logic lives in :class:`RedisStore`. Listing never uses ``KEYS``: each node is
walked with ``SCAN`` and a large ``COUNT``, and the TTL and value of a whole batch
come back in one round trip from a small Lua script (a pipeline per node on Cluster,
where one script may not touch keys of several slots). One batch is held at a time.
"""

from __future__ import annotations

import builtins
import contextlib
import typing as t
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
)

from sesstool.errors import InvalidInput, StoreError
from sesstool.stores import redact_url
from sesstool.stores.base import MISSING, STRING, Columns, StoredItem
from sesstool.stores.redis_scripts import COMPARE_AND_SET, DELETE_IDLE, DELETE_IF_UNCHANGED, FETCH_IDLE
from sesstool.stores.scanseen import SeenKeys

SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0

_LFU_MESSAGE = (
    "{where} cannot report idle time: its maxmemory-policy is an LFU policy "
    "(idle time needs an LRU or noeviction policy)"
)


def _seconds(pttl_ms: int) -> int | None:
    """Redis's own rounding of PTTL to TTL, so figures match ``redis-cli ttl``."""
    if pttl_ms < 0:
        return None
    return (pttl_ms + 500) // 1000


def _glob_escape(prefix: bytes) -> bytes:
    out = bytearray()
    for byte in prefix:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


class RedisStore:
    """Sessions in Redis, through a ready redis-py client (standalone or cluster)."""

    name = "redis"

    def __init__(self, client: t.Any, url: str | None = None) -> None:
        self.client = client
        self.url = url or _describe_client(client)
        self.is_cluster = hasattr(client, "get_primaries")
        self._cas = client.register_script(COMPARE_AND_SET)
        self._delete_unchanged = client.register_script(DELETE_IF_UNCHANGED)
        self._fetch_idle = client.register_script(FETCH_IDLE)
        self._delete_idle = client.register_script(DELETE_IDLE)

    # -- reading ---------------------------------------------------------------

    def describe(self) -> str:
        return redact_url(self.url)

    def nodes(self) -> list[t.Any]:
        """A client per node to scan: every primary on Cluster, else the one client."""
        if not self.is_cluster:
            return [self.client]
        with self._errors():
            return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        """Every key under ``prefix``, each once (SCAN may repeat keys: :mod:`.scanseen`)."""
        pattern = _glob_escape(prefix) + b"*"
        seen = SeenKeys()
        for node in self.nodes():
            cursor = 0
            while True:
                with self._errors():
                    cursor, keys = node.scan(cursor=cursor, match=pattern, count=max(batch, 10))
                keys = seen.fresh(keys)
                if keys:
                    yield keys
                if cursor == 0:
                    break

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        for columns in self.scan_columns(prefix, batch=batch):
            yield _items(columns)

    def scan_columns(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[Columns]:
        """:meth:`scan` as :class:`Columns`, without an object per key."""
        if self.is_cluster:
            for keys in self.scan_keys(prefix, batch=batch):
                for start in range(0, len(keys), batch):
                    yield self.fetch_columns(keys[start : start + batch])
            return
        yield from self._scan_overlapped(prefix, batch)

    def _scan_overlapped(self, prefix: bytes, batch: int) -> t.Iterator[Columns]:
        """SCAN and fetch with the server working while the caller works.

        Each round writes the fetch of the keys in hand and the next SCAN in one go,
        then hands the caller the previous batch: the server answers both requests
        while the caller decodes and prints, instead of each waiting for the other.
        """
        pattern = _glob_escape(prefix) + b"*"
        count = b"%d" % max(batch, 10)
        pool = self.client.connection_pool
        seen = SeenKeys()
        with self._errors():
            connection = _checkout(pool)
        try:
            with self._errors():
                connection.send_packed_command([_pack_scan(b"0", pattern, count)])
                cursor, keys = connection.read_response()
            keys = seen.fresh(keys)
            previous: Columns | None = None
            while True:
                request = _pack_fetch(keys) if keys else b""
                if cursor != b"0":
                    request += _pack_scan(cursor, pattern, count)
                with self._errors():
                    if request:
                        connection.send_packed_command([request])
                if previous is not None:
                    yield previous
                with self._errors():
                    previous = self._read_fetch(connection, keys) if keys else None
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

    def _read_fetch(self, connection: t.Any, keys: list[bytes]) -> Columns:
        # One PTTL reply a key: redis-py's Connection.read_response wraps each in
        # about 1 us of bookkeeping (host text, error mapping), a third of what
        # listing a session costs. Its parser reads the same replies; errors are
        # mapped here once a batch instead.
        parser = getattr(connection, "_parser", None)
        read = getattr(parser, "read_response", None) or connection.read_response
        try:
            pttls = [read() for _ in keys]
            values = read()
        except builtins.TimeoutError as e:  # the socket's own timeout
            raise TimeoutError(f"timed out reading from {self.describe()}") from e
        except OSError as e:
            raise ConnectionError(f"error reading from {self.describe()}: {e.strerror or e}") from e
        if set(map(type, pttls)) != {int} or not isinstance(values, list):
            # An error reply (an ACL without PTTL or MGET, say) comes back as a value.
            for reply in (*pttls, values):
                if isinstance(reply, Exception):
                    raise reply
        return self._columns(keys, pttls, values, keep_missing=False)

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        if not keys:
            return []
        keys = list(keys)
        columns = self.fetch_columns(keys, keep_missing=True)
        return _items(columns)

    def fetch_columns(self, keys: list[bytes], *, keep_missing: bool = False) -> Columns:
        """TTL and value of ``keys`` in one round trip; keys gone meanwhile are dropped
        (or, with ``keep_missing``, kept with the kind ``"none"``)."""
        with self._errors():
            if self.is_cluster:
                pttls, values = self._fetch_cluster(keys)
            else:
                pttls, values = self._fetch_pipelined(keys)
        return self._columns(keys, pttls, values, keep_missing=keep_missing)

    def _columns(
        self, keys: list[bytes], pttls: list[int], values: list[bytes | None], *, keep_missing: bool
    ) -> Columns:
        # MGET answers nil both for keys gone and for keys of other types.
        absent = [i for i, value in enumerate(values) if value is None]
        if not absent:
            return Columns(keys, values, pttls, {})
        other = [i for i in absent if pttls[i] != -2]
        kinds: dict[int, str] = dict.fromkeys(absent, MISSING)
        if other:
            with self._errors():
                pipe = self.client.pipeline(transaction=False)
                for i in other:
                    pipe.type(keys[i])
                for i, kind in zip(other, pipe.execute(), strict=True):
                    kinds[i] = kind.decode() if isinstance(kind, bytes) else str(kind)
        if keep_missing:
            return Columns(keys, values, pttls, kinds)
        kept = [i for i in range(len(keys)) if kinds.get(i) != MISSING]
        return Columns(
            [keys[i] for i in kept],
            [values[i] for i in kept],
            [pttls[i] for i in kept],
            {n: kinds[i] for n, i in enumerate(kept) if i in kinds},
        )

    def _fetch_pipelined(self, keys: list[bytes]) -> tuple[list[int], list[bytes | None]]:
        """One PTTL per key and one MGET, written as a single packed pipeline.

        Plain pipelined commands cost the server less than the same calls made
        from a Lua script, and unlike a script they never hold it for a whole
        batch. Packing the RESP here skips redis-py's per-command bookkeeping.
        """
        pool = self.client.connection_pool
        connection = _checkout(pool)
        try:
            connection.send_packed_command([_pack_fetch(keys)])
            read = connection.read_response
            pttls = [read() for _ in keys]
            values = read()
        except BaseException:
            connection.disconnect()  # a half-read reply must not be reused
            raise
        finally:
            pool.release(connection)
        return pttls, values

    def _fetch_cluster(self, keys: list[bytes]) -> tuple[list[int], list[bytes | None]]:
        # A script or MGET may not span slots on Cluster: a non-transactional
        # pipeline, which redis-py groups per node, stands in.
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
            pipe.get(key)
        replies = pipe.execute(raise_on_error=False)
        values = [None if isinstance(v, ResponseError) else v for v in replies[1::2]]
        return list(replies[0::2]), values

    def get(self, key: bytes) -> StoredItem | None:
        item = self.fetch([key])[0]
        return None if item.kind == MISSING else item

    def idle_seconds(self, keys: t.Sequence[bytes]) -> list[int | None]:
        """``OBJECT IDLETIME`` of each key (``None`` when gone), read without touching them.

        :raises StoreError: when the server's maxmemory-policy (an LFU policy) makes
            idle time unavailable.
        """
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.object("idletime", key)
        with self._errors():
            replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError):
                if "LFU" in str(reply) or "maxmemory" in str(reply):
                    raise StoreError(
                        f"{self.describe()} cannot report idle time: its maxmemory-policy is an "
                        "LFU policy (idle time needs an LRU or noeviction policy)"
                    )
                raise StoreError(f"{self.describe()}: OBJECT IDLETIME failed: {reply}")
        return [None if r is None else int(r) for r in replies]

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
        if self.is_cluster:
            return self._fetch_idle_pipelined(keys, min_idle, no_expiry_only, values)
        flat = self._idle_script(self._fetch_idle, keys, min_idle, no_expiry_only, "1" if values else "0")
        selected = []
        for index, key in enumerate(keys):
            idle, pttl, value = flat[3 * index : 3 * index + 3]
            if value is None:
                continue
            if isinstance(value, list):
                kind = value[0].decode() if isinstance(value[0], bytes) else str(value[0])
                item = StoredItem(key, None, _seconds(pttl), kind=kind, ttl_ms=pttl)
            else:
                item = StoredItem(key, value, _seconds(pttl), ttl_ms=pttl)
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
        if self.is_cluster:
            deleted, others = 0, dict[str, int]()
            for key in keys:
                count, kinds = self._delete_idle_keys([key], min_idle, no_expiry_only)
                deleted += count
                for kind, n in kinds.items():
                    others[kind] = others.get(kind, 0) + n
            return deleted, others
        return self._delete_idle_keys(keys, min_idle, no_expiry_only)

    def _delete_idle_keys(
        self, keys: t.Sequence[bytes], min_idle: int, no_expiry_only: bool
    ) -> tuple[int, dict[str, int]]:
        deleted, kinds = self._idle_script(self._delete_idle, keys, min_idle, no_expiry_only)
        others: dict[str, int] = {}
        for kind in kinds:
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            others[name] = others.get(name, 0) + 1
        return int(deleted), others

    def _idle_script(
        self, script: t.Any, keys: t.Sequence[bytes], min_idle: int, no_expiry_only: bool, *extra: str
    ) -> t.Any:
        with self._errors():
            try:
                return script(keys=list(keys), args=[min_idle, "1" if no_expiry_only else "0", *extra])
            except ResponseError as e:
                if "LFU" in str(e):
                    raise StoreError(_LFU_MESSAGE.format(where=self.describe())) from e
                raise

    def _fetch_idle_pipelined(
        self, keys: t.Sequence[bytes], min_idle: int, no_expiry_only: bool, values: bool
    ) -> list[tuple[StoredItem, int]]:
        # Cluster: a script may not span slots. Idle times in one pipeline, then only
        # the qualifying keys: their TTL and type (which leave idle time alone) and,
        # when asked, their values.
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
                StoredItem(
                    key, None, _seconds(pttl), kind=kind.decode() if isinstance(kind, bytes) else str(kind), ttl_ms=pttl
                )
                for (key, _), pttl, kind in zip(chosen, replies[0::2], replies[1::2], strict=True)
            ]
        return [
            (item, idle)
            for item, (_, idle) in zip(items, chosen, strict=True)
            if item.kind != MISSING and (not no_expiry_only or item.ttl_ms == -1)
        ]

    # -- writing ---------------------------------------------------------------

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        with self._errors():
            self.client.set(key, value, ex=ttl if ttl and ttl > 0 else None)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        with self._errors():
            return bool(self.client.set(key, value, ex=ttl if ttl and ttl > 0 else None, nx=True))

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        """Write ``value`` if the key still holds ``item.value``, keeping its TTL.

        When the reply is lost (the connection drops after the server ran the script),
        the key is read again: our exact value there means the write happened.

        :raises StoreError: when the connection failed and the change is not there.
        """
        if item.value is None:
            return False
        try:
            with self._errors():
                written = bool(self._cas(keys=[item.key], args=[item.value, value]))
        except StoreError as e:
            if not _connection_lost(e):
                raise
            if self._holds([item.key], [value])[0]:
                return True
            raise StoreError(f"{e.message.rstrip('.')} during a compare-and-set of "
                             f"{item.key.decode('utf-8', 'backslashreplace')!r}; read again, it does not "
                             "hold the change: nothing was written") from e
        # redis-py may have re-sent the script after a lost reply: the re-run then
        # found our own write in place and said 0.
        return written or self._holds([item.key], [value])[0]

    def delete(self, keys: t.Sequence[bytes]) -> int:
        if not keys:
            return 0
        with self._errors():
            if self.is_cluster:
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.unlink(key)
                return sum(pipe.execute())
            return int(self.client.unlink(*keys))

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        candidates = [item for item in items if item.value is not None]
        if not candidates:
            return 0
        with self._errors():
            if self.is_cluster:
                return sum(self._delete_one_if_unchanged(item) for item in candidates)
            args: list[t.Any] = []
            for item in candidates:
                args += [item.value, -1 if item.ttl_ms is None else item.ttl_ms]
            return int(self._delete_unchanged(keys=[item.key for item in candidates], args=args))

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Unlink every key under ``prefix``, any type; yield (keys seen, keys deleted) per batch.

        Each round trip carries the UNLINK of one batch and the SCAN for the next,
        so deleting costs no round trip of its own.
        """
        if self.is_cluster:
            # Multi-key UNLINK may not span slots: delete() pipelines per key there.
            for keys in self.scan_keys(prefix, batch=batch):
                yield len(keys), self.delete(keys)
            return
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

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        with self._errors():
            return [bool(n) for n in pipe.execute()]

    def set_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> None:
        if not entries:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=ttl if ttl and ttl > 0 else None)
        with self._errors():
            pipe.execute()

    def add_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=ttl if ttl and ttl > 0 else None, nx=True)
        with self._errors():
            return [bool(reply) for reply in pipe.execute()]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        if self.is_cluster:
            return [self.compare_and_set(item, value) for item, value in pairs]
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

    def _holds(self, keys: list[bytes], values: list[bytes]) -> list[bool]:
        """Whether each key holds exactly the matching value now (a fresh read)."""
        items = self.fetch(keys)
        return [item.value == value for item, value in zip(items, values, strict=True)]

    def _delete_one_if_unchanged(self, item: StoredItem) -> int:
        pttl = -1 if item.ttl_ms is None else item.ttl_ms
        return int(self._delete_unchanged(keys=[item.key], args=[item.value, pttl]))

    def expire(self, key: bytes, seconds: int) -> bool:
        with self._errors():
            return bool(self.client.expire(key, seconds))

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        with self._errors():
            return bool(self.client.expireat(key, timestamp))

    def persist(self, key: bytes) -> bool:
        with self._errors():
            if not self.client.exists(key):
                return False
            self.client.persist(key)
            return True

    def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            self.client.close()

    # -- errors ----------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> t.Iterator[None]:
        """Turn redis-py's exceptions into one-line :class:`StoreError`s naming the store."""
        where = self.describe()
        try:
            yield
        except AuthenticationError as e:
            raise StoreError(f"authentication refused by {where}: {_first_line(e)}") from e
        except TimeoutError as e:
            raise StoreError(f"timed out talking to {where}") from e
        except BusyLoadingError as e:
            raise StoreError(f"{where} is loading its dataset; try again shortly") from e
        except ConnectionError as e:
            raise StoreError(f"cannot connect to {where}: {_first_line(e)}") from e
        except NoPermissionError as e:
            raise StoreError(f"{where} refused a command: {_first_line(e)}") from e
        except ResponseError as e:
            message = _first_line(e)
            if message.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                raise StoreError(f"authentication refused by {where}: {message}") from e
            raise StoreError(f"{where} answered with an error: {message}") from e
        except RedisError as e:
            raise StoreError(f"{where} failed: {_first_line(e)}") from e
        except OSError as e:
            raise StoreError(f"cannot reach {where}: {e.strerror or e}") from e


def _pack_fetch(keys: list[bytes]) -> bytes:
    """RESP for one PTTL per key, then one MGET of them all."""
    packed = [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    packed.append(b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1))
    packed += [b"$%d\r\n%s\r\n" % (len(key), key) for key in keys]
    return b"".join(packed)


def _pack_scan(cursor: bytes, pattern: bytes, count: bytes) -> bytes:
    parts = (b"SCAN", cursor, b"MATCH", pattern, b"COUNT", count)
    return b"*6\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def _items(columns: Columns) -> list[StoredItem]:
    items = []
    for i, (key, value, pttl) in enumerate(zip(columns.keys, columns.values, columns.pttls, strict=True)):
        kind = columns.kinds.get(i, STRING)
        if kind == MISSING:
            items.append(StoredItem(key, None, None, kind=MISSING))
        else:
            items.append(StoredItem(key, value, _seconds(pttl), kind=kind, ttl_ms=pttl))
    return items


def _connection_lost(error: StoreError) -> bool:
    """True when ``error`` came from a dropped or timed-out connection, after which
    the server may or may not have run the command."""
    return isinstance(error.__cause__, (ConnectionError, TimeoutError))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _describe_client(client: t.Any) -> str:
    """A URL naming the server a ready client talks to (never its password)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "redis (app client)"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if kwargs.get("ssl") or "ssl_cert_reqs" in kwargs else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _timeouts() -> dict[str, float]:
    return {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        host, _, port = part.rpartition(":") if part.count(":") == 1 or part.startswith("[") else (part, "", "")
        if not host:
            host, port = part, ""
        try:
            hosts.append((host.strip("[]"), int(port) if port else default_port))
        except ValueError:
            raise InvalidInput(f"invalid port in store URL host {part!r}") from None
    if not hosts:
        raise InvalidInput("the store URL names no host")
    return hosts


def open_redis(url: str, *, client: t.Any = None) -> RedisStore:
    """Build a :class:`RedisStore` for a ``redis``, ``rediss``, ``unix``,
    ``redis+sentinel`` or ``redis+cluster`` URL, or around a ready ``client``.

    :raises InvalidInput: for a malformed URL.
    """
    if client is not None:
        return RedisStore(client, url if "://" in url else None)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("redis", "rediss", "unix"):
            built = redis.Redis.from_url(url, **_timeouts())
        elif scheme == "redis+sentinel":
            built = _sentinel_client(parts)
        elif scheme == "redis+cluster":
            built = _cluster_client(parts)
        else:
            raise InvalidInput(f"not a Redis URL: {redact_url(url)}")
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"invalid store URL {redact_url(url)}: {e}") from e
    except (RedisError, RedisClusterException) as e:
        # RedisClusterException is no RedisError: a cluster with no reachable node
        # raises it while the client is built.
        raise StoreError(f"cannot connect to {redact_url(url)}: {_first_line(e)}") from e
    return RedisStore(built, url)


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    userinfo, hosts = netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) or None), hosts


def _sentinel_client(parts: t.Any) -> t.Any:
    from redis.sentinel import Sentinel

    user, password, hosts = _userinfo(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise InvalidInput("a redis+sentinel:// URL needs the service name: redis+sentinel://host:26379/mymaster[/db]")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else int(parse_qs(parts.query).get("db", ["0"])[0])
    # Typed keywords, not **dict: redis-py types each Sentinel argument since 8.x.
    sentinels = _hosts(hosts, 26379)
    sentinel_kwargs: dict[str, t.Any] = _timeouts()
    if password and _sentinel_takes_password(sentinels, password):
        sentinel_kwargs["password"] = password
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs=sentinel_kwargs,
        username=user,
        password=password,
        db=db,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
    return sentinel.master_for(service)


def _sentinel_takes_password(sentinels: list[tuple[str, int]], password: str) -> bool:
    """Whether the sentinels want the URL's password too.

    The URL carries one password, the primary's. Sentinels are often run without
    one, and then AUTH fails; some redis-py versions ignore that failure, others
    do not, so ask the first sentinel that answers once, up front.
    """
    for host, port in sentinels:
        probe = redis.Redis(
            host=host,
            port=port,
            password=password,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        try:
            probe.ping()
            return True
        except redis.AuthenticationError as e:
            return "without any password configured" not in str(e)
        except redis.RedisError:
            continue
        finally:
            probe.close()
    return True


def _cluster_client(parts: t.Any) -> t.Any:
    from redis.cluster import ClusterNode, RedisCluster

    user, password, hosts = _userinfo(parts.netloc)
    nodes = [ClusterNode(host, port) for host, port in _hosts(hosts, 6379)]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=nodes,
        username=user,
        password=password,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )


def _checkout(pool: t.Any) -> t.Any:
    """A connection from ``pool`` on every redis-py the dependency range allows.

    redis-py before 5.3 requires a command name (it never uses it for a plain
    pool); 5.3 and later deprecate passing one.
    """
    if _POOL_NEEDS_NAME is None:
        _probe_pool(pool)
    return pool.get_connection("PING") if _POOL_NEEDS_NAME else pool.get_connection()


_POOL_NEEDS_NAME: bool | None = None


def _probe_pool(pool: t.Any) -> None:
    import inspect

    global _POOL_NEEDS_NAME
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    _POOL_NEEDS_NAME = parameter is not None and parameter.default is inspect.Parameter.empty

