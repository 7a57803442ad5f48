"""Bounded zlib: what cookies and memcached clients compress, inflated under a limit.

``zlib.decompress`` has no output limit, so a few kilobytes of crafted input (a
cookie, a memcached value flagged compressed) would expand to gigabytes. Here the
output is capped while inflating: the work is bounded by ``limit``, never by what
the data claims.
"""

from __future__ import annotations

import zlib


class InflateError(ValueError):
    """Not zlib data, truncated, or expanding past the limit; the message says which,
    as a phrase that follows what was inflated ("the payload is truncated")."""


def inflate(raw: bytes, limit: int) -> bytes:
    """zlib-decompress ``raw`` to at most ``limit`` bytes.

    :raises InflateError: for bad or truncated zlib data, or data that expands past ``limit``.
    """
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, limit + 1)
    except zlib.error as e:
        raise InflateError(f"is not valid zlib data ({e})") from e
    if len(data) > limit or inflater.unconsumed_tail:
        raise InflateError(f"expands to more than {limit:,} bytes; refused (a zlib bomb?)")
    if not inflater.eof:
        raise InflateError("is truncated")
    return data
