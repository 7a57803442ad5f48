"""Session stores: one module per backend behind :class:`~sesstool.stores.base.Store`.

Drivers (redis, pymemcache) are imported only when a store of that kind is opened.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from sesstool.errors import InvalidInput
from sesstool.stores.base import Store, StoredItem

__all__ = ["Store", "StoredItem", "open_store", "redact_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
MEMCACHED_SCHEMES = ("memcached",)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{userinfo}@{host}").geturl()


def open_store(url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> Store:
    """Open the store a URL names (or wrap a ready ``client`` of the app's).

    :param warn: told, in one line each, about stored keys a listing skips (memcached
        keys its protocol cannot carry); Python's :func:`warnings.warn` by default.

    :raises InvalidInput: for an unknown scheme or a malformed URL.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        from sesstool.stores.redis import open_redis

        return open_redis(url, client=client)
    if scheme in MEMCACHED_SCHEMES:
        from sesstool.stores.memcached import open_memcached

        return open_memcached(url, client=client, warn=warn)
    known = ", ".join(f"{s}://" for s in REDIS_SCHEMES + MEMCACHED_SCHEMES)
    raise InvalidInput(f"unsupported store URL {redact_url(url)!r}: use one of {known}")
