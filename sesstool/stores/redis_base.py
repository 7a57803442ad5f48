"""What every Redis topology shares: reads, writes and scripts over one redis-py client.

:class:`RedisBase` holds the logic; :class:`~sesstool.stores.redis.RedisStore`
(standalone, TLS, Unix socket, Sentinel: one server answers every key) and
:class:`~sesstool.stores.redis_cluster.RedisClusterStore` (keys spread over slots
and nodes) add what each does its own way. Clients are built from URLs in
:mod:`~sesstool.stores.redis_urls`.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import itertools
import typing as t

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    NoPermissionError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from sesstool.errors import StoreError
from sesstool.redact import redact_url
from sesstool.stores.base import MISSING, STRING, Capability, Columns, ExpiredPurge, Store, StoredItem, write_ttl
from sesstool.stores.parallel import merged
from sesstool.stores.redis_scripts import COMPARE_AND_SET, DELETE_IDLE, DELETE_IF_UNCHANGED, FETCH_IDLE
from sesstool.stores.scanseen import SeenKeys

if t.TYPE_CHECKING:
    from sesstool.stores.changes import Feed

_LFU_MESSAGE = (
    "{where} cannot report idle time: its maxmemory-policy is an LFU policy "
    "(idle time needs an LRU or noeviction policy)"
)


class RedisBase(Store):
    """Sessions in Redis, through a ready redis-py client."""

    capabilities = frozenset({
        Capability.WRITE, Capability.PER_KEY_TTL, Capability.PERSIST, Capability.COMPARE_AND_SET,
        Capability.CONDITIONAL_DELETE, Capability.IDLE_TIME, Capability.ENUMERABLE_IDS,
        Capability.CHANGE_FEED,
    })
    expired_purge = ExpiredPurge.IDLE_WITHOUT_TTL

    def __init__(self, client: t.Any, url: str | None = None) -> None:
        self.client = client
        self.url = url or _describe_client(client)
        self._cas = client.register_script(COMPARE_AND_SET)
        self._delete_unchanged = client.register_script(DELETE_IF_UNCHANGED)
        self._fetch_idle = client.register_script(FETCH_IDLE)
        self._delete_idle = client.register_script(DELETE_IDLE)

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> RedisBase:
        from sesstool.stores.redis_urls import open_redis

        return open_redis(url, client=client)

    # -- reading ---------------------------------------------------------------

    def describe(self) -> str:
        return redact_url(self.url)

    def nodes(self) -> list[t.Any]:
        """A client per node to scan."""
        return [self.client]

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        """Every key under ``prefix``, each once (SCAN may repeat keys: :mod:`.scanseen`);
        several nodes are scanned at once (:mod:`.parallel`)."""
        pattern = _glob_escape(prefix) + b"*"
        return merged([functools.partial(self._node_keys, node, pattern, batch) for node in self.nodes()])

    def _node_keys(self, node: t.Any, pattern: bytes, batch: int) -> t.Iterator[list[bytes]]:
        # A key lives on one node only, so repeats are looked for node by node.
        seen = SeenKeys()
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
            pttls, values = self._fetch_replies(keys)
        return self._columns(keys, pttls, values, keep_missing=keep_missing)

    @abc.abstractmethod
    def _fetch_replies(self, keys: list[bytes]) -> tuple[list[int], list[bytes | None]]:
        """The PTTL and value (``None`` for another type or none) of each key."""

    def read_ttls(self, items: t.Sequence[StoredItem]) -> None:
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)  # per node on a Cluster
        for item in items:
            pipe.pttl(item.key)
        with self._errors():
            pttls = pipe.execute()
        if not all(type(pttl) is int for pttl in pttls):
            raise StoreError(f"{self.describe()} answered a PTTL with something else")
        for item, pttl in zip(items, pttls, strict=True):
            if pttl == -2:  # gone since its value was read
                item.value, item.kind = None, MISSING
            else:
                item.ttl, item.version = _seconds(pttl), pttl

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

    # -- writing ---------------------------------------------------------------

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        with self._errors():
            self.client.set(key, value, ex=write_ttl(key, ttl))

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        with self._errors():
            return bool(self.client.set(key, value, ex=write_ttl(key, ttl), nx=True))

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
            pipe.set(key, value, ex=write_ttl(key, ttl))
        with self._errors():
            pipe.execute()

    def add_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        if not entries:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=write_ttl(key, ttl), nx=True)
        with self._errors():
            return [bool(reply) for reply in pipe.execute()]

    def _holds(self, keys: list[bytes], values: list[bytes]) -> list[bool]:
        """Whether each key holds exactly the matching value now (a fresh read)."""
        items = self.fetch(keys)
        return [item.value == value for item, value in zip(items, values, strict=True)]

    def _delete_one_if_unchanged(self, item: StoredItem) -> int:
        pttl = _pttl(item)
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

    # -- change feed -------------------------------------------------------------

    def watch(self, prefix: bytes, *, idle: float = 1.0, enable: bool = False) -> Feed:
        """Keyspace notifications of every node (see :mod:`.redis_watch`)."""
        from sesstool.stores.redis_watch import redis_feed

        return redis_feed(self, prefix, db=self.database(), idle=idle, enable=enable)

    def database(self) -> int:
        """The database number keys live in (a Cluster has only 0)."""
        try:
            return int(self.client.connection_pool.connection_kwargs.get("db") or 0)
        except (AttributeError, TypeError, ValueError):
            return 0

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


def _pttl(item: StoredItem) -> int:
    """The PTTL ``item`` was read with (its version here): -1 for one not read from Redis."""
    return item.version if isinstance(item.version, int) else -1


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


def _items(columns: Columns) -> list[StoredItem]:
    items = []
    for i, (key, value, pttl) in enumerate(zip(columns.keys, columns.values, columns.pttls, strict=True)):
        kind = columns.kinds.get(i, STRING)
        if kind == MISSING:
            items.append(StoredItem(key, None, None, kind=MISSING))
        else:
            items.append(StoredItem(key, value, _seconds(pttl), kind, pttl))
    return items


def _value_items(columns: Columns) -> list[StoredItem]:
    """:func:`_items` of columns fetched without TTLs: ``ttl`` ``None``, for ``read_ttls``."""
    if not columns.kinds:  # the common batch, all strings: built in C
        return list(map(StoredItem, columns.keys, columns.values, itertools.repeat(None)))
    return [StoredItem(key, value, None, columns.kinds.get(i, STRING))
            for i, (key, value) in enumerate(zip(columns.keys, columns.values, strict=True))]  # fmt: skip


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
