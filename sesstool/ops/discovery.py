"""Where else sessions may be: other prefixes of the keyspace, other Redis databases.

Both searches are bounded (``doctor`` runs against production): at most
:data:`MAX_KEYS` keys of the whole keyspace are listed, and a few values per prefix
are read to check they look like sessions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from sesstool.ops.records import UNKNOWN, decode_value, key_text
from sesstool.stores.base import STRING, Store

#: Keys of the whole keyspace listed at most, and values read per prefix.
MAX_KEYS = 10_000
VALUES_PER_PREFIX = 5
MAX_PREFIXES = 50
#: Databases a plain Redis server has unless configured otherwise (``databases 16``).
REDIS_DATABASES = 16

# Flask-Session ids are secrets.token_urlsafe(SESSION_ID_LENGTH): 43 characters for
# the default 32 bytes; shorter lengths still give 22 or more for 16 bytes.
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_-]{22,}\Z")


def split_session_key(key: str) -> tuple[str, str] | None:
    """``(prefix, sid)`` when ``key`` ends in something like a Flask-Session id, else None.

    The prefix runs up to the last ``:`` when there is one (``session:``,
    ``myapp:sess:``); otherwise the id is taken as the last 43 characters (the
    default id length), since ``_`` and ``-`` occur inside ids too.
    """
    head, colon, tail = key.rpartition(":")
    if colon and _TOKEN_TAIL.match(tail):
        return head + colon, tail
    if len(key) > 43 and _TOKEN_TAIL.match(key[-43:]):
        return key[:-43], key[-43:]
    return None


@dataclass
class Prefix:
    """A prefix found in the keyspace: keys seen, and how many of the values read decode."""

    prefix: str
    keys: int = 0
    sample: list[bytes] = field(default_factory=list)
    sessions: int = 0


@dataclass
class Keyspace:
    """What a bounded listing of the whole keyspace found."""

    prefixes: list[Prefix]
    listed: int
    complete: bool
    #: Keys seen that end in the sid looked for (``find_sid``).
    found: list[str]


def survey(store: Store, *, find_sid: str | None = None, max_keys: int = MAX_KEYS) -> Keyspace:
    """List up to ``max_keys`` keys of the keyspace, grouped by session-like prefix,
    most keys first; prefixes whose sampled values decode as sessions only."""
    groups: dict[str, Prefix] = {}
    found: list[str] = []
    listed = 0
    complete = True
    for keys in store.scan_keys(b"", batch=1000):
        for raw in keys:
            listed += 1
            key = key_text(raw)
            if find_sid and key.endswith(find_sid) and len(found) < 10:
                found.append(key)
            parts = split_session_key(key)
            if parts is None:
                continue
            group = groups.get(parts[0])
            if group is None:
                if len(groups) >= MAX_PREFIXES * 4:
                    continue
                group = groups[parts[0]] = Prefix(parts[0])
            group.keys += 1
            if len(group.sample) < VALUES_PER_PREFIX:
                group.sample.append(raw)
        if listed >= max_keys:
            complete = False
            break
    ranked = sorted(groups.values(), key=lambda g: (-g.keys, g.prefix))[:MAX_PREFIXES]
    for group in ranked:
        for item in store.fetch(group.sample):
            if item.kind == STRING and item.value is not None and decode_value(item.value)[0] != UNKNOWN:
                group.sessions += 1
    return Keyspace([g for g in ranked if g.sessions], listed, complete, found)


def other_database_urls(url: str) -> list[str]:
    """The URLs of the other databases of the same Redis server, when ``url`` is a
    plain ``redis://`` URL (the one place that decides where "another database" is;
    other schemes: none)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if parts.scheme != "redis" or parts.query or parts.fragment:
        return []
    path = parts.path.strip("/")
    if path and not path.isdigit():
        return []
    current = int(path) if path else 0
    return [urlunsplit((parts.scheme, parts.netloc, f"/{n}", "", "")) for n in range(REDIS_DATABASES) if n != current]
