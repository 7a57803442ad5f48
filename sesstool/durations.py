"""Parse the contract's DURATION (``90``, ``90s``, ``15m``, ``2h``, ``7d``) and TIME values."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sesstool.errors import InvalidInput

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# ASCII digits only: \d would also take "٣" (Arabic-Indic three), which int() reads.
_DURATION = re.compile(r"([0-9]{1,20})\s*([smhd]?)")
_TIMESTAMP = re.compile(r"[0-9]{1,20}(\.[0-9]{1,9})?")

#: The longest DURATION accepted: 100 years. Longer is a typo, and it would pass
#: what stores (and datetime, past year 9999) can represent.
MAX_DURATION = 100 * 366 * 86400
#: The latest TIME accepted (``--at``): the end of year 9999, datetime's limit.
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


def parse_duration(text: str) -> int:
    """Return the number of seconds ``text`` stands for.

    :raises InvalidInput: when ``text`` is not a whole number with an optional unit.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise InvalidInput(f"invalid duration {text!r}: use seconds (90) or a number with s, m, h or d (15m, 7d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION:
        raise InvalidInput(f"duration {text!r} is longer than 100 years ({MAX_DURATION:,} s); give a shorter one")
    return seconds


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time with an offset, or a Unix timestamp, into an aware datetime.

    :raises InvalidInput: when ``text`` is neither, has no UTC offset, or lies
        past the end of year 9999.
    """
    stripped = text.strip()
    if _TIMESTAMP.fullmatch(stripped):
        if float(stripped) > MAX_TIME.timestamp():
            raise InvalidInput(f"time {text!r} is past the end of year 9999")
        return datetime.fromtimestamp(float(stripped), tz=timezone.utc)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"invalid time {text!r}: use ISO 8601 with an offset (2026-12-01T09:00:00+00:00) or a Unix timestamp"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"time {text!r} has no UTC offset: add one, e.g. +00:00")
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:00-05:00 lies in year 10000 in UTC
        raise InvalidInput(f"time {text!r} is out of range (years 1 to 9999, in UTC)") from None
    return moment


def format_duration(seconds: int | None) -> str:
    """A short human form of a number of seconds (``31d 0h``, ``5m 3s``); ``-`` for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
