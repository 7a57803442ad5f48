"""Session records: what ``list``, ``show`` and ``export`` print, built from stored items.

The record shape is the contract's: ``sid``, ``key``, ``ttl``, ``size``,
``serializer`` and, where asked for, ``data`` in the tagged JSON form.

This is also the one place where one session's decoding and rendering is isolated
from the others. Anyone who can write to the store chooses the bytes, so decoding a
value, converting it to the tagged form or encoding that as JSON may raise almost
anything (``RecursionError``, ``decimal.InvalidOperation`` from sorting a set that
holds ``Decimal('NaN')``, ``ValueError`` for an integer past Python's digit limit,
``UnicodeEncodeError`` for a lone surrogate, ``MemoryError``...). Every bulk command
goes through :func:`decode_value` and :func:`make_record`, which turn any of those
into a session reported as ``unknown``, so one odd session never stops a command.
"""

from __future__ import annotations

import typing as t

import msgspec

from sesstool.codecs import serializers
from sesstool.codecs.tagged import to_tagged
from sesstool.errors import InvalidInput, UndecodableValue
from sesstool.stores.base import Capability, Store, StoredItem

# Keys Flask itself keeps in every session; a session with nothing else is "empty".
BOOKKEEPING_KEYS = frozenset({"_permanent"})
UNKNOWN = serializers.UNKNOWN

_T = t.TypeVar("_T")

# The encoder every output path uses (msgspec's JSON): data it refuses cannot be shown.
_json = msgspec.json.Encoder()


def key_text(key: bytes) -> str:
    """A key as text; bytes that are not UTF-8 are shown as ``\\xNN`` escapes."""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return key.decode("utf-8", "backslashreplace")


def is_empty(data: dict[t.Any, t.Any] | None) -> bool:
    """True for sessions holding nothing but Flask's bookkeeping (``{}``, ``_permanent``)."""
    # Only str keys are hashed here: a key of another type is never bookkeeping, and
    # hashing an object a pickle built is not something to do on the way.
    return data is not None and all(type(key) is str and key in BOOKKEEPING_KEYS for key in data)


class Decoded(t.NamedTuple):
    """A stored item with its value decoded."""

    item: StoredItem
    serializer: str
    data: dict[t.Any, t.Any] | None


def decode_value(value: bytes, serializer: str = "auto") -> tuple[str, dict[t.Any, t.Any] | None]:
    """:func:`serializers.decode`, isolated: ``("unknown", None)`` whatever the value does.

    :raises InvalidInput: only for an unknown ``serializer`` name (the user's mistake).
    """
    try:
        return serializers.decode(value, serializer)
    except InvalidInput:
        raise
    except Exception:  # deliberately broad: see the module docstring
        return UNKNOWN, None


def serializer_names(values: list[bytes], serializer: str = "auto") -> list[str]:
    """``decode_value(value, serializer)[0]`` of each value, in one call (the plain
    listing's hot path), isolated the same way."""
    try:
        return serializers.names(values, serializer)
    except InvalidInput:
        raise
    except Exception:  # deliberately broad: see the module docstring
        return [decode_value(value, serializer)[0] for value in values]


def decode_item(item: StoredItem, serializer: str = "auto") -> Decoded:
    if item.value is None:
        return Decoded(item, UNKNOWN, None)
    name, data = decode_value(item.value, serializer)
    return Decoded(item, name, data)


def isolated(fn: t.Callable[..., _T], *args: t.Any) -> _T:
    """``fn(*args)`` for work on one session's data; whatever it raises becomes
    :class:`UndecodableValue`, which the bulk commands report and count.

    Only for pure computation on decoded data: a store call inside would have its
    :class:`~sesstool.errors.StoreError` turned into "undecodable".
    """
    try:
        return fn(*args)
    except UndecodableValue:
        raise
    except Exception as e:  # deliberately broad: see the module docstring
        raise UndecodableValue(f"the session's data cannot be handled ({type(e).__name__})") from e


def render_data(data: dict[t.Any, t.Any]) -> t.Any:
    """``data`` in the tagged JSON form, checked to be something JSON output can write.

    :raises UndecodableValue: when it cannot be shown (see the module docstring).
    """
    tagged = isolated(to_tagged, data)
    isolated(_json.encode, tagged)
    return tagged


def sid_start(store: Store, prefix: str) -> int | None:
    """Where the sid starts in the keys a scan of ``store`` yields: after the prefix,
    or ``None`` on a store whose keys do not reveal it (files named by a hash: their
    records say ``sid: null`` and the key is the store's own name)."""
    return len(prefix) if store.supports(Capability.ENUMERABLE_IDS) else None


def make_record(decoded: Decoded, prefix_length: int | None, *, with_data: bool) -> dict[str, t.Any]:
    """The contract record for one decoded item (``prefix_length`` from :func:`sid_start`
    for scanned items).

    With ``with_data``, a session whose data cannot be rendered is reported as
    ``serializer: "unknown"`` with ``data: null`` (see :func:`was_unrenderable`).
    """
    item = decoded.item
    key = key_text(item.key)
    record: dict[str, t.Any] = {
        "sid": None if prefix_length is None else key[prefix_length:],
        "key": key,
        "ttl": item.ttl,
        "size": item.size,
        "serializer": decoded.serializer,
    }
    if with_data:
        record["data"] = None
        if decoded.data is not None:
            try:
                record["data"] = render_data(decoded.data)
            except UndecodableValue:
                record["serializer"] = UNKNOWN
    return record


def was_unrenderable(decoded: Decoded, record: dict[str, t.Any]) -> bool:
    """True when ``decoded`` was decoded but its record had to report it as unknown."""
    return decoded.serializer != UNKNOWN and record["serializer"] == UNKNOWN


#: ``how`` for a command that lists them as ``serializer: "unknown"``.
REPORTED = "reported as unknown"
#: ``how`` for a command whose ``--where`` left them out.
NOT_MATCHED = "a --where cannot match them"


def undecodable_warning(count: int, how: str = REPORTED) -> str | None:
    """The end-of-command warning for ``count`` sessions that could not be decoded.

    :param how: what the command did with them.
    """
    if not count:
        return None
    return f"{count:,} session(s) could not be decoded ({how})"


def dumps(value: t.Any) -> str:
    """Compact, stable JSON for one value (msgspec: fast, keeps key order)."""
    return _json.encode(value).decode("utf-8")


def encode_line(value: t.Any) -> bytes:
    """One NDJSON line for ``value``, as bytes."""
    return _json.encode(value) + b"\n"


def encode_lines(values: t.Sequence[t.Any]) -> bytes:
    """NDJSON lines for ``values`` in one encoder call (the listing's hot path)."""
    return _json.encode_lines(values)


class RecordBatches:
    """Records that arrive a list at a time; iterating yields the records one by one.

    NDJSON output encodes each list with one encoder call, which matters when a
    listing streams millions of records.
    """

    def __init__(self, batches: t.Iterable[list[dict[str, t.Any]]]) -> None:
        self.batches = batches

    def __iter__(self) -> t.Iterator[dict[str, t.Any]]:
        for batch in self.batches:
            yield from batch
