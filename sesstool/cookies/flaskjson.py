"""Flask's tagged JSON (``flask.json.tag.TaggedJSONSerializer``), read and written without Flask.

The payload format of Flask's signed cookie sessions: JSON where a one-key object
``{" t": [...]}`` stands for a tuple, ``" b"`` for bytes, ``" m"`` for Markup,
``" u"`` for a UUID, ``" d"`` for a datetime and ``" di"`` escapes a dict whose only
key looks like a tag.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import typing as t
import uuid

from sesstool.codecs.tagged import MsgpackExt
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import InvalidInput

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(value: dt.datetime) -> str:
    """A datetime as Werkzeug's ``http_date`` writes it (naive means UTC; whole seconds)."""
    value = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
    value = value.astimezone(dt.timezone.utc)
    return (
        f"{_DAYS[value.weekday()]}, {value.day:02d} {_MONTHS[value.month - 1]} {value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} GMT"
    )


def _parse_http_date(value: t.Any) -> dt.datetime | None:
    """Werkzeug's ``parse_date``: an aware datetime, or None when it is not a date."""
    from email.utils import parsedate_to_datetime

    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, AttributeError):
        return None
    if parsed is None:  # pragma: no cover - Python < 3.10 returned None
        return None
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed


def _untag_dict(value: t.Any) -> dict[str, t.Any]:
    if not isinstance(value, dict) or not value:
        raise ValueError("' di' holds no object")
    key = next(iter(value))
    return {key[:-2]: value[key]}


_UNTAG: dict[str, t.Callable[[t.Any], t.Any]] = {
    " di": _untag_dict,
    " t": tuple,
    " b": base64.b64decode,
    " m": Markup,
    " u": uuid.UUID,
    " d": _parse_http_date,
}
FLASK_TAGS = frozenset(_UNTAG)


def _untag(obj: dict[str, t.Any]) -> t.Any:
    if len(obj) != 1:
        return obj
    ((key, value),) = obj.items()
    untag = _UNTAG.get(key)
    return obj if untag is None else untag(value)


def flask_loads(text: str | bytes) -> dict[str, t.Any]:
    """Read Flask's tagged JSON (``TaggedJSONSerializer.loads``) into a session dict.

    :raises InvalidInput: when it is not JSON, a tag is malformed, or it is not an object.
    """
    try:
        data = json.loads(text, object_hook=_untag)
    except RecursionError as e:
        raise InvalidInput("payload is nested too deeply") from e
    except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error) as e:
        raise InvalidInput(f"payload is not Flask's tagged JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"payload is JSON but not an object (a {type(data).__name__}); a session is one")
    return data


def flask_tag(value: t.Any) -> t.Any:
    """Tag a session value as Flask's ``TaggedJSONSerializer.tag`` does.

    :raises InvalidInput: for a value a Flask cookie session cannot hold (set, date, ...).
    """
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise InvalidInput("a Flask cookie session holds only objects with string keys")
        if len(value) == 1:
            key = next(iter(value))
            if key in FLASK_TAGS:
                return {" di": {f"{key}__": flask_tag(value[key])}}
        return {key: flask_tag(item) for key, item in value.items()}
    if isinstance(value, (MsgpackExt, OpaqueObject)):
        raise InvalidInput(f"a Flask cookie session cannot hold {value!r}")
    if isinstance(value, tuple):
        return {" t": [flask_tag(item) for item in value]}
    if isinstance(value, list):
        return [flask_tag(item) for item in value]
    if isinstance(value, bytes):
        return {" b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Markup) or callable(getattr(value, "__html__", None)):
        html = value.__html__() if hasattr(value, "__html__") else value
        return {" m": str(html)}
    if isinstance(value, uuid.UUID):
        return {" u": value.hex}
    if isinstance(value, dt.datetime):
        return {" d": http_date(value)}
    if isinstance(value, (str, int, float)):
        return value
    raise InvalidInput(f"a Flask cookie session cannot hold a {type(value).__name__}")


def flask_dumps(data: dict[str, t.Any]) -> bytes:
    """Session data as Flask writes it: tagged, compact, keys sorted, ASCII."""
    tagged = flask_tag(data)
    try:
        text = json.dumps(tagged, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"cannot write the session as JSON: {e}") from e
    return text.encode("ascii")
