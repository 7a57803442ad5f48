"""``expire`` and ``persist``: when a session ends.

Ending a session now (``--now``, ``--in 0``, or ``--at`` a past time) deletes it
explicitly instead of asking the store for an expiry at or before now: memcached
reads an expiry of 0 as "never", which is the opposite.
"""

from __future__ import annotations

import math
import typing as t
from datetime import datetime, timezone

from sesstool.errors import NotFound
from sesstool.ops.records import key_text
from sesstool.stores.base import Store


def _record(key: bytes, prefix_length: int, ttl: int | None, expires_at: int | None, deleted: bool) -> dict[str, t.Any]:
    text = key_text(key)
    return {
        "sid": text[prefix_length:],
        "key": text,
        "ttl": ttl,
        "expires_at": None if expires_at is None
        else datetime.fromtimestamp(expires_at, tz=timezone.utc).isoformat(),
        "deleted": deleted,
    }


def set_expiry(
    store: Store,
    key: bytes,
    prefix_length: int,
    *,
    seconds: int | None = None,
    at: datetime | None = None,
    clock: t.Callable[[], float],
) -> dict[str, t.Any]:
    """End the session at ``key`` in ``seconds``, at ``at``, or (neither) now.

    :returns: ``{"sid", "key", "ttl", "expires_at", "deleted"}``.
    :raises NotFound: when there is no such session.
    """
    now = clock()
    if at is not None:
        # A whole second at or after the asked time: never earlier than asked.
        timestamp = math.ceil(at.timestamp())
        seconds = max(timestamp - math.floor(now), 0)
    if not seconds:
        if store.delete([key]) == 0:
            raise NotFound(f"no session {key_text(key)!r} in {store.describe()}")
        return _record(key, prefix_length, 0, math.floor(now), True)
    if at is not None:
        done = store.expire_at(key, timestamp)
        expires_at = timestamp
    else:
        done = store.expire(key, seconds)
        expires_at = math.floor(now) + seconds
    if not done:
        raise NotFound(f"no session {key_text(key)!r} in {store.describe()}")
    return _record(key, prefix_length, seconds, expires_at, False)


def remove_expiry(store: Store, key: bytes, prefix_length: int) -> dict[str, t.Any]:
    """Make the session at ``key`` never expire.

    :raises NotFound: when there is no such session.
    """
    if not store.persist(key):
        raise NotFound(f"no session {key_text(key)!r} in {store.describe()}")
    return _record(key, prefix_length, None, None, False)
