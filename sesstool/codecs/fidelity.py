"""Which values a serializer holds exactly, and writing sessions only when it does.

sesstool re-encodes a session when it edits, imports or migrates it. A format that
cannot hold a value changes it silently: msgpack and json turn a tuple into a list
and a naive datetime into a string, json turns ``{1: "a"}`` into ``{"1": "a"}``, and
Flask-Session 0.8's encoder rejects ``Markup`` outright. The app would then read
something else than what it wrote. So every write goes through
:func:`encode_exact`: encode, read back the way sesstool reads, and refuse (exit 4,
naming each value) unless the result is the same data, type for type.

:func:`find_problems` names the values a format cannot hold (``migrate --dry-run``)
and :func:`make_holdable` applies the documented lossy conversion that
``migrate --lossy`` asks for:

=============================  =========================================
value the target cannot hold   becomes
=============================  =========================================
Markup                         its text (str)
tuple, set, frozenset          list (a set in sorted order)
OrderedDict                    dict
datetime, date, time           ISO 8601 string (``isoformat()``)
timedelta                      total seconds (float)
UUID, Decimal                  their canonical string
bytes (json)                   standard base64 string
NaN / infinity (json)          null
int beyond 64 bits (msgpack)   its decimal string
a key the target cannot hold   ``str(key)``
=============================  =========================================

Objects of the app's own classes in a pickle (opaque to sesstool) and msgpack
extension values in a json target have no conversion: such sessions stay as they are.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import typing as t
import uuid

import msgspec

from sesstool.codecs import serializers
from sesstool.codecs.picklewriter import dumps as pickle_dumps
from sesstool.codecs.safepickle import safe_loads
from sesstool.codecs.tagged import MsgpackExt, stable_order, to_tagged
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import UndecodableValue

_tagged_json = msgspec.json.Encoder()
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


class Problem(t.NamedTuple):
    """A value a format cannot hold: where it is and what it is."""

    path: str
    kind: str

    def __str__(self) -> str:
        return f"{self.path or '(top)'} ({self.kind})"


def fingerprint(data: t.Any) -> bytes | None:
    """The tagged JSON of ``data``: equal exactly when two values are the same data,
    type for type (``True`` is not ``1``, a tuple is not a list); ``None`` when
    sesstool cannot represent it."""
    try:
        return _tagged_json.encode(to_tagged(data))
    except (TypeError, msgspec.EncodeError, ValueError):
        return None


def encode_exact(data: dict[t.Any, t.Any], serializer: str, *, protocol: int | None = None) -> bytes:
    """Encode ``data`` as ``serializer`` only if it reads back as the same data.

    :param protocol: the pickle protocol (``None``: Python's default).
    :raises UndecodableValue: naming each value the format cannot hold.
    """
    if serializer == "pickle":
        pickled = pickle_dumps(data, protocol)
        if fingerprint(safe_loads(pickled)) != fingerprint(data):
            raise UndecodableValue("pickle would not give this session back exactly")
        return pickled
    raw: bytes | None
    try:
        raw = serializers.encode(data, serializer)
    except UndecodableValue:
        raw = None
    if raw is not None:
        _, back = serializers.decode(raw, serializer)
        if back is not None and fingerprint(back) == fingerprint(data):
            return raw
    problems = find_problems(data, serializer)
    listed = ", ".join(str(p) for p in problems[:5]) or "a value it would change"
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    raise UndecodableValue(f"{serializer} cannot hold this session exactly: {listed}{more}")


def encode_unchecked(data: dict[t.Any, t.Any], serializer: str) -> bytes | None:
    """What :func:`encode_exact` writes, without its check (``None`` when encoding
    fails): for telling cheaply whether data alone gives stored bytes back."""
    try:
        if serializer == "pickle":
            return pickle_dumps(data)
        return serializers.encode(data, serializer)
    except UndecodableValue:
        return None


# -- finding what a format cannot hold ---------------------------------------------


def find_problems(data: t.Any, target: str) -> list[Problem]:
    """Every value in ``data`` that ``target`` (``msgpack`` or ``json``) cannot hold exactly."""
    problems: list[Problem] = []
    _walk(data, "", target, problems, convert=False)
    return problems


def make_holdable(data: dict[t.Any, t.Any], target: str) -> tuple[dict[t.Any, t.Any], list[Problem], list[Problem]]:
    """Apply the documented lossy conversion (see the module docstring).

    :returns: ``(converted data, what was converted, what could not be)``.
    """
    converted: list[Problem] = []
    converted_data = _walk(data, "", target, converted, convert=True)
    blocked = find_problems(converted_data, target)
    return converted_data, [p for p in converted if p not in blocked], blocked


def _join(path: str, part: t.Any) -> str:
    return f"{path}.{part}" if path else str(part)


def _walk(value: t.Any, path: str, target: str, problems: list[Problem], *, convert: bool) -> t.Any:
    kind = type(value)
    if kind is dict or (isinstance(value, dict) and not isinstance(value, OpaqueObject)):
        if kind is not dict:
            problems.append(Problem(path, type(value).__name__))
        out = {}
        for key, item in value.items():
            if not _holds_key(key, target):
                problems.append(Problem(_join(path, _key_text(key)), f"{type(key).__name__} key"))
                key = str(key) if convert else key
            out[key] = _walk(item, _join(path, _key_text(key)), target, problems, convert=convert)
        return out
    if kind is list:
        return [_walk(item, _join(path, i), target, problems, convert=convert) for i, item in enumerate(value)]
    if kind in (tuple, set, frozenset):
        problems.append(Problem(path, kind.__name__))
        items = value if kind is tuple else stable_order(value)
        return [_walk(item, _join(path, i), target, problems, convert=convert) for i, item in enumerate(items)]
    if _holds_leaf(value, target):
        return value
    problems.append(Problem(path, _describe(value)))
    return _convert_leaf(value, target) if convert else value


def _key_text(key: t.Any) -> str:
    return key if isinstance(key, str) else repr(key)


def _holds_key(key: t.Any, target: str) -> bool:
    if type(key) is str:
        return True
    if target == "json":
        return False
    return _round_trips({key: None}, target)


def _holds_leaf(value: t.Any, target: str) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return target == "json" or _INT64_MIN <= value <= _UINT64_MAX
    if kind is float:
        return target == "msgpack" or math.isfinite(value)
    if kind is bytes:
        return target == "msgpack"
    if isinstance(value, (OpaqueObject, Markup)):
        return False
    if isinstance(value, MsgpackExt):
        return target == "msgpack"
    return _round_trips([value], target)


def _round_trips(value: t.Any, target: str) -> bool:
    try:
        raw = serializers.encode(value, target)
    except UndecodableValue:
        return False
    decoder = msgspec.msgpack.Decoder() if target == "msgpack" else msgspec.json.Decoder()
    try:
        back = decoder.decode(raw)
    except (msgspec.DecodeError, ValueError):
        return False
    return fingerprint(back) == fingerprint(value) and fingerprint(value) is not None


def _describe(value: t.Any) -> str:
    if isinstance(value, OpaqueObject):
        return f"pickled {value.class_path} object"
    if isinstance(value, MsgpackExt):
        return f"msgpack extension type {value.code}"
    if type(value) is float:
        return "float " + repr(value)
    if type(value) is int:
        return "int beyond 64 bits"
    if isinstance(value, dt.datetime):
        return "datetime" if value.tzinfo is None else "datetime with UTC offset"
    return type(value).__name__


def _convert_leaf(value: t.Any, target: str) -> t.Any:
    """The documented lossy form of one value, or the value itself when there is none."""
    if isinstance(value, Markup) or type(value).__name__ == "Markup":
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if type(value) is float:
        return None
    if type(value) is int:
        return str(value)
    return value
