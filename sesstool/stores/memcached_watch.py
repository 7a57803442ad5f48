"""memcached's change feed: ``watch mutations`` (and ``watch deletions``) log lines.

Each server gets a dedicated connection that sends ``watch`` and from then on only
receives log lines, one per ``\\n``. What memcached 1.6.18 (the version this was
studied on) writes for a store command, one line per command, whatever its
outcome::

    ts=1796629769.826592 gid=2 type=item_store key=session%3Aa status=stored cmd=set ttl=0 clsid=1 cfd=26 size=1

and, from 1.6.20 with ``watch deletions``, for ``delete`` and ``md``::

    ts=... gid=... type=deleted key=session%3Aa cmd=delete clsid=1 size=1

Keys are URI-encoded (``%3A``); a key that does not decode to one memcached
accepts is hostile output and is dropped. Anything that is not such a line
(another log type, a notice) is no event. The lines are server output, so the
parser is strict (:func:`parse_line`): it never raises on any input, and a line it
cannot read is skipped.

Created or changed: the log only says which command stored the item. ``add``
(stored only when the key did not exist) is ``created``; ``replace``,
``append``, ``prepend`` and ``cas`` need the key to exist and are ``changed``;
``set``, which Flask-Session uses for every save, says nothing, so the feed keeps
the keys it knows: every key under the prefix when it started (listed *after*
subscribing, so no write is missed; a key first written while that listing runs
may be reported ``changed``), plus each key stored since, minus each deleted.
Without ``watch deletions`` (before 1.6.20) deletions are never seen: they are not
reported (a warning says so), and a session deleted and written again is
``changed``. memcached logs no expiry at all: items past it vanish silently, so
``expired`` is never reported here.
"""

from __future__ import annotations

import re
import select
import typing as t

from sesstool.errors import StoreError
from sesstool.stores import memcached_commands as commands
from sesstool.stores.changes import CHANGED, CREATED, DELETED, Change, Feed, FeedState
from sesstool.stores.memcached_commands import valid_key
from sesstool.stores.memcached_wire import MAX_LINE, Connection, shown, uri_decode

if t.TYPE_CHECKING:
    from sesstool.stores.memcached_reads import MemcachedReader

#: the first version whose ``watch`` has a ``deletions`` stream
DELETIONS_SINCE = (1, 6, 20)

_FIELD = re.compile(rb"([a-z_]{1,32})=([!-~]{1,1024})")
_NUMBER = re.compile(rb"[0-9]{1,20}(\.[0-9]{1,9})?")
#: commands that store only over an existing item
_CHANGES_ONLY = frozenset({b"replace", b"append", b"prepend", b"cas"})
#: a key as memcached's uriencode() writes it: safe bytes, everything else %XX
_ENCODED_KEY = re.compile(rb"(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2}){1,750}")
_VERSION = re.compile(rb"VERSION (\d{1,4})\.(\d{1,4})\.(\d{1,4})")


class LogEntry(t.NamedTuple):
    """A log line that may be an event: its ``type``, decoded ``key``, ``cmd`` and ``status``."""

    type: bytes
    key: bytes
    cmd: bytes
    status: bytes


def parse_line(line: bytes) -> LogEntry | None:
    """The entry a log line holds, or ``None`` for a line that is not a well-formed
    ``item_store`` or ``deleted`` entry (never raises)."""
    if len(line) > MAX_LINE:
        return None
    fields: dict[bytes, bytes] = {}
    for word in line.split(b" "):
        match = _FIELD.fullmatch(word)
        if match is None or match[1] in fields:
            return None
        fields[match[1]] = match[2]
    if not _NUMBER.fullmatch(fields.get(b"ts", b"")) or not fields.get(b"gid", b"").isdigit():
        return None
    kind = fields.get(b"type")
    encoded = fields.get(b"key")
    if kind not in (b"item_store", b"deleted") or encoded is None or not _ENCODED_KEY.fullmatch(encoded):
        return None
    key = uri_decode(encoded)
    if not valid_key(key):
        return None
    status = fields.get(b"status", b"")
    if kind == b"item_store" and not status:
        return None
    return LogEntry(kind, key, fields.get(b"cmd", b""), status)


class KnownKeys:
    """Decides created from changed for one feed (see the module docstring)."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.keys: set[bytes] = set()

    def change(self, entry: LogEntry) -> Change | None:
        if not entry.key.startswith(self.prefix):
            return None
        if entry.type == b"deleted":
            self.keys.discard(entry.key)
            return Change(DELETED, entry.key)
        if entry.status != b"stored":
            return None  # not_stored, exists, not_found: nothing changed
        known = entry.key in self.keys
        self.keys.add(entry.key)
        if entry.cmd == b"add" or (not known and entry.cmd not in _CHANGES_ONLY):
            return Change(CREATED, entry.key)
        return Change(CHANGED, entry.key)


class LogLines:
    """Whole ``\\n``-ended lines out of received chunks, each bounded by :data:`MAX_LINE`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if len(self.buf) > MAX_LINE or any(len(line) > MAX_LINE for line in lines):
            raise StoreError(f"memcached at {self.name} sent a log line longer than {MAX_LINE:,} bytes")
        return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def server_version(line: bytes) -> tuple[int, int, int] | None:
    """``(1, 6, 18)`` from a ``version`` reply; ``None`` for one that names no release."""
    match = _VERSION.fullmatch(line)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


class _Watcher(t.NamedTuple):
    conn: Connection
    lines: LogLines


def _subscribe(store: MemcachedReader, server: t.Any) -> _Watcher:
    version = server_version(server.reader.call(commands.version(), 1, "version")[0])
    deletions = version is not None and version >= DELETIONS_SINCE
    conn: Connection = server.connection()
    streams = ["mutations", "deletions"] if deletions else ["mutations"]
    conn.send(commands.watch(streams))
    reply = conn.readline()
    if reply != b"OK":
        conn.close()
        raise StoreError(f"memcached at {server.name} refused `watch {' '.join(streams)}`: {shown(reply)}")
    if not deletions:
        named = ".".join(map(str, version)) if version else "a version before 1.6.20"
        store.warn(f"memcached at {server.name} ({named}) logs no deletions (watch deletions needs "
                   "1.6.20 or later): deleted sessions are not reported")
    lines = LogLines(server.name)
    # What came with the OK is the first of the log.
    rest, conn.buf, conn.pos = conn.buf[conn.pos :], b"", 0
    watcher = _Watcher(conn, lines)
    if rest:
        lines.buf = rest
    return watcher


def memcached_feed(store: MemcachedReader, prefix: bytes, *, idle: float) -> Feed:
    """The merged feed of every server of ``store`` (see the module docstring)."""
    watchers: list[_Watcher] = []
    try:
        for server in store.servers:
            watchers.append(_subscribe(store, server))
        known = KnownKeys(prefix)
        for keys in store.scan_keys(prefix):
            known.keys.update(keys)
            yield FeedState.IDLE  # a step each batch: a long listing is no stall
        yield FeedState.READY
        for watcher in watchers:  # lines that came with the OK or during the listing
            yield from _changes(known, watcher.lines.feed(b""))
        while True:
            readable = select.select([w.conn.sock for w in watchers if w.conn.sock is not None], [], [], idle)[0]
            if not readable:
                yield FeedState.IDLE
                continue
            for watcher in watchers:
                if watcher.conn.sock in readable:
                    yield from _changes(known, watcher.lines.feed(watcher.conn.recv()))
    finally:
        for watcher in watchers:
            watcher.conn.close()


def _changes(known: KnownKeys, lines: list[bytes]) -> t.Iterator[Change]:
    for line in lines:
        entry = parse_line(line)
        if entry is not None:
            change = known.change(entry)
            if change is not None:
                yield change
