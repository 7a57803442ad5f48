"""The store contract every backend implements.

A store holds raw bytes under keys. It knows nothing of serializers or Flask: it
scans keys under a prefix in batches (with TTL and value), reads, writes and
deletes them. What only some stores can do is declared in
:attr:`Store.capabilities`; an operation a store lacks raises
:class:`~sesstool.errors.Unsupported` (exit 2), never returns a made-up answer.

TTL means the same on every store: ``None`` never expires, a positive number is
whole seconds left, and ``0`` is an item past its expiry that the store still
holds (memcached reports none, SQL rows and files do).

How to add a store
------------------
1. One module ``sesstool/stores/<name>.py`` with a :class:`Store` subclass: the
   abstract operations, the :class:`Capability` set it really has (each one the
   contract suite then checks on a real server), its :attr:`Store.expired_purge`,
   and overrides of the batch operations only where it can do better than the
   defaults below, which are correct on any store.
2. A classmethod ``open(url, *, client=None, warn=None)`` building it from a URL
   (or around an app's ready client).
3. One line in :data:`sesstool.stores.registry.SCHEMES`.
4. A ``store_factory`` case in ``tests/test_store_contract.py``; the store's own
   test file holds only what is truly specific to it.
"""

from __future__ import annotations

import abc
import typing as t
import warnings
from dataclasses import dataclass

from sesstool.errors import InvalidInput, Unsupported
from sesstool.stores.capabilities import Capability, ExpiredPurge

if t.TYPE_CHECKING:
    from sesstool.stores.changes import Feed

__all__ = ["MISSING", "STRING", "Capability", "Columns", "Entry", "ExpiredPurge", "Store", "StoredItem"]

STRING = "string"
MISSING = "none"

#: ``(key, value, ttl)`` as the batch writes take them
Entry = tuple[bytes, bytes, "int | None"]


@dataclass(slots=True)
class StoredItem:
    """One key as the store holds it.

    :param key: the full key, bytes as stored.
    :param value: the stored bytes; ``None`` when the key holds another type or is gone.
    :param ttl: whole seconds left; ``None`` when the key never expires; ``0`` when it
        is past its expiry but still held.
    :param kind: ``"string"`` for a value; another Redis type name (``hash``, ``list``,
        ...) for keys that are not sessions; ``"none"`` when the key disappeared.
    :param version: what the store that read the item needs for its conditional
        operations (:meth:`Store.compare_and_set`, :meth:`Store.delete_if_unchanged`):
        Redis keeps the milliseconds left there, memcached the cas token, expiry and
        client flags. Opaque to everyone else; ``None`` (an item not read from the
        store) makes the store compare the value itself.
    """

    key: bytes
    value: bytes | None
    ttl: int | None
    kind: str = STRING
    version: object = None

    @property
    def size(self) -> int:
        return len(self.value) if self.value is not None else 0


def show_key(key: bytes, limit: int = 120) -> str:
    """``key`` quoted for a message: ASCII only, every control byte escaped, long
    keys cut, so a hostile key can neither fake lines nor drive the terminal."""
    text = ascii(key[:limit].decode("utf-8", "backslashreplace"))
    return text + ("..." if len(key) > limit else "")


def python_warning(message: str) -> None:
    """A store's default ``warn``: Python's :func:`warnings.warn` (the CLI passes its own)."""
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def write_ttl(key: bytes, ttl: int | None) -> int | None:
    """``ttl`` checked for a write, the same on every store: ``None`` never expires,
    and a TTL of 0 or less, which would expire the key at once, is refused.

    :raises InvalidInput: for a TTL of 0 or less.
    """
    if ttl is not None and type(ttl) is int and ttl <= 0:
        raise InvalidInput(f"cannot write {show_key(key)} with a TTL of {ttl}s: it would expire at once")
    return ttl


class Columns(t.NamedTuple):
    """A scanned batch as parallel lists, the shape the listing hot path reads fastest.

    ``values[i]`` is ``None`` for a key that holds no string value; ``kinds[i]``
    then names its type. ``pttls[i]`` is the milliseconds left, ``-1`` for none.
    """

    keys: list[bytes]
    values: list[bytes | None]
    pttls: list[int]
    kinds: dict[int, str]


class Store(abc.ABC):
    """What commands need from a session store."""

    #: what this store can do beyond the abstract operations (a class declares them;
    #: an instance may drop some its server lacks, e.g. memcached without meta commands)
    capabilities: frozenset[Capability] = frozenset()
    #: what ``purge --expired`` selects here
    expired_purge: t.ClassVar[ExpiredPurge | None] = None
    #: the largest value the store takes, where a save past it fails (memcached's item
    #: size); ``None`` where no such limit bites sessions
    value_limit: t.ClassVar[int | None] = None
    #: the one serializer the app reads from this store, where the store fixes it
    #: (Flask-Session's filesystem and cachelib backends pickle the session dict,
    #: whatever SESSION_SERIALIZATION_FORMAT says); ``None`` where the app's setting decides
    value_serializer: t.ClassVar[str | None] = None
    #: keyword options :meth:`open` takes beyond ``client`` and ``warn`` (SQL's
    #: ``table``); :func:`~sesstool.stores.registry.open_store` passes a store only
    #: the ones it names, so a global option such as ``--table`` never troubles another
    open_options: t.ClassVar[frozenset[str]] = frozenset()

    # -- the operations every store has ------------------------------------------------

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> Store:
        """The store a URL of a registered scheme names, or one around a ready
        ``client`` of the app's; ``warn`` is told about keys a listing skips.

        :raises InvalidInput: for a malformed URL.
        """
        raise NotImplementedError(f"{cls.__name__} is not registered for any URL scheme")

    @abc.abstractmethod
    def describe(self) -> str:
        """The store's URL with any password hidden."""

    @abc.abstractmethod
    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """Yield every key under ``prefix`` with TTL and value, a batch at a time.

        Constant memory: one batch is held at a time; one round trip per batch and node.
        """

    @abc.abstractmethod
    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        """Yield the keys under ``prefix`` without values, each once."""

    @abc.abstractmethod
    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        """TTL and value of each key, in order, in as few round trips as possible
        (a key that does not exist comes back with the kind ``"none"``)."""

    @abc.abstractmethod
    def get(self, key: bytes) -> StoredItem | None:
        """One key, or ``None`` when it does not exist."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    # -- declared capabilities -------------------------------------------------------

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability, needed_by: str | None = None) -> None:
        """:raises Unsupported: naming the store, what it cannot do and what needed it."""
        if capability not in self.capabilities:
            raise self.unsupported(capability, needed_by)

    def unsupported(self, capability: Capability, needed_by: str | None = None) -> Unsupported:
        what = "write: it is read-only" if capability is Capability.WRITE else capability.value
        needs = f", which {needed_by} needs" if needed_by else ""
        return Unsupported(f"{self.describe()}: this store cannot {what}{needs}")

    def require_expired_purge(self) -> ExpiredPurge:
        """How ``purge --expired`` works here.

        :raises Unsupported: on a store with no way to find expired sessions.
        """
        if self.expired_purge is None:
            raise Unsupported(f"{self.describe()}: this store cannot tell expired sessions, "
                              "which purge --expired needs")
        if self.expired_purge is ExpiredPurge.IDLE_WITHOUT_TTL:
            self.require(Capability.IDLE_TIME, "purge --expired")
        if self.expired_purge is ExpiredPurge.SERVER_RECLAIM:
            self.require(Capability.RECLAIM_EXPIRED, "purge --expired")
        return self.expired_purge

    # -- writes (Capability.WRITE) ---------------------------------------------------

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        """Write ``value`` with ``ttl`` seconds to live (``None``: no expiry)."""
        raise self.unsupported(Capability.WRITE)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        """Write only when the key does not exist; ``False`` when it did."""
        raise self.unsupported(Capability.WRITE)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        """Delete keys; return how many existed."""
        raise self.unsupported(Capability.WRITE)

    # -- optional operations: a store that has one declares it and overrides it -------

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        """Replace ``item``'s value, keeping its TTL, only if the key still holds what
        ``item`` read; ``False`` (and nothing written) when it changed meanwhile."""
        raise self.unsupported(Capability.COMPARE_AND_SET)

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        """Delete each item only if it still holds what was read; return how many went."""
        raise self.unsupported(Capability.CONDITIONAL_DELETE)

    def expire(self, key: bytes, seconds: int) -> bool:
        """Let the key live ``seconds`` more; ``False`` when it does not exist."""
        raise self.unsupported(Capability.PER_KEY_TTL)

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        """End the key at a Unix time; ``False`` when it does not exist."""
        raise self.unsupported(Capability.PER_KEY_TTL)

    def persist(self, key: bytes) -> bool:
        """Remove the key's expiry; ``False`` when it does not exist."""
        raise self.unsupported(Capability.PERSIST)

    def idle_seconds(self, keys: t.Sequence[bytes]) -> list[int | None]:
        """Seconds since each key was last used (``None`` when gone), read without
        touching it."""
        raise self.unsupported(Capability.IDLE_TIME)

    def reclaim_expired(self) -> int:
        """Have the servers free the items past their expiry; return how many went."""
        raise self.unsupported(Capability.RECLAIM_EXPIRED)

    def watch(self, prefix: bytes, *, idle: float = 1.0, enable: bool = False) -> Feed:
        """Changes to keys under ``prefix`` as they happen (see :mod:`.changes`): a
        :class:`~.changes.Change` per event, ``FeedState.READY`` once subscribed and
        ``FeedState.IDLE`` after each ``idle`` seconds without one, forever.

        :param enable: turn on what the server needs to report changes (Redis's
            keyspace notifications), adding to its settings and never removing any.
        :raises Unsupported: when the store has no change feed, or its server has
            it turned off and ``enable`` is false (the message says how to turn it on).
        """
        raise self.unsupported(Capability.CHANGE_FEED)

    # -- batches: correct on any store, overridden where a backend does better ---------

    def scan_columns(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[Columns]:
        """:meth:`scan` as :class:`Columns`."""
        for items in self.scan(prefix, batch=batch):
            yield Columns(
                [item.key for item in items],
                [item.value if item.kind == STRING else None for item in items],
                [-1 if item.ttl is None else item.ttl * 1000 for item in items],
                {i: item.kind for i, item in enumerate(items) if item.kind != STRING},
            )

    def scan_values(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """:meth:`scan` for a caller that selects by value and needs the TTL only of
        the few it keeps: a store may leave TTLs unread (``ttl`` and ``version``
        ``None``) for :meth:`read_ttls` to fill in. This default reads them."""
        return self.scan(prefix, batch=batch)

    def read_ttls(self, items: t.Sequence[StoredItem]) -> None:
        """Fill in the TTL (and ``version``) of items from :meth:`scan_values`; one gone
        since gets the kind ``"none"``. This default has nothing left to read."""
        return None

    def set_many(self, entries: t.Sequence[Entry]) -> None:
        """:meth:`set` each ``(key, value, ttl)``."""
        for key, value, ttl in entries:
            self.set(key, value, ttl)

    def add_many(self, entries: t.Sequence[Entry]) -> list[bool]:
        """:meth:`add` each ``(key, value, ttl)``; for each, whether it was written."""
        return [self.add(key, value, ttl) for key, value, ttl in entries]

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        """Delete keys; for each, whether it existed."""
        return [self.delete([key]) > 0 for key in keys]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        """:meth:`compare_and_set` each ``(item, new value)``, each atomic on its own."""
        return [self.compare_and_set(item, value) for item, value in pairs]

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Delete every key under ``prefix`` as the scan finds it, unconditionally;
        yield ``(keys seen, keys deleted)`` per batch (``purge --all``)."""
        for keys in self.scan_keys(prefix, batch=batch):
            yield len(keys), self.delete(keys)

    def delete_expired(
        self, prefix: bytes, *, batch: int = 1000, dry_run: bool = False
    ) -> t.Iterator[tuple[int, int, int]]:
        """``purge --expired`` alone, on a store that keeps items past their expiry
        (:attr:`ExpiredPurge.TTL_ZERO`): delete the sessions with ttl 0 that are still
        as read; yield ``(sessions seen, expired, deleted)`` per batch. This default
        reads values too (a backend that can select and delete by expiry overrides it).
        """
        for items in self.scan(prefix, batch=batch):
            expired = [item for item in items if item.kind == STRING and item.value is not None and item.ttl == 0]
            yield len(items), len(expired), self.delete_if_unchanged(expired) if expired and not dry_run else 0

    def fetch_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
    ) -> list[tuple[StoredItem, int]]:
        """The keys idle (neither read nor written) for more than ``min_idle`` seconds,
        each with its TTL, kind and idle seconds, and its value when ``values``; with
        ``no_expiry_only``, only keys that never expire. Idle time is read before
        anything touches a key, and keys that do not qualify are not read at all.

        This default reads values even without ``values`` (a backend that can read
        TTL and kind alone overrides it).
        """
        idles = self.idle_seconds(keys)
        chosen = [(key, idle) for key, idle in zip(keys, idles, strict=True) if idle is not None and idle > min_idle]
        return idle_pairs(self.fetch([key for key, _ in chosen]), chosen, no_expiry_only=no_expiry_only)

    def delete_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
    ) -> tuple[int, dict[str, int]]:
        """Delete the session keys still idle for more than ``min_idle`` seconds (and,
        with ``no_expiry_only``, without expiry). This default reads the idle keys and
        deletes them only if unchanged since.

        :returns: how many were deleted, and counts by type of idle keys that are not
            session values (Redis hashes, lists, ...), which are left alone.
        """
        items = [item for item, _ in self.fetch_idle(keys, min_idle=min_idle, no_expiry_only=no_expiry_only)]
        others: dict[str, int] = {}
        for item in items:
            if item.kind != STRING:
                others[item.kind] = others.get(item.kind, 0) + 1
        strings = [item for item in items if item.kind == STRING]
        return (self.delete_if_unchanged(strings) if strings else 0), others


def idle_pairs(
    items: t.Sequence[StoredItem], chosen: t.Sequence[tuple[bytes, int]], *, no_expiry_only: bool
) -> list[tuple[StoredItem, int]]:
    """What :meth:`Store.fetch_idle` returns: each fetched item of the ``chosen``
    ``(key, idle seconds)`` with its idle time, leaving out keys gone meanwhile and,
    with ``no_expiry_only``, keys that expire."""
    return [
        (item, idle)
        for item, (_, idle) in zip(items, chosen, strict=True)
        if item.kind != MISSING and (not no_expiry_only or item.ttl is None)
    ]
