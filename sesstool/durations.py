"""Parse the contract's DURATION (``90``, ``90s``, ``15m``, ``2h``, ``7d``) and TIME values."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from sesstool.errors import InvalidInput

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")


def parse_duration(text: str) -> int:
    """Return the number of seconds ``text`` stands for.

    :raises InvalidInput: when ``text`` is not a whole number with an optional unit.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise InvalidInput(f"invalid duration {text!r}: use seconds (90) or a number with s, m, h or d (15m, 7d)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time with an offset, or a Unix timestamp, into an aware datetime.

    :raises InvalidInput: when ``text`` is neither, or has no UTC offset.
    """
    stripped = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        return datetime.fromtimestamp(float(stripped), tz=timezone.utc)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"invalid time {text!r}: use ISO 8601 with an offset (2026-12-01T09:00:00+00:00) or a Unix timestamp"
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"time {text!r} has no UTC offset: add one, e.g. +00:00")
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
