"""memcached as a session store: one server or several, as the app's client spreads keys.

memcached has no SCAN. Listing asks every server for ``lru_crawler metadump all``
(memcached 1.4.31 or later with the LRU crawler on), streamed from the socket, and
then reads the values of each batch of keys from the server that listed them,
pipelined. Both are raw protocol (:mod:`sesstool.stores.memcached_wire`).

- The dump is read to its end before values are read (the keys wait in a spooled
  file: memory up to 8 MiB, disk past it). The crawler only try-locks the items it
  passes and skips the ones in use, so reading values during the dump made it miss
  about 20 items in a million. Traffic from the app can still make a dump miss an
  item in use at that instant: memcached offers no consistent snapshot.
- On memcached 1.6+, values come from meta commands (``mg <key> v t c f u``):
  value, seconds left, cas token and client flags in one reply, and with ``u`` the
  read neither bumps the item in the LRU nor renews its last-access time, so a
  listing does not disturb eviction or make sessions look used (``purge --idle``).
  That costs the server about 0.5 microseconds a key more than ``gets``. Older
  servers get ``gets``, with the expiry from the dump.
- Named keys go to the server the app's client would pick: ``hash=rendezvous``
  (pymemcache ``HashClient``, Flask-Session 0.8; the default, through pymemcache's
  own hasher and ``host:port`` spelled as the app spells it), ``crc32``
  (python-memcached) or ``modula`` (pylibmc's default). An item read by a scan
  goes back to the server it was read from (its :class:`CasToken` remembers).

Expiry follows memcached's 30-day rule: an exptime over 30 days is an absolute
Unix time (Flask-Session writes a 31-day lifetime so); a relative 31 days would
expire at once.

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

import binascii
import re
import tempfile
import time
import typing as t
from urllib.parse import parse_qs, urlsplit

from sesstool.errors import InvalidInput, StoreError, UndecodableValue
from sesstool.stores.base import MISSING, STRING, StoredItem
from sesstool.stores.memcached_wire import (
    FLAG_INTEGER,
    FLAG_LONG,
    FLAG_PICKLE,
    FLAG_TEXT,
    FLAG_ZLIB,
    MAX_DECOMPRESSED,
    CasToken,
    Connection,
    decompress,
    iter_dump,
    read_gets,
    read_pipelined,
    server_name,
    set_expiry,
    uri_decode,
    uri_encode,
)

__all__ = [
    "FLAG_INTEGER",
    "FLAG_LONG",
    "FLAG_PICKLE",
    "FLAG_TEXT",
    "FLAG_ZLIB",
    "HASHES",
    "MAX_DECOMPRESSED",
    "THIRTY_DAYS",
    "CasToken",
    "MemcachedStore",
    "decompress",
    "memcached_exptime",
    "one_at_a_time",
    "open_memcached",
    "parse_url",
]

DEFAULT_PORT = 11211
THIRTY_DAYS = 60 * 60 * 24 * 30  # memcached's REALTIME_MAXDELTA
TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
BUSY_WAIT = 10.0  # seconds to wait for another dump on the same server to end
DUMP_ATTEMPTS = 4  # dumps a pre-1.6 get may need to find one item's expiry
#: Keys per request. Small enough that a request always fits in the socket buffers
#: while the previous reply is unread (pipelining cannot deadlock), large enough
#: that round trips do not dominate.
REQUEST_KEYS = 500
SPOOL_MEMORY = 8 * 1024 * 1024  # listed keys kept in memory before spilling to disk
SPOOL_READ = 256 * 1024

#: How the app's client picks a server for a key: ``rendezvous`` (pymemcache
#: ``HashClient``), ``crc32`` (python-memcached's buckets), ``modula`` (libmemcached's
#: default, as pylibmc uses it: one-at-a-time hash modulo the server count).
HASHES = ("rendezvous", "crc32", "modula")

_KEY_BAD = re.compile(rb"[\x00-\x20\x7f]")


def memcached_exptime(ttl: int | None, now: int | None = None) -> int:
    """The exptime to send for ``ttl`` seconds to live: 0 for none, -1 for already
    expired, an absolute Unix time past 30 days (memcached's rule)."""
    if ttl is None:
        return 0
    if ttl <= 0:
        return -1
    if ttl <= THIRTY_DAYS:
        return ttl
    return (int(time.time()) if now is None else now) + ttl


def one_at_a_time(key: bytes) -> int:
    """Jenkins' one-at-a-time hash as libmemcached computes it (its default hash)."""
    value = 0
    for byte in key:
        # libmemcached reads the key as (signed) char: bytes over 0x7F sign-extend.
        value = (value + (byte if byte < 0x80 else byte | 0xFFFFFF00)) & 0xFFFFFFFF
        value = (value + (value << 10)) & 0xFFFFFFFF
        value ^= value >> 6
    value = (value + (value << 3)) & 0xFFFFFFFF
    value ^= value >> 11
    return (value + (value << 15)) & 0xFFFFFFFF


def _looks_pickled(value: bytes) -> bool:
    # Protocol 2+ starts with PROTO (0x80); 0 and 1 with MARK/EMPTY_DICT; all end in STOP.
    return value[:1] in (b"\x80", b"(", b"}") and value.endswith(b".")


class _Server:
    """One server of the store: its name for hashing, its command connection, its protocol."""

    def __init__(self, index: int, host: str, port: int, node: str, timeout: float,
                 connect_timeout: float, meta: bool | None) -> None:  # fmt: skip
        self.index = index
        self.host, self.port = host, port
        self.node = node  # the name the app's hasher knows it by
        self.name = server_name(host, port)
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.conn = self.connection()
        self.meta = meta
        self.token = type(f"CasToken{index}", (CasToken,), {"__slots__": (), "server": index})

    def connection(self) -> Connection:
        return Connection(self.host, self.port, timeout=self.timeout, connect_timeout=self.connect_timeout)

    def uses_meta(self) -> bool:
        """Whether the server speaks meta commands (memcached 1.6+), asked once."""
        if self.meta is None:
            line = self.conn.call(b"version\r\n", 1, "version")[0]
            match = re.match(rb"VERSION (\d+)\.(\d+)", line)
            self.meta = bool(match) and (int(match[1]), int(match[2])) >= (1, 6)  # type: ignore[index]
        return bool(self.meta)


class MemcachedStore:
    """Sessions on one or more memcached servers.

    :param servers: ``(host, port)`` pairs, in the app's order.
    :param hash: how the app's client spreads keys, one of :data:`HASHES`.
    :param hasher: a ready pymemcache hasher (``get_node(str)``) to use instead.
    :param nodes: the hasher's name for each server (``host:port`` as the app spells it).
    :param meta: force meta commands on (``True``) or off (``False``); ``None`` asks
        each server's version.
    """

    name = "memcached"

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
    ) -> None:
        if not servers:
            raise InvalidInput("a memcached store needs at least one server")
        if hash not in HASHES:
            raise InvalidInput(f"unknown memcached hash {hash!r}: use {' or '.join(HASHES)}")
        names = list(nodes) if nodes is not None else [f"{h}:{p}" for h, p in servers]
        self.servers = [
            _Server(i, host, port, names[i], timeout, connect_timeout, meta) for i, (host, port) in enumerate(servers)
        ]
        self._by_node = {server.node: server for server in self.servers}
        self.hash = hash
        if hasher is None and hash == "rendezvous" and len(self.servers) > 1:
            from pymemcache.client.rendezvous import RendezvousHash

            hasher = RendezvousHash(nodes=list(names))
        self._hasher = hasher
        self.url = url or "memcached://" + ",".join(s.name for s in self.servers)

    # -- routing -------------------------------------------------------------------

    def server_for(self, key: bytes) -> _Server:
        """The server the app's client reads ``key`` from."""
        if len(self.servers) == 1:
            return self.servers[0]
        if self._hasher is None and self.hash == "crc32":
            # python-memcached: buckets[cmemcache_hash(key) % len(buckets)], weight 1.
            bucket = ((binascii.crc32(key) & 0xFFFFFFFF) >> 16) & 0x7FFF
            return self.servers[bucket % len(self.servers)]
        if self._hasher is None and self.hash == "modula":
            return self.servers[one_at_a_time(key) % len(self.servers)]
        # pymemcache hashes the key as the app passed it: a str (Flask-Session's
        # store_id); a bytes key would hash its repr and land elsewhere.
        node = self._hasher.get_node(key.decode("utf-8", "surrogateescape"))
        return self._by_node[node]

    def _origin(self, item: StoredItem) -> _Server:
        version = item.version
        if isinstance(version, CasToken) and 0 <= version.server < len(self.servers):
            return self.servers[version.server]
        return self.server_for(item.key)

    # -- reading -------------------------------------------------------------------

    def describe(self) -> str:
        return self.url

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        for server in self.servers:
            yield from self._key_chunks(server, prefix, batch)

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """Every item under ``prefix``, server by server, ``batch`` items at a time.

        The dump and the value reads use their own connections, so commands the
        caller sends between batches (deletes while purging) do not interleave. One
        request is in flight while the previous reply is parsed, so memcached and
        Python work at the same time.
        """
        for server in self.servers:
            if server.uses_meta():
                yield from self._scan_meta(server, prefix, batch)
            else:
                yield from self._scan_classic(server, prefix, batch)

    def _scan_meta(self, server: _Server, prefix: bytes, batch: int) -> t.Iterator[list[StoredItem]]:
        conn = server.connection()
        chunks = self._key_chunks(server, prefix, min(batch, REQUEST_KEYS))
        try:
            yield from _regroup(read_pipelined(conn, chunks, server.token), batch)
        finally:
            chunks.close()  # drops the spool now, not when garbage is collected
            conn.close()

    def _key_chunks(self, server: _Server, prefix: bytes, size: int) -> t.Generator[list[bytes], None, None]:
        """The keys under ``prefix`` that ``server`` dumps, ``size`` at a time."""
        for lines in self._listed(server, prefix, size, with_expiry=False):
            if b"%" in b"".join(lines):
                yield [prefix + uri_decode(rest) for rest in lines]
            else:  # the usual case (Flask-Session ids are URL-safe): no decoding
                yield [prefix + rest for rest in lines]

    def _listed(self, server: _Server, prefix: bytes, size: int, *,
                with_expiry: bool) -> t.Generator[list[bytes], None, None]:  # fmt: skip
        """What ``server`` dumps under ``prefix``, ``size`` lines at a time: the
        encoded rest of each key (and its ``exp``, space-separated, if asked).

        The whole dump is read before the first lines are yielded: the crawler skips
        any item whose lock is held at the instant it passes (it only try-locks), so
        reading values while it runs makes it miss some (about 20 in a million in a
        test). The lines wait in a spooled file, in memory up to
        :data:`SPOOL_MEMORY` and on disk past it, so memory stays flat.
        """
        encoded = re.escape(uri_encode(prefix))
        if with_expiry:
            pattern = re.compile(b"key=" + encoded + rb"(\S*) exp=(-?\d+)")
        else:
            pattern = re.compile(b"key=" + encoded + rb"(\S*)")
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            for block in self._dump(server):
                found = pattern.findall(block)
                if found:
                    if with_expiry:
                        found = [b"%s %s" % pair for pair in found]
                    spool.write(b"\n".join(found))
                    spool.write(b"\n")
            spool.seek(0)
            lines: list[bytes] = []
            tail = b""
            while True:
                data = spool.read(SPOOL_READ)
                if not data:
                    break
                lines += (tail + data).split(b"\n")
                tail = lines.pop()
                while len(lines) >= size:
                    yield lines[:size]
                    del lines[:size]
            if lines:
                yield lines

    def _scan_classic(self, server: _Server, prefix: bytes, batch: int) -> t.Iterator[list[StoredItem]]:
        conn = server.connection()
        listed = self._listed(server, prefix, min(batch, REQUEST_KEYS), with_expiry=True)

        def chunks() -> t.Iterator[list[StoredItem]]:
            for lines in listed:
                expiry = {}
                for line in lines:
                    rest, _, exp = line.partition(b" ")
                    expiry[prefix + uri_decode(rest)] = int(exp)
                yield read_gets(conn, list(expiry), server.token, expiry)

        try:
            yield from _regroup(chunks(), batch)
        finally:
            listed.close()
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

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        found: dict[bytes, StoredItem] = {}
        for server, group in self._group(keys).items():
            found.update((item.key, item) for item in self._read(server, group))
        return [found.get(key) or StoredItem(key, None, None, kind=MISSING) for key in keys]

    def get(self, key: bytes) -> StoredItem | None:
        _check_key(key)
        items = self._read(self.server_for(key), [key])
        return items[0] if items else None

    def _read(self, server: _Server, keys: list[bytes]) -> list[StoredItem]:
        chunks = [keys[i : i + REQUEST_KEYS] for i in range(0, len(keys), REQUEST_KEYS)]
        items: list[StoredItem] = []
        if server.uses_meta():
            for got in read_pipelined(server.conn, chunks, server.token):
                items += got
            return items
        for chunk in chunks:
            items += read_gets(server.conn, chunk, server.token, None)
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
                for encoded, exp in re.findall(rb"key=(\S+) exp=(-?\d+)", block):
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
            now = int(time.time())
            return [
                (StoredItem(key, None, ttl, STRING, None, None if ttl is None else now + ttl), idle)
                for key, (idle, ttl, _) in chosen.items()
            ]
        items = self.fetch(list(chosen))
        return [(item, chosen[item.key][0]) for item in items if item.kind != MISSING]

    def delete_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
    ) -> tuple[int, dict[str, int]]:
        """Delete the keys idle for more than ``min_idle`` seconds (with
        ``no_expiry_only``, only those without expiry), without reading values.

        Idle time and cas token come in one reply; the delete is ``md <key> C<cas>``,
        so a session written since (Flask-Session rewrites a permanent session on
        every request) stays. memcached holds only values: no other types to count.
        """
        groups: dict[_Server, list[tuple[bytes, int]]] = {}
        for key, meta in zip(keys, self._idle_and_ttl(keys), strict=True):
            if meta is not None and meta[0] > min_idle and (not no_expiry_only or meta[1] is None):
                groups.setdefault(self.server_for(key), []).append((key, meta[2]))
        deleted = 0
        for server, pairs in groups.items():
            for start in range(0, len(pairs), REQUEST_KEYS):
                chunk = pairs[start : start + REQUEST_KEYS]
                request = b"".join(b"md %s C%d\r\n" % pair for pair in chunk)
                deleted += server.conn.call(request, len(chunk), "md").count(b"HD")
        return deleted, {}

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Delete every key under ``prefix`` as the dump lists it (``purge --all``)."""
        for keys in self.scan_keys(prefix, batch=batch):
            yield len(keys), self.delete(keys)

    def _idle_and_ttl(self, keys: t.Sequence[bytes]) -> list[tuple[int, int | None, int] | None]:
        """``(idle seconds, ttl, cas)`` of each key (``None`` when gone), untouched."""
        found: dict[bytes, tuple[int, int | None, int]] = {}
        for server, group in self._group(keys).items():
            if not server.uses_meta():
                raise StoreError(f"memcached at {server.name} cannot report idle time: it needs 1.6 or later")
            for start in range(0, len(group), REQUEST_KEYS):
                chunk = group[start : start + REQUEST_KEYS]
                server.conn.send(b"".join([b"mg " + key + b" l t c u\r\n" for key in chunk]))
                for key in chunk:
                    line = server.conn.readline()
                    if line.startswith(b"HD"):
                        tokens = {tok[:1]: int(tok[1:]) for tok in line.split()[1:]}
                        ttl = tokens.get(b"t", -1)
                        found[key] = (tokens.get(b"l", 0), None if ttl < 0 else ttl, tokens.get(b"c", 0))
                    elif line != b"EN":
                        raise server.conn.unexpected(line, "mg")
        return [found.get(key) for key in keys]

    def reclaim_expired(self) -> int:
        """Have every server free the items past their expiry that it still holds;
        return how many it freed (``purge --expired`` on memcached).

        No command can read or delete such an item (a get treats it as gone, and the
        dump skips it), but it occupies memory until the LRU crawler or an access
        reclaims it. ``lru_crawler crawl all`` runs the crawler now over every key,
        not only the prefix (what is past its expiry is gone for every reader
        alike); the count is the growth of ``crawler_reclaimed``, which includes
        any background crawl that ran meanwhile.
        """
        freed = 0
        for server in self.servers:
            before = self._stat(server, b"crawler_reclaimed")
            deadline = time.monotonic() + BUSY_WAIT
            while True:
                reply = server.conn.call(b"lru_crawler crawl all\r\n", 1, "lru_crawler crawl")[0]
                if reply == b"OK":
                    break
                if not reply.startswith(b"BUSY") or time.monotonic() > deadline:
                    raise server.conn.unexpected(reply, "lru_crawler crawl")
                time.sleep(0.1)
            # The crawl runs in the background; wait for it to finish.
            while self._stat(server, b"lru_crawler_running") and time.monotonic() < deadline + 60:
                time.sleep(0.05)
            freed += self._stat(server, b"crawler_reclaimed") - before
        return freed

    def _stat(self, server: _Server, name: bytes) -> int:
        conn = server.conn
        conn.send(b"stats\r\n")
        value = 0
        while True:
            line = conn.check(conn.readline(), "stats")
            if line == b"END":
                return value
            parts = line.split()
            if len(parts) == 3 and parts[1] == name:
                value = int(parts[2])

    def _group(self, keys: t.Iterable[bytes]) -> dict[_Server, list[bytes]]:
        groups: dict[_Server, list[bytes]] = {}
        for key in keys:
            _check_key(key)
            groups.setdefault(self.server_for(key), []).append(key)
        return groups

    # -- writing -------------------------------------------------------------------

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self._store(b"set", key, value, ttl, 0)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        return self._store(b"add", key, value, ttl, 0)

    def _store(self, command: bytes, key: bytes, value: bytes, ttl: int | None, flags: int) -> bool:
        _check_key(key)
        if ttl is not None and ttl <= 0:
            raise InvalidInput(f"cannot write {_show(key)} with a TTL of {ttl}s: it would expire at once")
        server = self.server_for(key)
        head = b"%s %s %d %d %d\r\n" % (command, key, flags, memcached_exptime(ttl), len(value))
        reply = server.conn.call(head + value + b"\r\n", 1, command.decode())[0]
        if reply == b"STORED":
            return True
        if reply == b"NOT_STORED":
            return False
        raise server.conn.unexpected(reply, command.decode())

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        return self.compare_and_set_many([(item, value)])[0]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        """``cas`` each item to its new value with the expiry it had (pipelined per
        server); ``False`` for each one changed or gone since it was read."""
        now = int(time.time())
        groups: dict[_Server, list[tuple[int, bytes]]] = {}
        for index, (item, value) in enumerate(pairs):
            request = self._cas_request(item, value, now)
            if request is not None:
                groups.setdefault(request[0], []).append((index, request[1]))
        results = [False] * len(pairs)
        for server, requests in groups.items():
            for start in range(0, len(requests), REQUEST_KEYS):
                chunk = requests[start : start + REQUEST_KEYS]
                replies = server.conn.call(b"".join(r for _, r in chunk), len(chunk), "cas")
                for (index, _), reply in zip(chunk, replies, strict=True):
                    if reply not in (b"STORED", b"EXISTS", b"NOT_FOUND"):
                        raise server.conn.unexpected(reply, "cas")
                    results[index] = reply == b"STORED"
        return results

    def _cas_request(self, item: StoredItem, value: bytes, now: int) -> tuple[_Server, bytes] | None:
        """The server and ``cas`` command that replace ``item`` keeping its expiry;
        ``None`` when it is already gone or changed."""
        if item.value is None:
            return None
        if item.flags & FLAG_PICKLE and not _looks_pickled(value):
            raise UndecodableValue(
                f"{_show(item.key)} was pickled by the app's memcached client (flags {item.flags}): "
                "it must stay pickle, or the app cannot read it"
            )
        server = self._origin(item)
        exptime = 0
        if item.expires_at is not None:
            left = item.expires_at - now
            if left <= 0:
                return None  # past its expiry: memcached no longer returns it to anyone
            exptime = memcached_exptime(left, now)
        token = self._token(server, item)
        if token is None:
            return None
        # Written back uncompressed: every client reads a value without the zlib flag.
        flags = item.flags & ~FLAG_ZLIB
        return server, b"cas %s %d %d %d %d\r\n%s\r\n" % (item.key, flags, exptime, len(value), token, value)

    def _token(self, server: _Server, item: StoredItem) -> int | None:
        """The cas token ``item`` was read with; for an item read without one, the
        current token if the value is still the one read."""
        if item.version is not None:
            return int(item.version)
        current = self._read(server, [item.key])
        if not current or current[0].value != item.value:
            return None
        return int(current[0].version)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        deleted = 0
        for server, group in self._group(keys).items():
            replies = server.conn.call(b"".join(b"delete " + k + b"\r\n" for k in group), len(group), "delete")
            deleted += replies.count(b"DELETED")
        return deleted

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        """Delete each item only if its cas token is still the one read.

        memcached's delete has no condition before the meta protocol: on 1.6+ this is
        ``md <key> C<cas>``; before, ``cas`` with exptime -1 (stored already expired,
        so gone at once) does the same atomically. A session the app rewrote in
        between has a new token and stays.
        """
        groups: dict[_Server, list[tuple[bytes, int]]] = {}
        for item in items:
            if item.value is None:
                continue
            server = self._origin(item)
            token = self._token(server, item)
            if token is not None:
                groups.setdefault(server, []).append((item.key, token))
        deleted = 0
        for server, pairs in groups.items():
            if server.uses_meta():
                request = b"".join(b"md %s C%d\r\n" % pair for pair in pairs)
                deleted += server.conn.call(request, len(pairs), "md").count(b"HD")
            else:
                request = b"".join(b"cas %s 0 -1 0 %d\r\n\r\n" % pair for pair in pairs)
                deleted += server.conn.call(request, len(pairs), "cas").count(b"STORED")
        return deleted

    def expire(self, key: bytes, seconds: int) -> bool:
        return self._touch(key, memcached_exptime(seconds) if seconds > 0 else -1)

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        now = int(time.time())
        return self._touch(key, memcached_exptime(timestamp - now, now) if timestamp > now else -1)

    def persist(self, key: bytes) -> bool:
        return self._touch(key, 0)

    def _touch(self, key: bytes, exptime: int) -> bool:
        _check_key(key)
        server = self.server_for(key)
        reply = server.conn.call(b"touch %s %d\r\n" % (key, exptime), 1, "touch")[0]
        if reply in (b"TOUCHED", b"NOT_FOUND"):
            return reply == b"TOUCHED"
        raise server.conn.unexpected(reply, "touch")

    # -- batches: one pipelined round trip per server ------------------------------

    def set_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> None:
        self._store_many(b"set", entries)

    def add_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        return self._store_many(b"add", entries)

    def _store_many(self, command: bytes, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        now = int(time.time())
        groups: dict[_Server, list[int]] = {}
        for index, (key, _, ttl) in enumerate(entries):
            _check_key(key)
            if ttl is not None and ttl <= 0:
                raise InvalidInput(f"cannot write {_show(key)} with a TTL of {ttl}s: it would expire at once")
            groups.setdefault(self.server_for(key), []).append(index)
        results = [False] * len(entries)
        for server, indexes in groups.items():
            for start in range(0, len(indexes), REQUEST_KEYS):
                chunk = indexes[start : start + REQUEST_KEYS]
                request = b"".join(
                    b"%s %s 0 %d %d\r\n%s\r\n" % (command, key, memcached_exptime(ttl, now), len(value), value)
                    for key, value, ttl in (entries[i] for i in chunk)
                )
                replies = server.conn.call(request, len(chunk), command.decode())
                for index, reply in zip(chunk, replies, strict=True):
                    if reply not in (b"STORED", b"NOT_STORED"):
                        raise server.conn.unexpected(reply, command.decode())
                    results[index] = reply == b"STORED"
        return results

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        existed: dict[bytes, bool] = {}
        for server, group in self._group(keys).items():
            replies = server.conn.call(b"".join(b"delete " + k + b"\r\n" for k in group), len(group), "delete")
            existed.update(zip(group, (reply == b"DELETED" for reply in replies), strict=True))
        return [existed[key] for key in keys]

    def close(self) -> None:
        for server in self.servers:
            server.conn.close()


def _check_key(key: bytes) -> None:
    if not key or len(key) > 250 or _KEY_BAD.search(key):
        raise InvalidInput(
            f"{_show(key)} is not a valid memcached key (1 to 250 bytes, no spaces or control characters)"
        )


def _show(key: bytes) -> str:
    return repr(key.decode("utf-8", "backslashreplace"))


# -- opening ---------------------------------------------------------------------


def _regroup(chunks: t.Iterable[list[StoredItem]], batch: int) -> t.Iterator[list[StoredItem]]:
    """Request-sized chunks of items as caller-sized batches of at least ``batch``."""
    out: list[StoredItem] = []
    for items in chunks:
        out += items
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def parse_url(url: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Servers and options of ``memcached://host[:port][,host[:port]...][?opt=value]``.

    Options: ``hash`` (one of :data:`HASHES`), ``timeout`` and ``connect_timeout``
    (seconds).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "memcached":
        raise InvalidInput(f"not a memcached URL: {url!r}")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidInput("memcached URLs take no user or password (SASL is not supported)")
    if parts.path not in ("", "/"):
        raise InvalidInput(f"a memcached URL has no path: {url!r}")
    servers = []
    for spec in netloc.split(","):
        spec = spec.strip()
        if not spec:
            continue
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", spec)
        if match is None:
            raise InvalidInput(f"invalid memcached server {spec!r} in the store URL")
        host = match[1] or match[3]
        port = int(match[2] or match[4] or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise InvalidInput(f"invalid port in memcached server {spec!r}")
        servers.append((host, port))
    if not servers:
        raise InvalidInput("the store URL names no memcached server: memcached://host:11211")
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"hash", "timeout", "connect_timeout"}
    if unknown:
        raise InvalidInput(f"unknown memcached URL option(s): {', '.join(sorted(unknown))}")
    return servers, options


def open_memcached(url: str, *, client: t.Any = None) -> MemcachedStore:
    """A :class:`MemcachedStore` for a ``memcached://`` URL, or for the servers and
    key distribution of an app's ready client (pymemcache ``HashClient`` or
    ``Client``, python-memcached ``Client``, pylibmc ``Client``).

    :raises InvalidInput: for a malformed URL or a client it cannot read.
    """
    if client is not None:
        return _from_client(client, url if "://" in url else None)
    servers, options = parse_url(url)
    try:
        timeout = float(options.get("timeout", TIMEOUT))
        connect_timeout = float(options.get("connect_timeout", CONNECT_TIMEOUT))
    except ValueError as e:
        raise InvalidInput(f"invalid timeout in the store URL: {e}") from e
    return MemcachedStore(
        servers,
        hash=options.get("hash", "rendezvous"),
        timeout=timeout,
        connect_timeout=connect_timeout,
        url=url.split("?", 1)[0],
    )


def _from_client(client: t.Any, url: str | None) -> MemcachedStore:
    module = type(client).__module__
    if module.startswith("pymemcache") and hasattr(client, "hasher"):
        servers, nodes = [], []
        for node, node_client in client.clients.items():
            servers.append(_tcp(node_client.server))
            nodes.append(node)
        return MemcachedStore(servers, hasher=client.hasher, nodes=nodes, url=url)
    if module.startswith("pymemcache") and hasattr(client, "server"):
        return MemcachedStore([_tcp(client.server)], url=url)
    if module.startswith("pylibmc") and hasattr(client, "addresses"):
        behaviors = client.behaviors
        if behaviors.get("distribution") != "modula" or behaviors.get("hash") != "default" or behaviors.get("ketama"):
            raise InvalidInput(
                "only pylibmc's default key distribution (modula, default hash) is supported: "
                "pass --store memcached://host:port,...?hash=modula if that is what the app uses"
            )
        servers = []
        for address in client.addresses:
            host, _, port = str(address).rpartition(":")
            servers.append((host.strip("[]") or str(address), int(port) if port.isdigit() else DEFAULT_PORT))
        return MemcachedStore(servers, hash="modula", url=url)
    if module == "memcache" and hasattr(client, "servers"):
        if any(getattr(s, "weight", 1) != 1 for s in client.servers):
            raise InvalidInput("python-memcached servers with weights are not supported: use weight 1")
        return MemcachedStore([(s.ip, s.port) for s in client.servers], hash="crc32", url=url)
    raise InvalidInput(
        f"cannot tell the servers of a {module}.{type(client).__name__} memcached client: "
        "pass --store memcached://host:port,..."
    )


def _tcp(server: t.Any) -> tuple[str, int]:
    if isinstance(server, tuple) and len(server) == 2:
        return str(server[0]), int(server[1])
    raise InvalidInput(f"memcached server {server!r} is not host:port (Unix sockets are not supported)")
