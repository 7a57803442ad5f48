"""memcached as a session store: one server or several, as the app's client spreads keys.

memcached has no SCAN. Listing asks every server for ``lru_crawler metadump all``
(memcached 1.4.31 or later with the LRU crawler on), streamed from the socket, and
then reads the values of each batch of keys from the server that listed them,
pipelined. Both are raw protocol: connections in :mod:`~.memcached_wire`, every
command built and checked in :mod:`~.memcached_commands`, replies parsed in
:mod:`~.memcached_replies`, the dump in :mod:`~.memcached_listing`, the choice of
server in :mod:`~.memcached_routing`.

Reads cannot write: every connection a read uses (the dump, the values, ``get``,
idle times, ``version``, ``stats``) is opened read-only and refuses any writing
command before it is sent; a store opened with ``read_only=True`` has no other.

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

Expiry follows memcached's 30-day rule (:mod:`~.memcached_commands`); what client
flags mean, and how each is read and written: :mod:`~.memcached_wire`.
"""

from __future__ import annotations

import math
import time
import typing as t

from sesstool.errors import InvalidInput, StoreError, UndecodableValue
from sesstool.stores import memcached_commands as commands
from sesstool.stores.base import Capability, StoredItem
from sesstool.stores.memcached_commands import (
    THIRTY_DAYS,
    InvalidKey,
    check_key,
    check_write_ttl,
    exptime_at,
    memcached_exptime,
    show_key,
)
from sesstool.stores.memcached_reads import (
    BUSY_WAIT,
    CONNECT_TIMEOUT,
    MAX_TIMEOUT,
    REQUEST_KEYS,
    TIMEOUT,
    MemcachedReader,
    _Server,
)
from sesstool.stores.memcached_routing import HASHES, client_servers, one_at_a_time, parse_url
from sesstool.stores.memcached_wire import (
    FLAG_INTEGER,
    FLAG_LONG,
    FLAG_PICKLE,
    FLAG_TEXT,
    FLAG_ZLIB,
    MAX_DECOMPRESSED,
    CasToken,
    ItemVersion,
    LostConnection,
    decompress,
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
    "InvalidKey",
    "MemcachedReader",
    "MemcachedStore",
    "decompress",
    "memcached_exptime",
    "one_at_a_time",
    "open_memcached",
    "parse_url",
]


def _looks_pickled(value: bytes) -> bool:
    # Protocol 2+ starts with PROTO (0x80); 0 and 1 with MARK/EMPTY_DICT; all end in STOP.
    return value[:1] in (b"\x80", b"(", b"}") and value.endswith(b".")


class MemcachedStore(MemcachedReader):
    """Sessions on one or more memcached servers, read and written (see
    :class:`MemcachedReader` for the parameters). Every write goes through a
    server's ``writer`` connection, which a read-only store never opens."""

    capabilities = MemcachedReader.capabilities | {
        Capability.WRITE, Capability.PER_KEY_TTL, Capability.PERSIST, Capability.COMPARE_AND_SET,
        Capability.CONDITIONAL_DELETE, Capability.RECLAIM_EXPIRED,
    }

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> MemcachedStore:
        return open_memcached(url, client=client, warn=warn)

    # -- writing -------------------------------------------------------------------

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self._store(b"set", key, value, ttl)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        return self._store(b"add", key, value, ttl)

    def _store(self, command: bytes, key: bytes, value: bytes, ttl: int | None) -> bool:
        request = commands.store(command, [(key, value, check_write_ttl(key, ttl))])
        conn = self.server_for(key).writer
        reply = conn.call(request, 1, command.decode())[0]
        if reply == b"STORED":
            return True
        if reply == b"NOT_STORED":
            return False
        raise conn.unexpected(reply, command.decode())

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        return self.compare_and_set_many([(item, value)])[0]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        """``cas`` each item to its new value with the expiry it had (pipelined per
        server); ``False`` for each one changed or gone since it was read."""
        now = int(time.time())
        groups: dict[_Server, list[tuple[int, tuple[bytes, int, int, bytes, int]]]] = {}
        for index, (item, value) in enumerate(pairs):
            request = self._cas_entry(item, value, now)
            if request is not None:
                groups.setdefault(request[0], []).append((index, request[1]))
        results = [False] * len(pairs)
        for server, entries in groups.items():
            conn = server.writer
            for start in range(0, len(entries), REQUEST_KEYS):
                chunk = entries[start : start + REQUEST_KEYS]
                try:
                    replies = conn.call(commands.cas(entry for _, entry in chunk), len(chunk), "cas")
                except LostConnection as lost:
                    # The server may have done the writes and only the replies were lost.
                    try:
                        confirmed = self._confirm_cas(server, chunk)
                    except StoreError:
                        raise lost from None
                    for index, written in confirmed:
                        results[index] = written
                    continue
                for (index, _), reply in zip(chunk, replies, strict=True):
                    if reply not in (b"STORED", b"EXISTS", b"NOT_FOUND"):
                        raise conn.unexpected(reply, "cas")
                    results[index] = reply == b"STORED"
        return results

    def _confirm_cas(self, server: _Server, chunk: list[tuple[int, tuple[bytes, int, int, bytes, int]]]
                     ) -> list[tuple[int, bool]]:  # fmt: skip
        """Whether each ``cas`` of ``chunk`` was written, read back after its reply was
        lost: written when the key now holds the new value under a new cas token.
        One not written reads as changed meanwhile, which a caller retries from a
        fresh read: right whether the server refused it or never received it.

        :raises StoreError: when the server cannot be read either.
        """
        current = {item.key: item for item in self._read(server, [entry[0] for _, entry in chunk])}
        confirmed = []
        for index, (key, _, _, value, token) in chunk:
            now = current.get(key)
            written = now is not None and now.value == value and t.cast(ItemVersion, now.version).token != token
            confirmed.append((index, written))
        return confirmed

    def _cas_entry(self, item: StoredItem, value: bytes,
                   now: int) -> tuple[_Server, tuple[bytes, int, int, bytes, int]] | None:  # fmt: skip
        """The server and ``cas`` entry that replace ``item`` keeping its expiry;
        ``None`` when it is already gone or changed."""
        if item.value is None:
            return None
        check_key(item.key)
        server = self._origin(item)
        version = self._version(server, item)
        if version is None:
            return None
        if version.flags & FLAG_PICKLE and not _looks_pickled(value):
            raise UndecodableValue(
                f"{show_key(item.key)} was pickled by the app's memcached client (flags {version.flags}): "
                "it must stay pickle, or the app cannot read it"
            )
        exptime = 0
        if version.expires_at is not None:
            left = version.expires_at - now
            if left <= 0:
                return None  # past its expiry: memcached no longer returns it to anyone
            exptime = memcached_exptime(left, now)
        # Written back uncompressed: every client reads a value without the zlib flag.
        return server, (item.key, version.flags & ~FLAG_ZLIB, exptime, value, int(version.token))

    def _version(self, server: _Server, item: StoredItem) -> ItemVersion | None:
        """What ``item`` was read with; for an item not read here (no version), what
        the key holds now if its value is still the one given, else ``None``."""
        if isinstance(item.version, ItemVersion):
            return item.version
        current = self._read(server, [check_key(item.key)])
        if not current or current[0].value != item.value:
            return None
        return t.cast(ItemVersion, current[0].version)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        return sum(self.delete_each(keys))

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        existed: dict[bytes, bool] = {}
        for server, group in self._group(keys).items():
            for start in range(0, len(group), REQUEST_KEYS):
                chunk = group[start : start + REQUEST_KEYS]
                replies = server.writer.call(commands.delete(chunk), len(chunk), "delete")
                existed.update(zip(chunk, (reply == b"DELETED" for reply in replies), strict=True))
        return [existed[key] for key in keys]

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
            version = self._version(server, item)
            if version is not None:
                groups.setdefault(server, []).append((item.key, int(version.token)))
        deleted = 0
        for server, pairs in groups.items():
            deleted += self._delete_tokens(server, pairs)
        return deleted

    def _delete_tokens(self, server: _Server, pairs: list[tuple[bytes, int]]) -> int:
        deleted = 0
        conn = server.writer
        for start in range(0, len(pairs), REQUEST_KEYS):
            chunk = pairs[start : start + REQUEST_KEYS]
            if server.uses_meta():
                deleted += conn.call(commands.md_if(chunk), len(chunk), "md").count(b"HD")
            else:
                request = commands.cas((key, 0, -1, b"", token) for key, token in chunk)
                deleted += conn.call(request, len(chunk), "cas").count(b"STORED")
        return deleted

    def expire(self, key: bytes, seconds: int) -> bool:
        return self._touch(key, memcached_exptime(seconds) if seconds > 0 else -1)

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        return self._touch(key, exptime_at(timestamp))

    def persist(self, key: bytes) -> bool:
        return self._touch(key, 0)

    def _touch(self, key: bytes, exptime: int) -> bool:
        request = commands.touch(key, exptime)
        conn = self.server_for(key).writer
        reply = conn.call(request, 1, "touch")[0]
        if reply in (b"TOUCHED", b"NOT_FOUND"):
            return reply == b"TOUCHED"
        raise conn.unexpected(reply, "touch")

    # -- batches: one pipelined round trip per server ------------------------------

    def set_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> None:
        self._store_many(b"set", entries)

    def add_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        return self._store_many(b"add", entries)

    def _store_many(self, command: bytes, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        now = int(time.time())
        # Every entry is checked before anything is sent: a bad one writes nothing.
        checked = [(key, value, check_write_ttl(key, ttl, now)) for key, value, ttl in entries]
        groups: dict[_Server, list[int]] = {}
        for index, (key, _, _) in enumerate(checked):
            groups.setdefault(self.server_for(check_key(key)), []).append(index)
        results = [False] * len(entries)
        for server, indexes in groups.items():
            conn = server.writer
            for start in range(0, len(indexes), REQUEST_KEYS):
                chunk = indexes[start : start + REQUEST_KEYS]
                request = commands.store(command, [checked[i] for i in chunk])
                for index, reply in zip(chunk, conn.call(request, len(chunk), command.decode()), strict=True):
                    if reply not in (b"STORED", b"NOT_STORED"):
                        raise conn.unexpected(reply, command.decode())
                    results[index] = reply == b"STORED"
        return results

    # -- purging -------------------------------------------------------------------

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
        return sum(self._delete_tokens(server, pairs) for server, pairs in groups.items()), {}

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Delete every key under ``prefix`` as the dump lists it (``purge --all``)."""
        for keys in self.scan_keys(prefix, batch=batch):
            yield len(keys), self.delete(keys)

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
            conn = server.writer
            before = self._stat(server, b"crawler_reclaimed")
            deadline = time.monotonic() + BUSY_WAIT
            while True:
                reply = conn.call(commands.crawl_all(), 1, "lru_crawler crawl")[0]
                if reply == b"OK":
                    break
                if not reply.startswith(b"BUSY") or time.monotonic() > deadline:
                    raise conn.unexpected(reply, "lru_crawler crawl")
                time.sleep(0.1)
            # The crawl runs in the background; wait for it to finish.
            while self._stat(server, b"lru_crawler_running") and time.monotonic() < deadline + 60:
                time.sleep(0.05)
            freed += self._stat(server, b"crawler_reclaimed") - before
        return freed


# -- opening ---------------------------------------------------------------------


def open_memcached(url: str, *, client: t.Any = None, read_only: bool = False,
                   warn: t.Callable[[str], None] | None = None) -> MemcachedStore:  # fmt: skip
    """A :class:`MemcachedStore` for a ``memcached://`` URL, or for the servers and
    key distribution of an app's ready client (pymemcache ``HashClient`` or
    ``Client``, python-memcached ``Client``, pylibmc ``Client``).

    :param read_only: refuse every write before it is sent.
    :param warn: told about keys a listing skipped.
    :raises InvalidInput: for a malformed URL or a client it cannot read.
    """
    if client is not None:
        servers, options = client_servers(client)
        return MemcachedStore(servers, url=url if "://" in url else None, read_only=read_only, warn=warn,
                              **options)  # fmt: skip
    servers, given = parse_url(url)
    return MemcachedStore(
        servers,
        hash=given.get("hash", "rendezvous"),
        timeout=_seconds(given, "timeout", TIMEOUT),
        connect_timeout=_seconds(given, "connect_timeout", CONNECT_TIMEOUT),
        url=url.split("?", 1)[0],
        read_only=read_only,
        warn=warn,
    )


def _seconds(options: dict[str, str], name: str, default: float) -> float:
    try:
        value = float(options.get(name, default))
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        raise InvalidInput(f"invalid {name} in the store URL: give seconds, more than 0 and at most {MAX_TIMEOUT:g}")
    return value
