"""``import``: exported NDJSON records written back, exactly (:mod:`sesstool.ops.transfer`
writes them).

``import`` writes each record under the current ``--prefix`` plus its ``sid`` (the
original key when the prefix is the same), with its TTL (``null``: no expiry) and
serializer. When a record has ``raw`` and ``data`` still describes it, ``raw`` is
written; when ``data`` was edited in the file, ``data`` is encoded (and must be
something the serializer holds exactly). A record without ``serializer`` is msgpack,
Flask-Session 0.8's default.

Two kinds of store change that (:class:`Target`): one whose keys hide the sid (a
file store) takes ``sid: null`` records back under their own key; one whose app
reads a single serializer (a file store: pickle) gets the data of other records
re-encoded to it, so a Redis export moves there.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import typing as t
from dataclasses import dataclass

from sesstool.codecs import serializers
from sesstool.codecs.fidelity import encode_exact, fingerprint
from sesstool.codecs.tagged import from_tagged
from sesstool.durations import MAX_DURATION
from sesstool.errors import InvalidInput, SesstoolError, UndecodableValue
from sesstool.ops.pacing import DEFAULT_BATCH, Pacer
from sesstool.stores.base import Capability, Store

SERIALIZER_NAMES = (*serializers.SERIALIZERS, serializers.UNKNOWN)


#: The longest record line read: a session value past this is no session (memcached
#: keeps at most 1 MB a value; Redis apps rarely a few).
MAX_LINE_BYTES = 64 << 20
#: Parsed records kept in memory between the check and the write; a bigger file is
#: parsed a second time instead, so memory stays bounded for any file.
KEEP_PARSED_BYTES = 64 << 20
#: The longest TTL a record may carry: what ``--in`` accepts (100 years).
MAX_TTL = MAX_DURATION
#: The longest sid: memcached's key limit (250 bytes) holds the prefix too, and
#: Flask-Session's ids are 43 characters.
MAX_SID_BYTES = 200
# Whitespace and control characters are never in a Flask-Session id, and on a
# text protocol (memcached) they would end the key early.
_BAD_SID_CHAR = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]")


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0
    invalid: int | None = None  #: lines skipped as invalid (with ``skip_invalid``)

    def as_json(self) -> dict[str, int]:
        result = {"imported": self.imported, "skipped": self.skipped}
        if self.invalid is not None:
            result["invalid"] = self.invalid
        return result


Entry = tuple[bytes, bytes, "int | None"]


@dataclass(frozen=True)
class Target:
    """What the store an import writes to asks of the records.

    :param raw_keys: a record with ``sid: null`` names its stored key as it is, when
        that key is not under the prefix: what a store whose keys do not reveal the
        sid exports (a file store's file names) and takes back.
    :param serializer: the one serializer the app reads from that store
        (:attr:`~sesstool.stores.base.Store.value_serializer`): records of another
        are re-encoded to it, so that a Redis export written to a file store stays
        readable to the app.
    """

    raw_keys: bool = False
    serializer: str | None = None

    @classmethod
    def of(cls, store: Store) -> Target:
        return cls(not store.supports(Capability.ENUMERABLE_IDS), store.value_serializer)


ANY_STORE = Target()


def parse_record(line: str, prefix: str, target: Target = ANY_STORE) -> Entry:
    """The key, bytes and TTL an export line stands for, to be written to ``target``.

    :raises InvalidInput: for a malformed record.
    :raises UndecodableValue: when ``data`` holds what its serializer cannot hold.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"not JSON ({e.msg.removesuffix(' at')}, column {e.colno})") from e
    except RecursionError as e:
        raise InvalidInput("not a session record: nested too deeply") from e
    if not isinstance(record, dict):
        raise InvalidInput("not a session record (a JSON object)")
    key = _record_key(record, prefix, target.raw_keys)
    ttl = record.get("ttl")
    if ttl is not None and (type(ttl) is not int or not 0 <= ttl <= MAX_TTL):
        raise InvalidInput(f"ttl must be a whole number of seconds (0 to {MAX_TTL:,}) or null, not {ttl!r}")
    if ttl == 0:
        ttl = 1  # alive when exported, rounded down to 0: keep it expiring, never "no expiry"
    serializer = record.get("serializer", "msgpack")
    if serializer not in SERIALIZER_NAMES:
        raise InvalidInput(f"unknown serializer {serializer!r}: use {', '.join(SERIALIZER_NAMES)}")
    if target.serializer is not None and serializer not in (target.serializer, serializers.UNKNOWN):
        if record.get("data") is None:
            raise InvalidInput(f"a {serializer} record needs \"data\" to be re-encoded as {target.serializer}, "
                               "the only serializer the app reads from this store")
        data = from_tagged(record["data"])
        if not isinstance(data, dict):
            raise InvalidInput("data must be a JSON object")
        return key, encode_exact(data, target.serializer), ttl
    return key, _record_value(record, serializer), ttl


def _record_key(record: dict[str, t.Any], prefix: str, raw_keys: bool = False) -> bytes:
    sid = record.get("sid")
    if sid is None and isinstance(record.get("key"), str):
        if raw_keys and not record["key"].startswith(prefix):
            return _checked_id(record["key"], "key").encode("utf-8", "surrogateescape")
        if not record["key"].startswith(prefix):
            raise InvalidInput(f"key {record['key']!r} is not under the prefix {prefix!r}: pass --prefix "
                               "(records with sid null from a store of hashed file names go back into such a store)")
        sid = record["key"][len(prefix) :]
    if not isinstance(sid, str) or not sid:
        raise InvalidInput('a record needs "sid" (or "key")')
    return (prefix + _checked_id(sid, "sid")).encode("utf-8", "surrogateescape")


def _checked_id(text: str, what: str) -> str:
    if not text:
        raise InvalidInput(f"empty {what}")
    if _BAD_SID_CHAR.search(text):
        raise InvalidInput(f"{what} {text!r} holds whitespace or a control character; no session id does")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_SID_BYTES:
        raise InvalidInput(f"{what} is {len(text):,} characters; a session id has at most {MAX_SID_BYTES}")
    return text


def _record_value(record: dict[str, t.Any], serializer: str) -> bytes:
    raw_text = record.get("raw")
    data = from_tagged(record["data"]) if record.get("data") is not None else None
    if data is not None and not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    if raw_text is not None:
        try:
            raw = base64.b64decode(raw_text, validate=True) if isinstance(raw_text, str) else None
        except binascii.Error:
            raw = None
        if raw is None:
            raise InvalidInput("raw must be standard base64")
        if data is None:
            return raw
        _, stored = serializers.decode(raw, serializer if serializer != serializers.UNKNOWN else "auto")
        if stored is not None and fingerprint(stored) == fingerprint(data):
            return raw
    if data is None:
        raise InvalidInput('a record needs "data" (or "raw")')
    if serializer == serializers.UNKNOWN:
        raise InvalidInput('serializer "unknown" needs "raw" with the stored bytes')
    return encode_exact(data, serializer)


class _Checked(t.NamedTuple):
    entries: list[tuple[int, Entry]] | None  #: None when the file was too big to keep
    invalid: int
    first_error: SesstoolError | None


def _numbered_lines(source: t.BinaryIO) -> t.Iterator[tuple[int, bytes | None]]:
    """Each line with its number; None for a line longer than :data:`MAX_LINE_BYTES`."""
    number = 0
    while True:
        line = source.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # the rest of the long line
                line = source.readline(MAX_LINE_BYTES + 1)
            yield number, None
        else:
            yield number, line


def _parse_lines(source: t.BinaryIO, prefix: str, target: Target) -> t.Iterator[tuple[int, Entry | SesstoolError]]:
    for number, line in _numbered_lines(source):
        try:
            if line is None:
                raise InvalidInput(f"longer than {MAX_LINE_BYTES:,} bytes; no session record is")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidInput(f"not UTF-8 text (byte {e.start + 1})") from None
            if not text.strip():
                continue
            yield number, parse_record(text, prefix, target)
        except (InvalidInput, UndecodableValue) as e:
            yield number, type(e)(f"line {number}: {e.message}")


def check_records(source: t.BinaryIO, prefix: str, target: Target = ANY_STORE) -> _Checked:
    """Read every record of ``source`` once, writing nothing: how many are invalid,
    the first problem, and the parsed records when they fit in memory."""
    entries: list[tuple[int, Entry]] | None = []
    kept = invalid = 0
    first_error: SesstoolError | None = None
    for number, parsed in _parse_lines(source, prefix, target):
        if isinstance(parsed, SesstoolError):
            invalid += 1
            first_error = first_error or parsed
        elif entries is not None:
            kept += len(parsed[0]) + len(parsed[1])
            entries = entries if kept <= KEEP_PARSED_BYTES else None
            if entries is not None:
                entries.append((number, parsed))
    return _Checked(entries, invalid, first_error)


def import_records(
    store: Store,
    source: t.BinaryIO,
    prefix: str,
    *,
    skip_existing: bool = False,
    skip_invalid: bool = False,
    batch: int = DEFAULT_BATCH,
    pacer: Pacer | None = None,
    on_batch: t.Callable[[int], None] | None = None,
) -> ImportResult:
    """Write exported records back, a batch per round trip.

    The whole of ``source`` (seekable) is checked first: when any line is invalid,
    nothing is written, unless ``skip_invalid``, which writes the valid records and
    counts the others.

    :raises InvalidInput: (exit 2) or :class:`UndecodableValue` (exit 4) naming the
        line of the first bad record, and how many are bad.
    """
    target = Target.of(store)
    checked = check_records(source, prefix, target)
    if checked.first_error is not None and not skip_invalid:
        e = checked.first_error
        more = f"; {checked.invalid:,} invalid lines in all" if checked.invalid > 1 else ""
        raise type(e)(f"{e.message}{more}; nothing imported (--skip-invalid imports the valid records)")
    result = ImportResult(invalid=checked.invalid if skip_invalid else None)
    if checked.entries is not None:
        entries: t.Iterable[Entry] = (entry for _, entry in checked.entries)
    else:
        source.seek(0)
        entries = (parsed for _, parsed in _parse_lines(source, prefix, target)
                   if not isinstance(parsed, SesstoolError))
    pending: list[Entry] = []

    def flush() -> None:
        if not pending:
            return
        if skip_existing:
            written = sum(store.add_many(pending))
            result.imported += written
            result.skipped += len(pending) - written
        else:
            store.set_many(pending)
            result.imported += len(pending)
        if pacer is not None:
            pacer.pace(len(pending))
        if on_batch is not None:
            on_batch(len(pending))
        pending.clear()

    for entry in entries:
        pending.append(entry)
        if len(pending) >= batch:
            flush()
    flush()
    return result
