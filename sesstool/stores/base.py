"""The store interface every backend implements.

A store holds raw bytes under keys. It knows nothing of serializers or Flask:
it scans keys under a prefix in batches (with TTL and value), reads, writes and
deletes them, and offers the two conditional operations that make edits and purges
safe while the app keeps writing: :meth:`Store.compare_and_set` and
:meth:`Store.delete_if_unchanged`.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

STRING = "string"
MISSING = "none"


@dataclass(slots=True)
class StoredItem:
    """One key as the store holds it.

    :param key: the full key, bytes as stored.
    :param value: the stored bytes; ``None`` when the key holds another type or is gone.
    :param ttl: whole seconds left; ``None`` when the key never expires.
    :param kind: ``"string"`` for a value; another Redis type name (``hash``, ``list``,
        ...) for keys that are not sessions; ``"none"`` when the key disappeared.
    :param version: what :meth:`Store.compare_and_set` compares (memcached's cas token);
        ``None`` where the value itself is compared.
    :param expires_at: absolute Unix expiry where the store reports one (memcached).
    :param ttl_ms: milliseconds left where the store reports them (Redis ``PTTL``), so
        that a conditional delete can tell a refreshed session from an untouched one.
    :param flags: the memcached client flags stored with the value (pickled,
        compressed, ...; see :mod:`sesstool.stores.memcached`); ``0`` elsewhere.
    """

    key: bytes
    value: bytes | None
    ttl: int | None
    kind: str = STRING
    version: t.Any = None
    expires_at: int | None = None
    ttl_ms: int | None = None
    flags: int = 0

    @property
    def size(self) -> int:
        return len(self.value) if self.value is not None else 0


class Columns(t.NamedTuple):
    """A scanned batch as parallel lists, the shape the listing hot path reads fastest.

    ``values[i]`` is ``None`` for a key that holds no string value; ``kinds[i]``
    then names its type. ``pttls[i]`` is the milliseconds left, ``-1`` for none.
    """

    keys: list[bytes]
    values: list[bytes | None]
    pttls: list[int]
    kinds: dict[int, str]


class Store(t.Protocol):
    """What commands need from a session store."""

    #: ``redis`` or ``memcached``
    name: str

    def describe(self) -> str:
        """The store's URL with any password hidden."""

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """Yield every key under ``prefix`` with TTL and value, a batch at a time.

        Constant memory: one batch is held at a time; one round trip per batch and node.
        """

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        """Yield the keys under ``prefix`` without values."""

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        """TTL and value of each key, in order, in as few round trips as possible."""

    def get(self, key: bytes) -> StoredItem | None:
        """One key, or ``None`` when it does not exist."""

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        """Write ``value`` with ``ttl`` seconds to live (``None``: no expiry)."""

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        """Write only when the key does not exist; ``False`` when it did."""

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        """Replace ``item``'s value, keeping its TTL, only if the key still holds what
        ``item`` read; ``False`` (and nothing written) when it changed meanwhile."""

    def delete(self, keys: t.Sequence[bytes]) -> int:
        """Delete keys; return how many existed."""

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        """Delete each item only if it still holds what was read; return how many went."""

    def expire(self, key: bytes, seconds: int) -> bool:
        """Let the key live ``seconds`` more; ``False`` when it does not exist."""

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        """End the key at a Unix time; ``False`` when it does not exist."""

    def persist(self, key: bytes) -> bool:
        """Remove the key's expiry; ``False`` when it does not exist."""

    def close(self) -> None:
        """Release connections."""


class BatchStore(Store, t.Protocol):
    """Optional batch operations a backend may add to :class:`Store`.

    The write commands reach them through :mod:`sesstool.ops.batchops`, which falls back
    to the :class:`Store` primitives (one call per key, or a read followed by
    :meth:`Store.delete_if_unchanged`) for a store that lacks one, so a backend can
    add them one at a time, where it can do better.
    """

    def fetch_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
    ) -> list[tuple[StoredItem, int]]:
        """The keys idle (neither read nor written) for more than ``min_idle`` seconds,
        each with its TTL, kind and idle seconds, and its value when ``values``; with
        ``no_expiry_only``, only keys that never expire. Idle time is read before
        anything touches a key, and keys that do not qualify are not read at all
        (reading a value resets its idle time; without ``values`` nothing is read).

        :raises StoreError: when the store cannot report idle time.
        """

    def delete_idle(
        self, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
    ) -> tuple[int, dict[str, int]]:
        """Delete the session keys still idle for more than ``min_idle`` seconds (and,
        with ``no_expiry_only``, without expiry), each checked and deleted in one
        atomic step without reading its value.

        :returns: how many were deleted, and counts by type of idle keys that are not
            session values (Redis hashes, lists, ...), which are left alone.
        """

    def unlink_prefix(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
        """Delete every key under ``prefix`` as the scan finds it, unconditionally;
        yield ``(keys seen, keys deleted)`` per batch (``purge --all``)."""

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        """Delete keys; for each, whether it existed."""

    def set_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> None:
        """:meth:`set` each ``(key, value, ttl)``, in as few round trips as possible."""

    def add_many(self, entries: t.Sequence[tuple[bytes, bytes, int | None]]) -> list[bool]:
        """:meth:`add` each ``(key, value, ttl)``; for each, whether it was written."""

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        """:meth:`compare_and_set` each ``(item, new value)``, each atomic on its own."""
