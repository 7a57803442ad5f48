"""Every command sesstool sends to memcached, built from checked parts only.

Keys come from stored data (a listing decodes what ``lru_crawler metadump``
prints, and anyone who can write to the cache can plant a key holding CR/LF with
the meta protocol's base64 keys) and from users' files (``import``). Echoed into
the text protocol unchecked, such a key ends one command and starts another, so
a read-only ``list`` could run ``flush_all``. So nothing reaches a connection
but a :class:`Request`, and a :class:`Request` is only made here, by builders
that check every key (:func:`check_key`) and every number they put on the line.

Each builder also says whether its command writes: a connection opened read-only
(every connection a listing uses, and every connection of a store opened
read-only) refuses a writing request before a byte of it is sent, so a read
cannot write whatever a caller does with it.

Expiry follows memcached's 30-day rule: an exptime over 30 days is an absolute
Unix time (Flask-Session writes a 31-day lifetime so); a relative 31 days would
expire at once. memcached holds exptime as a signed 32-bit number, so an expiry
after January 2038 is refused (exit 2) rather than sent, where it would wrap.
"""

from __future__ import annotations

import time
import typing as t

from sesstool.errors import InvalidInput
from sesstool.stores.base import show_key as show_key
from sesstool.stores.base import write_ttl

THIRTY_DAYS = 60 * 60 * 24 * 30  # memcached's REALTIME_MAXDELTA
#: The last expiry memcached can hold: it keeps exptime as a signed 32-bit number,
#: so 2**31 reads as already expired and 2**32 as "never" (tried on 1.6.18).
MAX_EXPTIME = 2**31 - 1
MAX_KEY = 250  # memcached's KEY_MAX_LENGTH
MAX_FLAGS = 2**32 - 1
MAX_CAS = 2**64 - 1

# Bytes that end a token or a line in the text protocol, or that memcached's key
# check refuses. Bytes over 0x7F are allowed: memcached stores them, and they can
# neither end a token nor a line (clients that write UTF-8 prefixes rely on it).
_KEY_OK = bytes(b for b in range(256) if b > 0x20 and b != 0x7F)


class InvalidKey(InvalidInput):
    """A key memcached's text protocol cannot carry (exit 2)."""

    def __init__(self, key: bytes) -> None:
        super().__init__(f"{show_key(key)} is not a valid memcached key ({KEY_RULES})")
        self.key = key


KEY_RULES = f"1 to {MAX_KEY} bytes, no spaces or control characters"


def valid_key(key: bytes) -> bool:
    # translate() deletes every allowed byte: anything left is not allowed.
    return 0 < len(key) <= MAX_KEY and not key.translate(None, _KEY_OK)


def valid_keys(keys: t.Sequence[bytes]) -> bool:
    """Whether every key is valid, checked in one pass over all of them (the
    listing's hot path: almost every batch is all valid, and this costs it about
    30 ns a key)."""
    if not keys or max(map(len, keys)) > MAX_KEY or b"" in keys:
        return False
    return not b"".join(keys).translate(None, _KEY_OK)


def check_key(key: bytes) -> bytes:
    """``key`` if memcached can carry it, else :class:`InvalidKey`."""
    if not valid_key(key):
        raise InvalidKey(key)
    return key


class CheckedKeys(tuple[bytes, ...]):
    """Keys that passed :func:`valid_keys`: made only by checking them (``__new__``
    checks, and a tuple cannot change after), so a builder given one need not check
    it again, which keeps the listing's hot path at one check a key."""

    __slots__ = ()

    def __new__(cls, keys: t.Iterable[bytes]) -> CheckedKeys:
        checked = super().__new__(cls, keys)
        if not valid_keys(list(checked)):
            for key in checked:
                check_key(key)
        return checked


def _check_keys(keys: t.Sequence[bytes]) -> None:
    if type(keys) is not CheckedKeys:
        CheckedKeys(keys)


def _number(value: int, low: int, high: int, what: str) -> int:
    # bool is an int; a float or a str here would be a programming error, but a
    # huge int from a hostile reply or file is input: refuse it, never send it.
    if type(value) is not int or not low <= value <= high:
        raise InvalidInput(f"{what} {value!r} is out of memcached's range ({low} to {high})")
    return value


class Request(bytes):
    """Wire bytes made by a builder of this module; ``writes`` says whether the
    command changes anything on the server."""

    __slots__ = ()
    writes = False


class WriteRequest(Request):
    __slots__ = ()
    writes = True


# -- expiry --------------------------------------------------------------------------


def memcached_exptime(ttl: int | None, now: int | None = None) -> int:
    """The exptime to send for ``ttl`` seconds to live: 0 for none, -1 for already
    expired, an absolute Unix time past 30 days (memcached's rule).

    :raises InvalidInput: when the expiry is past what memcached can hold
        (:data:`MAX_EXPTIME`, January 2038): sent, it would wrap to "expired" or
        to "never expires".
    """
    if ttl is None:
        return 0
    if type(ttl) is not int:
        raise InvalidInput(f"a TTL must be a whole number of seconds, not {ttl!r}")
    if ttl <= 0:
        return -1
    if ttl <= THIRTY_DAYS:
        return ttl
    at = (int(time.time()) if now is None else now) + ttl
    if at > MAX_EXPTIME:
        raise InvalidInput(
            f"a TTL of {ttl}s ends after {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(MAX_EXPTIME))} UTC, "
            "the last expiry memcached can hold (a signed 32-bit Unix time)"
        )
    return at


def exptime_at(timestamp: int, now: int | None = None) -> int:
    """The exptime that ends an item at the Unix time ``timestamp`` (-1 if past)."""
    now = int(time.time()) if now is None else now
    if type(timestamp) is not int:
        raise InvalidInput(f"an expiry time must be a whole Unix time, not {timestamp!r}")
    return memcached_exptime(timestamp - now, now) if timestamp > now else -1


def check_write_ttl(key: bytes, ttl: int | None, now: int | None = None) -> int:
    """The exptime for writing ``key`` with ``ttl``; a TTL that would expire it at
    once or that memcached cannot hold is :class:`InvalidInput`."""
    return memcached_exptime(write_ttl(key, ttl), now)


# -- reads ---------------------------------------------------------------------------


def version() -> Request:
    return Request(b"version\r\n")


def stats() -> Request:
    return Request(b"stats\r\n")


#: the log streams ``watch`` may ask for (``deletions``: memcached 1.6.20 and later)
WATCH_STREAMS = ("mutations", "deletions")


def watch(streams: t.Sequence[str]) -> Request:
    """``watch`` turns the connection into a log feed; it changes nothing stored."""
    if not streams or any(stream not in WATCH_STREAMS for stream in streams):
        raise InvalidInput(f"unknown memcached watch streams {streams!r}")
    return Request(b"watch " + " ".join(streams).encode("ascii") + b"\r\n")


def metadump() -> Request:
    return Request(b"lru_crawler metadump all\r\n")


def mg_values(keys: t.Sequence[bytes], *, marked: bool = False) -> Request:
    """``mg`` of each key; ``marked`` adds an ``mn``, whose ``MN`` reply marks where
    the replies end (a listing then finds them all with one search)."""
    # v t c f: value, seconds left (-1: none), cas, client flags. u: do not bump the
    # item in the LRU or its last-access time (listing is not use).
    _check_keys(keys)
    if not keys:
        return Request(b"mn\r\n" if marked else b"")
    flags = b" v t c f u\r\n"
    return Request(b"mg " + (flags + b"mg ").join(keys) + flags + (b"mn\r\n" if marked else b""))


def mg_idle(keys: t.Sequence[bytes]) -> Request:
    """Seconds since last access, seconds left and cas token, without touching."""
    _check_keys(keys)
    return Request(b"".join([b"mg " + key + b" l t c u\r\n" for key in keys]))


def gets(keys: t.Sequence[bytes]) -> Request:
    _check_keys(keys)
    return Request(b"gets " + b" ".join(keys) + b"\r\n")


# -- writes --------------------------------------------------------------------------


def store(command: bytes, entries: t.Iterable[tuple[bytes, bytes, int]], flags: int = 0) -> WriteRequest:
    """``set``/``add`` of ``(key, value, exptime)`` entries."""
    if command not in (b"set", b"add"):
        raise ValueError(f"not a store command: {command!r}")
    _number(flags, 0, MAX_FLAGS, "client flags")
    parts = []
    for key, value, exptime in entries:
        check_key(key)
        _number(exptime, -1, MAX_EXPTIME, "exptime")
        parts.append(b"%s %s %d %d %d\r\n%s\r\n" % (command, key, flags, exptime, len(value), value))
    return WriteRequest(b"".join(parts))


def cas(entries: t.Iterable[tuple[bytes, int, int, bytes, int]]) -> WriteRequest:
    """``cas`` of ``(key, flags, exptime, value, token)`` entries (exptime -1 with an
    empty value deletes atomically on servers without ``md``)."""
    parts = []
    for key, flags, exptime, value, token in entries:
        check_key(key)
        _number(flags, 0, MAX_FLAGS, "client flags")
        _number(exptime, -1, MAX_EXPTIME, "exptime")
        _number(token, 0, MAX_CAS, "cas token")
        parts.append(b"cas %s %d %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(value), token, value))
    return WriteRequest(b"".join(parts))


def delete(keys: t.Sequence[bytes]) -> WriteRequest:
    _check_keys(keys)
    return WriteRequest(b"".join([b"delete " + key + b"\r\n" for key in keys]))


def md_if(pairs: t.Iterable[tuple[bytes, int]]) -> WriteRequest:
    """``md <key> C<cas>``: delete each key only while it holds that cas token."""
    parts = []
    for key, token in pairs:
        check_key(key)
        _number(token, 0, MAX_CAS, "cas token")
        parts.append(b"md %s C%d\r\n" % (key, token))
    return WriteRequest(b"".join(parts))


def touch(key: bytes, exptime: int) -> WriteRequest:
    check_key(key)
    _number(exptime, -1, MAX_EXPTIME, "exptime")
    return WriteRequest(b"touch %s %d\r\n" % (key, exptime))


def crawl_all() -> WriteRequest:
    """``lru_crawler crawl all``: frees every item past its expiry (a write)."""
    return WriteRequest(b"lru_crawler crawl all\r\n")
