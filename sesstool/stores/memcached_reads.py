"""Reading memcached: servers, routing, listing and reads, and nothing that writes.

:class:`MemcachedReader` is everything a read-only command uses; it has no method
that sends a write, and the connections it reads on refuse one (see
:mod:`sesstool.stores.memcached`, which adds the writes).
"""

from __future__ import annotations

import functools
import time
import typing as t

from sesstool.errors import InvalidInput, StoreError
from sesstool.stores import memcached_commands as commands
from sesstool.stores.base import MISSING, STRING, Capability, Columns, ExpiredPurge, Store, StoredItem, python_warning
from sesstool.stores.memcached_commands import CheckedKeys, check_key
from sesstool.stores.memcached_listing import (
    InvalidKeys,
    decode_expiry,
    decode_keys,
    expiry_lines,
    joined,
    listed,
    regrouped,
)
from sesstool.stores.memcached_replies import (
    mg_columns,
    read_gets,
    read_idle,
    read_mg,
    read_pipelined,
    read_stat,
    set_expiry,
    speaks_meta,
)
from sesstool.stores.memcached_routing import HASHES, crc32_bucket, one_at_a_time
from sesstool.stores.memcached_wire import CasToken, Connection, ItemVersion, iter_dump, server_name, uri_encode
from sesstool.stores.parallel import merged

if t.TYPE_CHECKING:
    from sesstool.stores.changes import Feed

R = t.TypeVar("R")

TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
MAX_TIMEOUT = 3600.0
BUSY_WAIT = 10.0  # seconds to wait for another dump on the same server to end
DUMP_ATTEMPTS = 4  # dumps a pre-1.6 get may need to find one item's expiry
#: Keys per request. Small enough that a request always fits in the socket buffers
#: while the previous reply is unread (pipelining cannot deadlock), large enough
#: that round trips do not dominate.
REQUEST_KEYS = 500


class _Server:
    """One server of the store: its name for hashing, its connections, its protocol.

    ``reader`` serves every read and can only read; ``writer`` is opened on the
    first write, and never when the store is read-only.
    """

    def __init__(self, index: int, host: str, port: int, node: str, *, timeout: float,
                 connect_timeout: float, meta: bool | None, read_only: bool) -> None:  # fmt: skip
        self.index = index
        self.host, self.port = host, port
        self.node = node  # the name the app's hasher knows it by
        self.name = server_name(host, port)
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.read_only = read_only
        self.deadline: float | None = None
        self.reader = self.connection()
        self._writer: Connection | None = None
        self.meta = meta
        self.token = type(f"CasToken{index}", (CasToken,), {"__slots__": (), "server": index})

    def connection(self, *, read_only: bool = True) -> Connection:
        return Connection(self.host, self.port, timeout=self.timeout, connect_timeout=self.connect_timeout,
                          read_only=read_only, deadline=self.deadline)  # fmt: skip

    @property
    def writer(self) -> Connection:
        if self.read_only:
            raise InvalidInput(f"the memcached store at {self.name} is opened read-only: this command would write")
        if self._writer is None:
            self._writer = self.connection(read_only=False)
        return self._writer

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        for conn in (self.reader, self._writer):
            if conn is not None:
                conn.deadline = deadline

    def close(self) -> None:
        self.reader.close()
        if self._writer is not None:
            self._writer.close()

    def uses_meta(self) -> bool:
        """Whether the server speaks meta commands (memcached 1.6+), asked once."""
        if self.meta is None:
            self.meta = speaks_meta(self.reader, self.reader.call(commands.version(), 1, "version")[0])
        return self.meta


class MemcachedReader(Store):
    """Sessions on one or more memcached servers, read.

    :param servers: ``(host, port)`` pairs, in the app's order.
    :param hash: how the app's client spreads keys, one of :data:`HASHES`.
    :param hasher: a ready pymemcache hasher (``get_node(str)``) to use instead.
    :param nodes: the hasher's name for each server (``host:port`` as the app spells it).
    :param timeout: seconds each receive or send may take; ``connect_timeout`` each connect.
    :param meta: force meta commands on (``True``) or off (``False``); ``None`` asks
        each server's version.
    :param read_only: refuse every write (:class:`InvalidInput`) before it is sent.
    :param warn: told about keys a listing skipped (default: :func:`warnings.warn`).
    """

    capabilities = frozenset({Capability.IDLE_TIME, Capability.ENUMERABLE_IDS, Capability.CHANGE_FEED})
    expired_purge = ExpiredPurge.SERVER_RECLAIM
    value_limit = 1024 * 1024  # memcached's default item size (-I 1m)

    def __init__(
        self,
        servers: t.Sequence[tuple[str, int]],
        *,
        hash: str = "rendezvous",
        hasher: t.Any = None,
        nodes: t.Sequence[str] | None = None,
        timeout: float = TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        meta: bool | None = None,
        url: str | None = None,
        read_only: bool = False,
        warn: t.Callable[[str], None] | None = None,
    ) -> None:
        if not servers:
            raise InvalidInput("a memcached store needs at least one server")
        if hash not in HASHES:
            raise InvalidInput(f"unknown memcached hash {hash!r}: use {' or '.join(HASHES)}")
        names = list(nodes) if nodes is not None else [f"{h}:{p}" for h, p in servers]
        self.servers = [
            _Server(
                i,
                host,
                port,
                names[i],
                timeout=timeout,
                connect_timeout=connect_timeout,
                meta=meta,
                read_only=read_only,
            )
            for i, (host, port) in enumerate(servers)
        ]
        self._by_node = {server.node: server for server in self.servers}
        self.hash = hash
        if hasher is None and hash == "rendezvous" and len(self.servers) > 1:
            from pymemcache.client.rendezvous import RendezvousHash

            hasher = RendezvousHash(nodes=list(names))
        self._hasher = hasher
        self.url = url or "memcached://" + ",".join(s.name for s in self.servers)
        if meta is False:  # idle time comes from meta commands only
            self.capabilities = self.capabilities - {Capability.IDLE_TIME}
        self.warn = warn or python_warning

    def set_deadline(self, deadline: float | None) -> None:
        """Bound every later send, receive and connect by one :func:`time.monotonic`
        instant (the command's overall deadline); past it they raise :class:`StoreError`."""
        for server in self.servers:
            server.set_deadline(deadline)

    # -- routing -------------------------------------------------------------------

    def server_for(self, key: bytes) -> _Server:
        """The server the app's client reads ``key`` from."""
        if len(self.servers) == 1:
            return self.servers[0]
        if self._hasher is None and self.hash == "crc32":
            return self.servers[crc32_bucket(key) % len(self.servers)]
        if self._hasher is None and self.hash == "modula":
            return self.servers[one_at_a_time(key) % len(self.servers)]
        # pymemcache hashes the key as the app passed it: a str (Flask-Session's
        # store_id); a bytes key would hash its repr and land elsewhere.
        node = self._hasher.get_node(key.decode("utf-8", "surrogateescape"))
        return self._by_node[node]

    def _origin(self, item: StoredItem) -> _Server:
        token = item.version.token if isinstance(item.version, ItemVersion) else None
        if isinstance(token, CasToken) and 0 <= token.server < len(self.servers):
            return self.servers[token.server]
        return self.server_for(item.key)

    def _group(self, keys: t.Iterable[bytes]) -> dict[_Server, list[bytes]]:
        groups: dict[_Server, list[bytes]] = {}
        for key in keys:
            groups.setdefault(self.server_for(check_key(key)), []).append(key)
        return groups

    # -- listing -------------------------------------------------------------------

    def describe(self) -> str:
        return self.url

    def watch(self, prefix: bytes, *, idle: float = 1.0, enable: bool = False) -> Feed:
        """``watch mutations`` (and ``deletions``) on every server; see :mod:`.memcached_watch`.
        Nothing needs enabling on memcached: ``enable`` changes nothing."""
        from sesstool.stores.memcached_watch import memcached_feed

        return memcached_feed(self, prefix, idle=idle)

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        """The keys under ``prefix``, every server dumped at once (:mod:`.parallel`)."""

        def keys_of(server: _Server) -> t.Iterator[list[bytes]]:
            return (list(keys) for keys in self._key_chunks(server, prefix, batch))

        return merged([functools.partial(keys_of, server) for server in self.servers])

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """Every item under ``prefix``, ``batch`` items at a time, every server read at
        once (a thread a server: :mod:`.parallel`).

        The dump and the value reads use their own read-only connections, so
        commands the caller sends between batches (deletes while purging) do not
        interleave. One request is in flight while the previous reply is parsed,
        so memcached and Python work at the same time.
        """
        return merged([functools.partial(self._scan_server, server, prefix, batch) for server in self.servers])

    def scan_columns(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[Columns]:
        """:meth:`scan` as :class:`Columns` (the plain listing), parsed straight from
        the replies without an object per item; servers before 1.6 as :meth:`scan`."""

        if not all(server.uses_meta() for server in self.servers):
            return super().scan_columns(prefix, batch=batch)

        def columns_of(server: _Server) -> t.Iterator[Columns]:
            return joined(self._scan_meta(server, prefix, batch, mg_columns, marked=True), batch)

        return merged([functools.partial(columns_of, server) for server in self.servers])

    def _scan_server(self, server: _Server, prefix: bytes, batch: int) -> t.Iterator[list[StoredItem]]:
        if server.uses_meta():
            items = self._scan_meta(server, prefix, batch, functools.partial(read_mg, token=server.token))
            return regrouped(items, batch)
        return self._scan_classic(server, prefix, batch)

    def _scan_meta(self, server: _Server, prefix: bytes, batch: int,
                   parse: t.Callable[[Connection, t.Sequence[bytes]], R], *,
                   marked: bool = False) -> t.Iterator[R]:  # fmt: skip
        """``parse`` of each request's replies, on a connection of its own."""
        conn = server.connection()
        chunks = self._key_chunks(server, prefix, min(batch, REQUEST_KEYS))
        try:
            yield from read_pipelined(conn, chunks, parse, marked=marked)
        finally:
            chunks.close()  # drops the spool now, not when garbage is collected
            conn.close()

    def _key_chunks(self, server: _Server, prefix: bytes, size: int) -> t.Generator[CheckedKeys, None, None]:
        """The valid keys under ``prefix`` that ``server`` dumps, about ``size`` at a time."""
        invalid = InvalidKeys(self.warn)
        for lines in listed(self._dump(server), prefix, size, with_expiry=False):
            keys = decode_keys(prefix, lines, invalid, server.name)
            if keys:
                yield keys
        invalid.finish(server.name)

    def _scan_classic(self, server: _Server, prefix: bytes, batch: int) -> t.Iterator[list[StoredItem]]:
        conn = server.connection()
        lines = listed(self._dump(server), prefix, min(batch, REQUEST_KEYS), with_expiry=True)
        invalid = InvalidKeys(self.warn)

        def chunks() -> t.Iterator[list[StoredItem]]:
            for chunk in lines:
                expiry = decode_expiry(prefix, chunk, invalid, server.name)
                if expiry:
                    yield read_gets(conn, list(expiry), server.token, expiry)
            invalid.finish(server.name)

        try:
            yield from regrouped(chunks(), batch)
        finally:
            lines.close()
            conn.close()

    def _dump(self, server: _Server) -> t.Iterator[bytes]:
        deadline = time.monotonic() + BUSY_WAIT

        def retry_busy() -> bool:
            time.sleep(0.2)
            return time.monotonic() < deadline

        conn = server.connection()
        try:
            yield from iter_dump(conn, retry_busy=retry_busy)
        finally:
            conn.close()

    # -- reading -------------------------------------------------------------------

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        found: dict[bytes, StoredItem] = {}
        for server, group in self._group(keys).items():
            found.update((item.key, item) for item in self._read(server, group))
        return [found.get(key) or StoredItem(key, None, None, kind=MISSING) for key in keys]

    def get(self, key: bytes) -> StoredItem | None:
        items = self._read(self.server_for(check_key(key)), [key])
        return items[0] if items else None

    def _read(self, server: _Server, keys: list[bytes]) -> list[StoredItem]:
        chunks = [keys[i : i + REQUEST_KEYS] for i in range(0, len(keys), REQUEST_KEYS)]
        items: list[StoredItem] = []
        if server.uses_meta():
            for got in read_pipelined(server.reader, chunks, functools.partial(read_mg, token=server.token)):
                items += got
            return items
        for chunk in chunks:
            items += read_gets(server.reader, chunk, server.token, None)
        if items:
            self._expiry_from_dump(server, items)
        return items

    def _expiry_from_dump(self, server: _Server, items: list[StoredItem]) -> None:
        # Before 1.6 no command returns an item's expiry: only the dump shows it.
        # The gets just read marked the items fetched, and the LRU maintainer may be
        # moving them between LRUs while the crawler passes, which skips them: look
        # again, briefly, for any the dump missed.
        wanted = {uri_encode(item.key): item for item in items}
        for attempt in range(DUMP_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            now = int(time.time())
            for block in self._dump(server):
                for encoded, exp in expiry_lines(block):
                    item = wanted.pop(encoded, None)
                    if item is not None:
                        set_expiry(item, int(exp), now)
            if not wanted:
                return

    def idle_seconds(self, keys: t.Sequence[bytes]) -> list[int | None]:
        """Seconds since each key was last written or read (``None`` when gone), read
        without touching it. memcached renews this on a read at most once a minute.

        :raises StoreError: on memcached before 1.6 (no meta commands).
        """
        return [None if meta is None else meta[0] for meta in self._idle_and_ttl(keys)]

    def fetch_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
    ) -> list[tuple[StoredItem, int]]:
        """The keys idle for more than ``min_idle`` seconds, with TTL, idle time and
        (with ``values``) value; with ``no_expiry_only``, only those that never
        expire. Values are read only for the keys that qualify, and no read here
        renews an item's idle time."""
        chosen: dict[bytes, tuple[int, int | None, int]] = {}
        for key, meta in zip(keys, self._idle_and_ttl(keys), strict=True):
            if meta is not None and meta[0] > min_idle and (not no_expiry_only or meta[1] is None):
                chosen[key] = meta
        if not values:
            return [
                (StoredItem(key, None, ttl, STRING), idle)
                for key, (idle, ttl, _) in chosen.items()
            ]
        items = self.fetch(list(chosen))
        return [(item, chosen[item.key][0]) for item in items if item.kind != MISSING]

    def _idle_and_ttl(self, keys: t.Sequence[bytes]) -> list[tuple[int, int | None, int] | None]:
        """``(idle seconds, ttl, cas)`` of each key (``None`` when gone), untouched."""
        if Capability.IDLE_TIME not in self.capabilities:
            raise self.unsupported(Capability.IDLE_TIME)
        found: dict[bytes, tuple[int, int | None, int]] = {}
        for server, group in self._group(keys).items():
            if not server.uses_meta():
                raise StoreError(f"memcached at {server.name} cannot report idle time: it needs 1.6 or later")
            for start in range(0, len(group), REQUEST_KEYS):
                chunk = group[start : start + REQUEST_KEYS]
                server.reader.send(commands.mg_idle(chunk))
                found.update(read_idle(server.reader, chunk))
        return [found.get(key) for key in keys]

    def _stat(self, server: _Server, name: bytes) -> int:
        server.reader.send(commands.stats())
        return read_stat(server.reader, name)

    def close(self) -> None:
        for server in self.servers:
            server.close()

