"""Listing a memcached server: its ``lru_crawler metadump``, spooled, as checked keys.

The dump prints each key URL-encoded (``key=session%3Aabc exp=... la=...``).
Decoded, a key may hold anything a client could store, and the meta protocol's
base64 keys let any client store CR, LF and spaces: sent back inside ``mg`` such a
key would run commands of the attacker's choosing. So every decoded key is checked
against memcached's key rules; one that fails is skipped, never sent, and reported
(quoted and escaped) through the store's ``warn``.

The whole dump is read before the first keys are yielded: the crawler skips any
item whose lock is held at the instant it passes (it only try-locks), so reading
values while it runs makes it miss some (about 20 in a million in a test). The
lines wait in a spooled file, in memory up to :data:`SPOOL_MEMORY` and on disk past
it, so memory stays flat.
"""

from __future__ import annotations

import re
import tempfile
import typing as t

from sesstool.stores.base import Columns, StoredItem
from sesstool.stores.memcached_commands import KEY_RULES, CheckedKeys, InvalidKey, show_key, valid_key
from sesstool.stores.memcached_wire import uri_decode, uri_encode

SPOOL_MEMORY = 8 * 1024 * 1024  # listed keys kept in memory before spilling to disk
SPOOL_READ = 256 * 1024
#: Invalid keys named one by one in warnings; past that they are only counted, so
#: a million planted keys cannot flood the terminal.
NAMED_INVALID = 5

#: ``exp`` of a dump line; bounded so that no line can make int() work hard.
EXP = rb"(-?\d{1,10})(?!\d)"


class InvalidKeys:
    """The invalid keys one scan met: the first few named in a warning each, the
    rest counted in one line when the scan of a server ends."""

    def __init__(self, warn: t.Callable[[str], None]) -> None:
        self.warn = warn
        self.count = 0

    def skip(self, server: str, key: bytes) -> None:
        self.count += 1
        if self.count <= NAMED_INVALID:
            self.warn(f"skipped an invalid memcached key on {server}: {show_key(key)} (a key must be {KEY_RULES})")

    def finish(self, server: str) -> None:
        if self.count > NAMED_INVALID:
            self.warn(f"skipped {self.count - NAMED_INVALID:,} more invalid memcached keys on {server}")
        self.count = 0


def listed(dump: t.Iterable[bytes], prefix: bytes, size: int, *,
           with_expiry: bool) -> t.Generator[list[bytes], None, None]:  # fmt: skip
    """What a dump lists under ``prefix``, ``size`` lines at a time: the encoded
    rest of each key (and its ``exp``, space-separated, if asked)."""
    encoded = re.escape(uri_encode(prefix))
    if with_expiry:
        pattern = re.compile(b"key=" + encoded + rb"(\S*) exp=" + EXP)
    else:
        pattern = re.compile(b"key=" + encoded + rb"(\S*)")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
        for block in dump:
            found = pattern.findall(block)
            if found:
                if with_expiry:
                    found = [b"%s %s" % pair for pair in found]
                spool.write(b"\n".join(found))
                spool.write(b"\n")
        spool.seek(0)
        lines: list[bytes] = []
        tail = b""
        while True:
            data = spool.read(SPOOL_READ)
            if not data:
                break
            lines += (tail + data).split(b"\n")
            tail = lines.pop()
            while len(lines) >= size:
                yield lines[:size]
                del lines[:size]
        if lines:
            yield lines


def decode_keys(prefix: bytes, lines: list[bytes], invalid: InvalidKeys, server: str) -> CheckedKeys:
    """The full keys of listed lines, invalid ones reported and left out."""
    if b"%" not in b"".join(lines):
        # The usual case (Flask-Session ids are URL-safe): nothing to decode, and
        # one check over the whole batch.
        keys = [prefix + rest for rest in lines]
    else:
        keys = [prefix + uri_decode(rest) for rest in lines]
    try:
        return CheckedKeys(keys)
    except InvalidKey:
        pass
    good = []
    for key in keys:
        if valid_key(key):
            good.append(key)
        else:
            invalid.skip(server, key)
    return CheckedKeys(good)


def decode_expiry(prefix: bytes, lines: list[bytes], invalid: InvalidKeys, server: str) -> dict[bytes, int]:
    """Full key to ``exp`` for listed lines with expiry, invalid keys left out."""
    expiry = {}
    for line in lines:
        rest, _, exp = line.partition(b" ")
        key = prefix + uri_decode(rest)
        if valid_key(key):
            expiry[key] = int(exp)
        else:
            invalid.skip(server, key)
    return expiry


def expiry_lines(block: bytes) -> list[tuple[bytes, bytes]]:
    """``(encoded key, exp)`` of every line of a dump block."""
    return re.findall(rb"key=(\S+) exp=" + EXP, block)


def regrouped(chunks: t.Iterable[list[StoredItem]], batch: int) -> t.Iterator[list[StoredItem]]:
    """Request-sized chunks of items as caller-sized batches of at least ``batch``."""
    out: list[StoredItem] = []
    for items in chunks:
        out += items
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def joined(chunks: t.Iterable[Columns], batch: int) -> t.Iterator[Columns]:
    """Request-sized :class:`Columns` as caller-sized ones of at least ``batch`` keys."""
    keys: list[bytes] = []
    values: list[bytes | None] = []
    pttls: list[int] = []
    for columns in chunks:
        keys += columns.keys
        values += columns.values
        pttls += columns.pttls
        if len(keys) >= batch:
            yield Columns(keys, values, pttls, {})
            keys, values, pttls = [], [], []
    if keys:
        yield Columns(keys, values, pttls, {})
