"""Batch operations on any store, with fallbacks built on the primitives.

A backend that implements :meth:`~sesstool.stores.base.BatchStore.fetch_idle`,
``delete_idle``, ``unlink_prefix``, ``delete_each``, ``set_many``, ``add_many`` or
``compare_and_set_many`` does them in as few round trips as it can (Redis: one Lua
script or one pipeline per batch); for a store that does not (yet), these functions
fall back to the primitives every store has, which is correct, only slower. The
write commands call these, never the store methods directly, so every backend works
from its first day.
"""

from __future__ import annotations

import typing as t

from sesstool.stores.base import MISSING, STRING, Store, StoredItem

Entry = tuple[bytes, bytes, "int | None"]


def fetch_idle(
    store: Store, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False, values: bool = True
) -> list[tuple[StoredItem, int]]:
    """The keys idle for more than ``min_idle`` seconds, read idle time first.

    :raises StoreError: when the store cannot report idle time.
    """
    method = getattr(store, "fetch_idle", None)
    if method is not None:
        return t.cast("list[tuple[StoredItem, int]]",
                      method(keys, min_idle=min_idle, no_expiry_only=no_expiry_only, values=values))
    idles: list[int | None] = store.idle_seconds(keys)  # type: ignore[attr-defined]
    chosen = [(key, idle) for key, idle in zip(keys, idles, strict=True) if idle is not None and idle > min_idle]
    items = store.fetch([key for key, _ in chosen])
    return [
        (item, idle)
        for item, (_, idle) in zip(items, chosen, strict=True)
        if item.kind != MISSING and (not no_expiry_only or item.ttl is None)
    ]


def delete_idle(
    store: Store, keys: t.Sequence[bytes], *, min_idle: int, no_expiry_only: bool = False
) -> tuple[int, dict[str, int]]:
    """Delete the session keys still idle for more than ``min_idle`` seconds.

    The fallback reads the idle keys and deletes them only if unchanged since.
    """
    method = getattr(store, "delete_idle", None)
    if method is not None:
        return t.cast("tuple[int, dict[str, int]]",
                      method(keys, min_idle=min_idle, no_expiry_only=no_expiry_only))
    items = [item for item, _ in fetch_idle(store, keys, min_idle=min_idle, no_expiry_only=no_expiry_only)]
    others: dict[str, int] = {}
    for item in items:
        if item.kind != STRING:
            others[item.kind] = others.get(item.kind, 0) + 1
    return store.delete_if_unchanged([item for item in items if item.kind == STRING]), others


def unlink_prefix(store: Store, prefix: bytes, *, batch: int = 1000) -> t.Iterator[tuple[int, int]]:
    """Delete every key under ``prefix``; yield ``(keys seen, keys deleted)`` per batch."""
    method = getattr(store, "unlink_prefix", None)
    if method is not None:
        yield from method(prefix, batch=batch)
        return
    for keys in store.scan_keys(prefix, batch=batch):
        yield len(keys), store.delete(keys)


def delete_each(store: Store, keys: t.Sequence[bytes]) -> list[bool]:
    """Delete ``keys``; for each, whether it existed."""
    method = getattr(store, "delete_each", None)
    if method is not None:
        return t.cast("list[bool]", method(keys))
    return [store.delete([key]) > 0 for key in keys]


def set_many(store: Store, entries: t.Sequence[Entry]) -> None:
    method = getattr(store, "set_many", None)
    if method is not None:
        method(entries)
        return
    for key, value, ttl in entries:
        store.set(key, value, ttl)


def add_many(store: Store, entries: t.Sequence[Entry]) -> list[bool]:
    method = getattr(store, "add_many", None)
    if method is not None:
        return t.cast("list[bool]", method(entries))
    return [store.add(key, value, ttl) for key, value, ttl in entries]


def compare_and_set_many(store: Store, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
    method = getattr(store, "compare_and_set_many", None)
    if method is not None:
        return t.cast("list[bool]", method(pairs))
    return [store.compare_and_set(item, value) for item, value in pairs]
