"""The lossless tagged JSON form: session values that JSON cannot hold, as JSON.

Every value a Flask session can hold maps to JSON here and back without loss, so
that ``export`` → ``import`` restores sessions exactly and ``decode`` → ``sign``
round-trips. Plain JSON values stand for themselves. Anything else becomes an
object with exactly one key, the tag, which starts with ``$``:

=====================  ====================================================
``{"$bytes": B64}``    bytes, standard base64
``{"$bytearray": B64}``  bytearray, standard base64
``{"$tuple": [...]}``  tuple
``{"$set": [...]}``    set (``$frozenset`` for frozenset)
``{"$datetime": S}``   datetime, ISO 8601 (with offset when it has one)
``{"$date": S}``       date, ISO 8601
``{"$time": S}``       time, ISO 8601
``{"$timedelta": [days, seconds, microseconds]}``
``{"$uuid": S}``       uuid.UUID, canonical hex form
``{"$decimal": S}``    decimal.Decimal, its exact string
``{"$markup": S}``     markupsafe.Markup
``{"$float": S}``      ``"nan"``, ``"inf"`` or ``"-inf"``
``{"$complex": [re, im]}``  complex (each part a number or a ``$float``)
``{"$map": [[k, v], ...]}``   a dict with keys that are not all strings
``{"$ordereddict": [[k, v], ...]}``   collections.OrderedDict
``{"$dict": {...}}``   a dict whose only key is itself a tag (escaped)
``{"$object": {"class": "mod.Name", "args": [...], "state": ...}}``
                       an object of a class sesstool does not import (from pickle);
                       shown, never re-created. Optional members: ``"items"``
                       (appended, list subclasses), ``"dict_items"`` (``[[k, v], ...]``,
                       dict subclasses), ``"new": true`` (made by ``cls.__new__``
                       rather than a call), ``"calls"`` (argument lists the object
                       was then called with)
``{"$ext": [code, B64]}``  a msgpack extension type (code -128 to 127)
=====================  ====================================================

A dict's keys stay JSON object keys only when they are all strings; ``{"$map": ...}``
keeps keys of any type (``1`` and ``"1"`` are different session keys). A dict whose
only key is a tag name is wrapped in ``$dict`` so that it is never read as a tag.
Set members are written in a repeatable order. :func:`from_tagged` raises
:class:`~sesstool.errors.InvalidInput` for a malformed tag; an object with one key
that is not a tag name, or with several keys, is an ordinary dict.

docs/tagged-json.md is the user-facing description, with examples.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import decimal
import math
import re
import typing as t
import uuid

from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import InvalidInput, UndecodableValue

TAGS = frozenset(
    {
        "$bytes", "$bytearray", "$complex", "$tuple", "$set", "$frozenset", "$datetime", "$date", "$time",
        "$timedelta", "$uuid", "$decimal", "$markup", "$float", "$map",
        "$ordereddict", "$dict", "$object", "$ext",
    }
)  # fmt: skip


_Clock = t.TypeVar("_Clock", dt.datetime, dt.time)


class MsgpackExt(t.NamedTuple):
    """A msgpack extension value that sesstool keeps as it is."""

    code: int
    data: bytes


def to_tagged(value: t.Any) -> t.Any:
    """Return ``value`` as plain JSON data, tagging what JSON cannot hold.

    :raises TypeError: for a value of a type the tagged form has no tag for.
    :raises UndecodableValue: for a value nested too deeply to convert.
    """
    try:
        return _to_tagged(value)
    except RecursionError as e:
        raise UndecodableValue("the value is nested too deeply to show") from e


def is_own_tagged_form(value: t.Any) -> bool:
    """Whether :func:`to_tagged` gives ``value`` back unchanged (and :func:`from_tagged`
    that in turn): only str, int, bool, None, finite floats, lists and dicts with str
    keys, no one-key dict under a tag's name. What Flask-Session 0.8 writes nearly
    always is: one walk here spares converting it both ways.

    :raises RecursionError: for a value nested too deeply.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        if len(value) == 1 and next(iter(value)) in TAGS:
            return False
        return all(type(key) is str and is_own_tagged_form(item) for key, item in value.items())
    if kind is list:
        return all(is_own_tagged_form(item) for item in value)
    return kind is float and math.isfinite(value)


def _to_tagged(value: t.Any) -> t.Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return _dict_to_tagged(value)
    if kind is list:
        return [_to_tagged(item) for item in value]
    if kind is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    return _special_to_tagged(value)


def _dict_to_tagged(value: dict[t.Any, t.Any]) -> t.Any:
    if not all(type(key) is str for key in value):
        return {"$map": [[_to_tagged(k), _to_tagged(v)] for k, v in value.items()]}
    converted = {key: _to_tagged(item) for key, item in value.items()}
    if len(converted) == 1 and next(iter(converted)) in TAGS:
        return {"$dict": converted}
    return converted


def _special_to_tagged(value: t.Any) -> t.Any:
    if isinstance(value, bytearray):
        return {"$bytearray": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (bytes, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple) and not isinstance(value, MsgpackExt):
        return {"$tuple": [_to_tagged(item) for item in value]}
    if isinstance(value, Markup) or type(value).__name__ == "Markup":
        return {"$markup": str(value)}
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return _to_tagged(float(value))
    if isinstance(value, complex):
        return {"$complex": [_to_tagged(value.real), _to_tagged(value.imag)]}
    if isinstance(value, collections.OrderedDict):
        return {"$ordereddict": [[_to_tagged(k), _to_tagged(v)] for k, v in value.items()]}
    if isinstance(value, dict):
        return _dict_to_tagged(dict(value))
    if isinstance(value, list):
        return [_to_tagged(item) for item in value]
    if isinstance(value, frozenset):
        return {"$frozenset": [_to_tagged(item) for item in stable_order(value)]}
    if isinstance(value, set):
        return {"$set": [_to_tagged(item) for item in stable_order(value)]}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, MsgpackExt):
        return {"$ext": [value.code, base64.b64encode(value.data).decode("ascii")]}
    if isinstance(value, OpaqueObject):
        body: dict[str, t.Any] = {"class": value.class_path, "args": _to_tagged(value.args)}
        if value.state is not None:
            body["state"] = _to_tagged(value.state)
        if value.items:
            body["items"] = _to_tagged(value.items)
        if value.dict_items:
            body["dict_items"] = [[_to_tagged(k), _to_tagged(v)] for k, v in value.dict_items]
        if value.new:
            body["new"] = True
        if value.calls:
            body["calls"] = [[_to_tagged(arg) for arg in args] for args in value.calls]
        return {"$object": body}
    raise TypeError(f"sesstool cannot represent a value of type {type(value).__name__}")


def stable_order(items: t.Iterable[t.Any]) -> list[t.Any]:
    """Set members in a repeatable order, so the same session always prints the same.

    Members that do not compare (a string and a number) or refuse to
    (``Decimal('NaN') < 1`` raises InvalidOperation) are ordered by type and repr.
    """
    members = list(items)
    try:
        return sorted(members)
    except (TypeError, ArithmeticError):
        return sorted(members, key=lambda item: (type(item).__name__, repr(item)))


def from_tagged(value: t.Any) -> t.Any:
    """Rebuild Python values from the tagged form.

    :raises InvalidInput: for a malformed tag (bad base64, bad date, ...).
    """
    try:
        return _from_tagged(value)
    except RecursionError as e:
        raise InvalidInput("the value is nested too deeply") from e


# A lone surrogate is text no UTF-8 encoder (msgpack, json, the terminal) can write;
# Python's json module reads one from "\ud800".
_SURROGATE = re.compile("[\ud800-\udfff]")


def _from_tagged(value: t.Any) -> t.Any:
    kind = type(value)
    if kind is str:
        if _SURROGATE.search(value):
            raise InvalidInput(f"text with a lone surrogate ({ascii(value)[:60]}) cannot be stored")
        return value
    if kind is dict:
        if len(value) == 1:
            ((tag, body),) = value.items()
            if tag in TAGS:
                try:
                    return _untag(tag, body)
                except InvalidInput:
                    raise
                except (ValueError, TypeError, KeyError, OverflowError, binascii.Error, decimal.InvalidOperation) as e:
                    raise InvalidInput(f"malformed {tag} value {body!r}: {e}") from e
        return {_from_tagged(key): _from_tagged(item) for key, item in value.items()}
    if kind is list:
        return [_from_tagged(item) for item in value]
    return value


def _untag(tag: str, body: t.Any) -> t.Any:
    if tag == "$bytes":
        return base64.b64decode(_text(body), validate=True)
    if tag == "$bytearray":
        return bytearray(base64.b64decode(_text(body), validate=True))
    if tag == "$complex":
        real, imag = (_number(_from_tagged(part)) for part in _array(body))
        return complex(real, imag)
    if tag == "$tuple":
        return tuple(_from_tagged(item) for item in _array(body))
    if tag == "$set":
        return {_from_tagged(item) for item in _array(body)}
    if tag == "$frozenset":
        return frozenset(_from_tagged(item) for item in _array(body))
    if tag == "$datetime":
        return _from_iso(dt.datetime.fromisoformat, _text(body))
    if tag == "$date":
        return dt.date.fromisoformat(_text(body))
    if tag == "$time":
        return _from_iso(dt.time.fromisoformat, _text(body))
    if tag == "$timedelta":
        days, seconds, micros = _array(body)
        if not all(type(part) is int for part in (days, seconds, micros)):
            raise TypeError("expected three integers")
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if tag == "$uuid":
        return uuid.UUID(_text(body))
    if tag == "$decimal":
        return decimal.Decimal(_text(body))
    if tag == "$markup":
        return Markup(_text(body))
    if tag == "$float":
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[_text(body)])
    if tag == "$map":
        return {_hashable(_from_tagged(k)): _from_tagged(v) for k, v in _pairs(body)}
    if tag == "$ordereddict":
        return collections.OrderedDict((_hashable(_from_tagged(k)), _from_tagged(v)) for k, v in _pairs(body))
    if tag == "$dict":
        if not isinstance(body, dict):
            raise TypeError("$dict holds an object")
        return {_from_tagged(key): _from_tagged(item) for key, item in body.items()}
    if tag == "$ext":
        code, data = _array(body)
        if type(code) is not int or not -128 <= code <= 127:
            raise ValueError("a msgpack extension code is an integer from -128 to 127")
        return MsgpackExt(code, base64.b64decode(_text(data), validate=True))
    if tag == "$object":
        if not isinstance(body, dict) or not isinstance(body.get("class"), str):
            raise TypeError('$object needs {"class": "module.Name", ...}')
        unknown = set(body) - _OBJECT_MEMBERS
        if unknown:
            raise ValueError(f"unknown members {sorted(unknown)}")
        new = body.get("new", False)
        if type(new) is not bool:
            raise TypeError('"new" is true or false')
        return OpaqueObject(
            class_path=body["class"],
            args=_from_tagged(_array(body.get("args", []))),
            state=_from_tagged(body.get("state")),
            items=_from_tagged(_array(body.get("items", []))),
            dict_items=[(_hashable(_from_tagged(k)), _from_tagged(v)) for k, v in _pairs(body.get("dict_items", []))],
            new=new,
            calls=[_from_tagged(_array(args)) for args in _array(body.get("calls", []))],
        )
    raise AssertionError(tag)  # pragma: no cover - TAGS and this function agree


_OBJECT_MEMBERS = frozenset({"class", "args", "state", "items", "dict_items", "new", "calls"})


# An offset with fractional seconds, as isoformat() writes one: "+05:30:15.000001".
_FINE_OFFSET = re.compile(r"([+-])(\d\d):(\d\d):(\d\d)\.(\d{6})$")


def _from_iso(parse: t.Callable[[str], _Clock], text: str) -> _Clock:
    # Python 3.11's fromisoformat drops an offset of a few microseconds (it reads
    # "+00:00:00.000001" as UTC), so such offsets are applied here.
    match = _FINE_OFFSET.search(text)
    if match is None:
        return parse(text)
    sign, hours, minutes, seconds, micros = match.groups()
    offset = dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(micros))
    naive = parse(text[: match.start()])
    if naive.tzinfo is not None:
        raise ValueError("two offsets")
    return naive.replace(tzinfo=dt.timezone(-offset if sign == "-" else offset))


def _number(part: t.Any) -> float | int:
    if type(part) not in (int, float):
        raise TypeError("expected a number")
    return t.cast("float | int", part)


def _text(body: t.Any) -> str:
    if not isinstance(body, str):
        raise TypeError("expected a string")
    return t.cast(str, _from_tagged(body))


def _array(body: t.Any) -> list[t.Any]:
    if not isinstance(body, list):
        raise TypeError("expected an array")
    return body


def _pairs(body: t.Any) -> list[list[t.Any]]:
    pairs = _array(body)
    if not all(type(pair) is list and len(pair) == 2 for pair in pairs):
        raise TypeError("expected an array of [key, value] pairs")
    return pairs


def _hashable(key: t.Any) -> t.Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        raise TypeError("a dict cannot be a key")
    return key


def contains_opaque(value: t.Any) -> bool:
    """True when ``value`` holds an :class:`OpaqueObject` anywhere inside."""
    if isinstance(value, OpaqueObject):
        return True
    if isinstance(value, dict):
        return any(contains_opaque(k) or contains_opaque(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_opaque(item) for item in value)
    return False
