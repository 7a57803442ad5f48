"""How the SQL store reads and writes column values (:mod:`~sesstool.stores.sql`).

Rows are read raw, past SQLAlchemy's type conversions, so that whatever a hostile
writer put in a column (SQLite keeps any type in any column) becomes bytes, a
datetime or ``None`` here, never an exception.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone

from sesstool.errors import InvalidInput
from sesstool.stores.base import show_key

KEY_LENGTH = 255  #: Flask-Session's String(255)
ESCAPE = "/"  #: the LIKE escape character: no backslash, which MySQL reads in literals too


def like_prefix(prefix: str) -> str:
    escaped = prefix.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return escaped + "%"


def raw_bytes(value: t.Any) -> bytes:
    """A column's value as the bytes it holds (text that was not UTF-8 keeps its bytes)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return str(value).encode("utf-8")


def row_key(value: t.Any) -> bytes | None:
    return None if value is None else raw_bytes(value)


def text_key(key: bytes) -> str:
    """``key`` as a session_id to write.

    :raises InvalidInput: for a key that is not UTF-8 or longer than the column.
    """
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot write {show_key(key)}: a SQL session_id must be UTF-8 text") from None
    if len(text) > KEY_LENGTH:
        raise InvalidInput(f"cannot write {show_key(key)}: longer than session_id's {KEY_LENGTH} characters")
    return text


def as_datetime(value: t.Any) -> datetime | None:
    """An expiry as naive UTC, or ``None`` for one that is no date."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, (str, bytes)):
        try:
            text = value.decode("ascii") if isinstance(value, bytes) else value
            parsed = datetime.fromisoformat(text.strip())
        except (ValueError, UnicodeDecodeError):
            return None
        return as_datetime(parsed)
    return None

