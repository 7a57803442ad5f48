"""Session records: what ``list``, ``show`` and ``export`` print, built from stored items.

The record shape is the contract's: ``sid``, ``key``, ``ttl``, ``size``,
``serializer`` and, where asked for, ``data`` in the tagged JSON form.
"""

from __future__ import annotations

import typing as t

from sesstool import serializers
from sesstool.stores.base import StoredItem
from sesstool.tagged import to_tagged

# Keys Flask itself keeps in every session; a session with nothing else is "empty".
BOOKKEEPING_KEYS = frozenset({"_permanent"})


def key_text(key: bytes) -> str:
    """A key as text; bytes that are not UTF-8 are shown as ``\\xNN`` escapes."""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return key.decode("utf-8", "backslashreplace")


def is_empty(data: dict[t.Any, t.Any] | None) -> bool:
    """True for sessions holding nothing but Flask's bookkeeping (``{}``, ``_permanent``)."""
    return data is not None and all(key in BOOKKEEPING_KEYS for key in data)


class Decoded(t.NamedTuple):
    """A stored item with its value decoded."""

    item: StoredItem
    serializer: str
    data: dict[t.Any, t.Any] | None


def decode_item(item: StoredItem, serializer: str = "auto") -> Decoded:
    if item.value is None:
        return Decoded(item, serializers.UNKNOWN, None)
    name, data = serializers.decode(item.value, serializer)
    return Decoded(item, name, data)


def make_record(decoded: Decoded, prefix_length: int, *, with_data: bool) -> dict[str, t.Any]:
    """The contract record for one decoded item."""
    item = decoded.item
    key = key_text(item.key)
    record: dict[str, t.Any] = {
        "sid": key[prefix_length:] if prefix_length else key,
        "key": key,
        "ttl": item.ttl,
        "size": item.size,
        "serializer": decoded.serializer,
    }
    if with_data:
        record["data"] = None if decoded.data is None else to_tagged(decoded.data)
    return record
