"""``stats --by FIELD`` and ``stats --fields``: who holds the sessions, and what makes them big.

Both run in one streaming pass with bounded memory. Session data is written by
whoever holds a session, so neither the number of distinct values of a field nor
the number of distinct field names is bounded by anything but the store: both are
tallied by :class:`BoundedTally`, exact while the distinct names fit its capacity
and a Misra-Gries heavy-hitters summary past it, with the error stated.
"""

from __future__ import annotations

import hashlib
import json
import typing as t
from dataclasses import dataclass, field

import msgspec

from sesstool.codecs.tagged import MsgpackExt, to_tagged
from sesstool.errors import UndecodableValue
from sesstool.ops.records import Decoded, isolated
from sesstool.ops.selectors import MISSING, lookup, split_path

#: Distinct values (or field names) counted exactly; past this, counts are approximate.
DEFAULT_CAPACITY = 100_000
DEFAULT_TOP = 20
#: Longer values are tallied under a shortened name (with a hash, so they stay
#: apart): an attacker's megabyte-long user id must not cost a megabyte per entry.
MAX_NAME_LENGTH = 200

_json = msgspec.json.Encoder()


def _ext_hook(value: t.Any) -> t.Any:
    if isinstance(value, MsgpackExt):
        return msgspec.msgpack.Ext(value.code, value.data)
    raise TypeError(type(value).__name__)


_msgpack = msgspec.msgpack.Encoder(enc_hook=_ext_hook)


@dataclass
class _Entry:
    rank: int  # what eviction compares; reduced at each prune (Misra-Gries)
    sessions: int = 0
    bytes: int = 0
    max: int = 0


@dataclass
class BoundedTally:
    """Sessions, bytes and largest size per name, in at most ``capacity`` entries.

    While the distinct names fit, every figure is exact. When a new name would
    exceed ``capacity``, the entries are pruned Misra-Gries style: the median rank
    ``m`` is subtracted from every entry's rank and those left at zero or below are
    dropped, which frees at least half the entries. A kept name's figures count the
    sessions seen while it was kept, so they never overstate; ``error`` (the sum of
    the ``m``) bounds how far a ranked figure may understate, and is at most twice
    the total ranked weight divided by ``capacity``.

    :param by_bytes: rank by bytes (``--fields``) instead of sessions (``--by``).
    """

    capacity: int = DEFAULT_CAPACITY
    by_bytes: bool = False
    entries: dict[str, _Entry] = field(default_factory=dict)
    error: int = 0

    def add(self, name: str, size: int) -> None:
        entry = self.entries.get(name)
        if entry is None:
            if len(self.entries) >= self.capacity:
                self._prune()
            entry = self.entries[name] = _Entry(rank=0)
        entry.rank += size if self.by_bytes else 1
        entry.sessions += 1
        entry.bytes += size
        if size > entry.max:
            entry.max = size

    def _prune(self) -> None:
        ranks = sorted(entry.rank for entry in self.entries.values())
        median = ranks[len(ranks) // 2]
        self.error += median
        kept = {}
        for name, entry in self.entries.items():
            entry.rank -= median
            if entry.rank > 0:
                kept[name] = entry
        self.entries = kept

    @property
    def approximate(self) -> bool:
        return self.error > 0

    def top(self, n: int) -> list[tuple[str, _Entry]]:
        """The ``n`` names with the most sessions (or bytes), ties by name."""
        if self.by_bytes:
            return sorted(self.entries.items(), key=lambda kv: (-kv[1].bytes, kv[0]))[:n]
        return sorted(self.entries.items(), key=lambda kv: (-kv[1].sessions, -kv[1].bytes, kv[0]))[:n]


def value_name(value: t.Any) -> str:
    """A field's value as ``stats --by`` lists it: strings as they are, the rest as JSON text.

    :raises UndecodableValue: when the value cannot be written as JSON.
    """
    text = value if isinstance(value, str) else isolated(_json.encode, isolated(to_tagged, value)).decode("utf-8")
    return _bounded(text)


def _bounded(text: str) -> str:
    """``text`` fit to tally and print: lone surrogates (a pickle can hold them, UTF-8
    output cannot) as ``\\udcxx`` escapes, and shortened past :data:`MAX_NAME_LENGTH`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= MAX_NAME_LENGTH:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{text[:MAX_NAME_LENGTH]}… ({len(text):,} characters, sha256 {digest})"


def _tally_json(tally: BoundedTally, extra: dict[str, t.Any]) -> dict[str, t.Any]:
    extra["approximate"] = tally.approximate
    extra["error"] = tally.error
    return extra


@dataclass
class ByValue:
    """``stats --by FIELD``: sessions and stored bytes per value of ``FIELD`` (a dotted path)."""

    field_text: str
    capacity: int = field(default_factory=lambda: DEFAULT_CAPACITY)  # read when run: tests lower it
    count: int = 0
    missing: int = 0
    undecodable: int = 0
    tally: BoundedTally = field(init=False)
    path: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.path = split_path(self.field_text)
        self.tally = BoundedTally(self.capacity)

    def add(self, decoded: Decoded) -> None:
        data = decoded.data
        if data is None:  # the scan counts those (ScanCounters.undecodable)
            return
        try:
            value = isolated(lookup, data, self.path)
            name = None if value is MISSING else value_name(value)
        except UndecodableValue:  # this session's value cannot be shown: counted, never a crash
            self.undecodable += 1
            return
        self.count += 1
        if name is None:
            self.missing += 1
        else:
            self.tally.add(name, decoded.item.size)

    def result(self, top: int = DEFAULT_TOP, *, undecodable: int = 0) -> dict[str, t.Any]:
        """The contract's ``stats --by`` shape; ``undecodable``: what the scan could not decode."""
        values = [{"value": name, "sessions": e.sessions, "bytes": e.bytes} for name, e in self.tally.top(top)]
        return _tally_json(self.tally, {
            "field": self.field_text, "values": values, "missing": self.missing,
            "count": self.count, "distinct": None if self.tally.approximate else len(self.tally.entries),
            "undecodable": self.undecodable + undecodable,
        })


def field_sizes(decoded: Decoded) -> list[tuple[str, int]]:
    """Each top-level field of a session with the bytes its key and value take.

    msgpack and json sessions are measured in their own encoding (msgspec, as
    Flask-Session 0.8 writes them); pickled ones by the length of the tagged JSON
    form, an approximation (pickle's own framing is not reproduced).

    :raises UndecodableValue: when a value cannot be measured.
    """
    data = t.cast(dict[t.Any, t.Any], decoded.data)
    native = {"msgpack": _msgpack.encode, "json": _json.encode}.get(decoded.serializer)
    sizes = []
    for key, value in data.items():
        name = key if isinstance(key, str) else value_name(key)
        size = None
        if native is not None:
            try:
                size = len(native(key)) + len(native(value))
            except _ENCODE_ERRORS:
                pass
        if size is None:
            size = _tagged_size(key) + _tagged_size(value)
        sizes.append((_bounded(name), size))
    return sizes


_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, msgspec.EncodeError)


def _tagged_size(value: t.Any) -> int:
    tagged = to_tagged(value)
    try:
        return len(_json.encode(tagged))
    except _ENCODE_ERRORS:
        # A lone surrogate (pickles can hold them): stdlib json writes it as an escape.
        return len(json.dumps(tagged, separators=(",", ":")))


@dataclass
class ByField:
    """``stats --fields``: bytes per top-level field over all sessions, most first."""

    capacity: int = field(default_factory=lambda: DEFAULT_CAPACITY)  # read when run: tests lower it
    count: int = 0
    undecodable: int = 0
    total: int = 0
    tally: BoundedTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = BoundedTally(self.capacity, by_bytes=True)

    def add(self, decoded: Decoded) -> None:
        if decoded.data is None:  # the scan counts those (ScanCounters.undecodable)
            return
        try:
            sizes = isolated(field_sizes, decoded)
        except UndecodableValue:  # counted, never a crash
            self.undecodable += 1
            return
        self.count += 1
        self.total += decoded.item.size
        for name, size in sizes:
            self.tally.add(name, size)

    def result(self, top: int = DEFAULT_TOP, *, undecodable: int = 0) -> dict[str, t.Any]:
        """The contract's ``stats --fields`` shape (see :meth:`ByValue.result`)."""
        fields = [
            {"field": name, "sessions": e.sessions, "bytes": e.bytes, "max": e.max} for name, e in self.tally.top(top)
        ]
        return _tally_json(self.tally, {
            "fields": fields, "count": self.count, "total": self.total,
            "undecodable": self.undecodable + undecodable,
        })
