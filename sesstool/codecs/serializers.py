"""Decode and encode stored session values as Flask-Session writes them.

- ``msgpack``: Flask-Session 0.7+ default, ``msgspec.msgpack.Encoder().encode(dict(session))``.
- ``json``: Flask-Session 0.7+ with ``SESSION_SERIALIZATION_FORMAT='json'`` (msgspec.json).
- ``pickle``: Flask-Session up to 0.6, ``pickle.dumps(dict(session))``; read only through
  :mod:`sesstool.codecs.safepickle`, never with plain ``pickle``.

A session value is always a map: a value that decodes to anything else is not a
session, and ``auto`` detection reports it as ``unknown``. :func:`decode` never
raises for what it finds in a store: bytes it cannot read are ``unknown``, and so
are values past the decoding budget (:mod:`sesstool.codecs.budget`: at most 64 MiB, 1 s,
200 levels, 4,096-bit integers). Whatever it returns, :func:`sesstool.codecs.tagged.to_tagged`
can show as UTF-8 JSON.
"""

from __future__ import annotations

import re
import typing as t

import msgspec

from sesstool.codecs.budget import MAX_DEPTH, MAX_INT_BITS, SMALL_INPUT, check_msgspec_input, check_tree
from sesstool.codecs.safepickle import safe_loads
from sesstool.codecs.tagged import MsgpackExt
from sesstool.codecs.values import OpaqueObject
from sesstool.errors import InvalidInput, UndecodableValue

SERIALIZERS = ("msgpack", "json", "pickle")
CHOICES = ("auto", *SERIALIZERS)
UNKNOWN = "unknown"


def _keep_ext(code: int, data: memoryview) -> MsgpackExt:
    return MsgpackExt(code, bytes(data))


_msgpack_decoder = msgspec.msgpack.Decoder(ext_hook=_keep_ext)
_json_decoder = msgspec.json.Decoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()

# Stored bytes are arbitrary: besides DecodeError, msgspec raises RecursionError for
# deep nesting, every decoder raises BudgetExceeded past the decoding budget, and
# unpickling hostile bytes can raise almost anything (LookupError from
# str(b, "no-such-codec"), decimal.InvalidOperation...). Every one of them means
# "not this format", never a crash.
_DecodeError = Exception  # see above: deliberately broad


# The bytes that open a msgpack map or array (fixmap, fixarray, array 16/32, map 16/32):
# a value holding fewer of them than MAX_DEPTH cannot nest deeper.
_NOT_MSGPACK_CONTAINER = bytes(set(range(256)) - {*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF})
# A json integer over MAX_INT_BITS bits has at least this many digits in a row.
_LONG_NUMBER_DIGITS = len(str(2**MAX_INT_BITS))
_LONG_NUMBER = re.compile(rb"(?<![0-9])[0-9]{%d}" % _LONG_NUMBER_DIGITS)


def _decode_msgpack(raw: bytes) -> t.Any:
    """msgspec's msgpack decoder within the decoding budget (:mod:`sesstool.codecs.budget`):
    its integers fit 64 bits and its text is valid UTF-8, so size and depth are left."""
    if len(raw) <= MAX_DEPTH:  # the hot path: too short to be too deep or too large
        return _msgpack_decoder.decode(raw)
    if len(raw) > SMALL_INPUT:
        check_msgspec_input(raw, "msgpack")
    value = _msgpack_decoder.decode(raw)
    if len(raw.translate(None, _NOT_MSGPACK_CONTAINER)) > MAX_DEPTH:
        check_tree(value, ints=False, keys=True)
    return value


def _decode_json(raw: bytes) -> t.Any:
    """msgspec's json decoder within the decoding budget; it refuses lone surrogates
    itself, and integers of more than 4,300 digits, but not those over MAX_INT_BITS."""
    if len(raw) <= 2 * MAX_DEPTH:  # each level takes two bytes, [ and ]
        return _json_decoder.decode(raw)
    if len(raw) > SMALL_INPUT:
        check_msgspec_input(raw, "json")
    value = _json_decoder.decode(raw)
    ints = len(raw) > _LONG_NUMBER_DIGITS and _LONG_NUMBER.search(raw) is not None
    if ints or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        check_tree(value, ints=ints, keys=False)
    return value


_DECODERS: dict[str, t.Callable[[bytes], t.Any]] = {
    "msgpack": _decode_msgpack,
    "json": _decode_json,
    "pickle": safe_loads,
}


_PICKLE_PROTOS = frozenset(bytes([0x80, proto]) for proto in range(2, 6))


def _guess_order(raw: bytes) -> tuple[str, ...]:
    """The serializers to try, most likely first, from the value's first bytes."""
    first = raw[0]
    if first == 0x80 and len(raw) > 1 and 2 <= raw[1] <= 5:
        # PROTO opcode; a msgpack empty map is the single byte 0x80.
        return ("pickle", "msgpack", "json")
    if first in b"{ \t\r\n":
        return ("json", "msgpack", "pickle")
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        return ("msgpack", "json", "pickle")
    return ("pickle", "msgpack", "json") if first in b"(}" else ("msgpack", "json", "pickle")


def decode(raw: bytes, serializer: str = "auto") -> tuple[str, dict[t.Any, t.Any] | None]:
    """Decode one stored value.

    :param raw: the bytes in the store.
    :param serializer: ``auto`` to detect, or one of :data:`SERIALIZERS` to insist on.
    :returns: ``(serializer, data)``; ``("unknown", None)`` when nothing decodes it to a map.
    """
    if serializer not in CHOICES:
        raise InvalidInput(f"unknown serializer {serializer!r}: choose one of {', '.join(CHOICES)}")
    if not raw:
        return UNKNOWN, None
    if serializer == "msgpack" or (serializer == "auto" and 0x80 <= raw[0] <= 0x8F and raw[0:2] not in _PICKLE_PROTOS):
        # The hot path: Flask-Session 0.8's default format.
        try:
            data = _decode_msgpack(raw)
        except _DecodeError:
            return UNKNOWN, None
        return ("msgpack", data) if type(data) is dict else (UNKNOWN, None)
    order = _guess_order(raw) if serializer == "auto" else (serializer,)
    for name in order:
        try:
            data = _DECODERS[name](raw)
        except _DecodeError:
            continue
        if isinstance(data, dict):
            return name, data
    return UNKNOWN, None


def names(values: t.Iterable[bytes], serializer: str = "auto") -> list[str]:
    """The serializer :func:`decode` names for each value, in one call: the plain
    listing needs no data, and Python calls per value cost it more than decoding
    does. Every value is still decoded whole, so a value ``decode`` refuses is
    ``unknown`` here too."""
    if serializer not in CHOICES:
        raise InvalidInput(f"unknown serializer {serializer!r}: choose one of {', '.join(CHOICES)}")
    found: list[str] = []
    append = found.append
    fast = serializer in ("auto", "msgpack")
    for raw in values:
        # decode()'s hot path, inlined; anything else takes decode() itself.
        if fast and raw and 0x80 <= raw[0] <= 0x8F and raw[0:2] not in _PICKLE_PROTOS:
            try:
                append("msgpack" if type(_decode_msgpack(raw)) is dict else UNKNOWN)
            except _DecodeError:
                append(UNKNOWN)
        else:
            append(decode(raw, serializer)[0])
    return found


def encode(data: dict[t.Any, t.Any], serializer: str) -> bytes:
    """Encode ``data`` exactly as Flask-Session 0.8 would for ``msgpack`` and ``json``.

    msgspec converts some values the way Flask-Session 0.8 does (a tuple or set becomes
    an array, a naive datetime a string); values it cannot hold at all are refused.

    :raises UndecodableValue: when the format cannot hold a value: an object of an
        app's class (from a pickle), ``Markup``, ``complex``, a msgpack extension in json.
    :raises InvalidInput: for an unknown serializer name.
    """
    if serializer == "msgpack":
        encoder: t.Any = _msgpack_encoder
    elif serializer == "json":
        encoder = _json_encoder
    elif serializer == "pickle":
        from sesstool.codecs.picklewriter import dumps

        return dumps(data)
    else:
        raise InvalidInput(f"cannot encode as {serializer!r}: choose msgpack, json or pickle")
    try:
        return t.cast(bytes, encoder.encode(_for_msgspec(data, serializer)))
    except (TypeError, msgspec.EncodeError, OverflowError, RecursionError) as e:
        raise UndecodableValue(f"{serializer} cannot hold this session: {e}") from e


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), bytes})


def _for_msgspec(value: t.Any, serializer: str) -> t.Any:
    """``value`` with sesstool's own stand-ins made into what msgspec writes.

    msgspec would write an OpaqueObject (a dataclass) as a map and a MsgpackExt (a
    NamedTuple) as an array without complaint, silently changing the session.
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is dict:
        return {_for_msgspec(k, serializer): _for_msgspec(v, serializer) for k, v in value.items()}
    if kind is list:
        return [_for_msgspec(item, serializer) for item in value]
    if isinstance(value, MsgpackExt):
        if serializer != "msgpack":
            raise UndecodableValue(f"{serializer} cannot hold a msgpack extension value (code {value.code})")
        return msgspec.msgpack.Ext(value.code, value.data)
    if isinstance(value, OpaqueObject):
        raise UndecodableValue(
            f"{serializer} cannot hold a {value.class_path} object (only pickle can, and sesstool cannot re-create it)"
        )
    if kind is tuple:
        return tuple(_for_msgspec(item, serializer) for item in value)
    if kind in (set, frozenset):
        return kind(_for_msgspec(item, serializer) for item in value)
    if isinstance(value, dict):
        return {_for_msgspec(k, serializer): _for_msgspec(v, serializer) for k, v in value.items()}
    return value
