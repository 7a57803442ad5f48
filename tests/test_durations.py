from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sesstool.durations import format_duration, parse_duration, parse_time
from sesstool.errors import InvalidInput


@pytest.mark.parametrize(
    "text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), (" 1D ", 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "1.5h", "10w", "h", "1 2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid duration"):
        parse_duration(text)


def test_times() -> None:
    assert parse_time("2026-12-01T09:00:00+00:00") == datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    assert parse_time("2026-12-01T09:00:00Z") == datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    assert parse_time("1764579600") == datetime(2025, 12, 1, 9, tzinfo=timezone.utc)
    with pytest.raises(InvalidInput, match="no UTC offset"):
        parse_time("2026-12-01T09:00:00")
    with pytest.raises(InvalidInput, match="invalid time"):
        parse_time("tomorrow")


def test_format_duration() -> None:
    assert format_duration(None) == "-"
    assert format_duration(59) == "59s"
    assert format_duration(31 * 86400) == "31d 0h"
