"""Crafting RDB files from real dumps, for the rdb store's tests."""

from __future__ import annotations

import os
import typing as t

from sesstool.stores.rdb_codec import crc64

#: the dumps newer servers wrote (tests/data/rdb/README.md)
DATA = os.path.join(os.path.dirname(__file__), "data", "rdb")


def committed(name: str) -> bytes:
    """The bytes of the committed dump ``name`` (``redis-7.4.1``)."""
    with open(os.path.join(DATA, f"{name}.rdb"), "rb") as fh:
        return fh.read()


def with_crc(data: bytes) -> bytes:
    """``data`` (a whole dump) with its trailing CRC64 recomputed after a change."""
    return data[:-8] + crc64(0, data[:-8]).to_bytes(8, "little")


def write(directory: t.Any, data: bytes, name: str = "crafted.rdb") -> str:
    path = os.path.join(str(directory), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def scan_all(store: t.Any, prefix: bytes = b"") -> dict[bytes, t.Any]:
    return {item.key: item for batch in store.scan(prefix, batch=7) for item in batch}
