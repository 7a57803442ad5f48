"""Session stores: one module per backend behind :class:`~sesstool.stores.base.Store`.

Drivers (redis, pymemcache) are imported only when a store of that kind is opened.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from sesstool.errors import InvalidInput
from sesstool.redact import redact_url, remember_url, url_userinfo
from sesstool.stores.base import Store, StoredItem

__all__ = ["Store", "StoredItem", "open_store", "redact_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
MEMCACHED_SCHEMES = ("memcached",)


def open_store(url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> Store:
    """Open the store a URL names (or wrap a ready ``client`` of the app's).

    :param warn: told, in one line each, about stored keys a listing skips (memcached
        keys its protocol cannot carry); Python's :func:`warnings.warn` by default.

    :raises InvalidInput: for an unknown scheme or a malformed URL.
    """
    # Registered before parsing: a URL that does not parse is the one most likely
    # to be quoted back in an error.
    remember_url(url)
    try:
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError as e:  # an unclosed "[" of an IPv6 host, for one
        raise InvalidInput(f"invalid store URL {redact_url(url)!r}: {e}") from e
    userinfo = url_userinfo(url)
    if userinfo is not None and any(ch in userinfo for ch in "/?#[]@"):
        # Parsers split such a URL inside the password and then quote a piece of it
        # in their errors; refuse it whole, naming no character of it.
        raise InvalidInput(
            f"invalid store URL {redact_url(url)!r}: the user or password holds an unescaped "
            "/ ? # [ ] or @; percent-encode them (%2F %3F %23 %5B %5D %40)"
        )
    if scheme in REDIS_SCHEMES:
        from sesstool.stores.redis import open_redis

        return open_redis(url, client=client)
    if scheme in MEMCACHED_SCHEMES:
        from sesstool.stores.memcached import open_memcached

        return open_memcached(url, client=client, warn=warn)
    known = ", ".join(f"{s}://" for s in REDIS_SCHEMES + MEMCACHED_SCHEMES)
    raise InvalidInput(f"unsupported store URL {redact_url(url)!r}: use one of {known}")
