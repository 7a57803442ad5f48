"""Property tests for what the SQL store parses: table names, prefixes in LIKE, stored expiries."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.errors import InvalidInput
from sesstool.stores.sql_engine import _connect_args, driver_message, table_name
from sesstool.stores.sql_values import as_datetime, like_prefix
from tests.properties import examples

_LIKE_CHARS = st.text(alphabet=st.sampled_from("ab%_/\\:é"), max_size=8)


@examples(300)
@given(prefix=_LIKE_CHARS, rest=_LIKE_CHARS, other=_LIKE_CHARS)
def test_the_like_pattern_matches_every_key_under_the_prefix(prefix: str, rest: str, other: str) -> None:
    # SQLite's LIKE ignores ASCII case, so the store checks the bytes again: the
    # pattern must never miss a key under the prefix, and with case equal it must
    # match nothing else.
    db = sqlite3.connect(":memory:")
    pattern = like_prefix(prefix)

    def like(key: str) -> bool:
        return bool(db.execute("SELECT ? LIKE ? ESCAPE '/'", (key, pattern)).fetchone()[0])

    assert like(prefix + rest)
    assert like(other) == other.startswith(prefix)


@examples(300)
@given(st.text(max_size=80))
def test_a_table_name_is_an_identifier_or_refused(name: str) -> None:
    try:
        table, schema = table_name(name, None)
    except InvalidInput as e:
        assert "\n" not in str(e) and "\x1b" not in str(e)
        return
    for part in (table, schema):
        assert part is None or (part.isascii() and part.replace("_", "").replace("$", "").isalnum())


def test_table_names() -> None:
    assert table_name(None, None) == ("sessions", None)
    assert table_name("web.sessions", None) == ("sessions", "web")
    assert table_name("t", "auth") == ("t", "auth")
    for bad in ("a b", "a;b", "1a", "a.b.c", '"x"', "x" * 64):
        with pytest.raises(InvalidInput):
            table_name(bad, None)


@examples(300)
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40), st.integers(), st.floats(), st.none(),
                 st.datetimes(timezones=st.none() | st.timezones())))  # fmt: skip
def test_a_stored_expiry_is_a_naive_datetime_or_none_never_an_error(value: object) -> None:
    parsed = as_datetime(value)
    assert parsed is None or (isinstance(parsed, datetime) and parsed.tzinfo is None)


def test_stored_expiry_forms() -> None:
    assert as_datetime("2026-12-07 09:00:00.123456") == datetime(2026, 12, 7, 9, 0, 0, 123456)
    assert as_datetime(b"2026-12-07 09:00:00") == datetime(2026, 12, 7, 9)
    assert as_datetime("2026-12-07T10:00:00+01:00") == datetime(2026, 12, 7, 9)
    assert as_datetime("soon") is None and as_datetime(b"\xff") is None and as_datetime(3) is None


@examples(200)
@given(st.text(max_size=200))
def test_a_driver_message_is_one_printable_ascii_line(text: str) -> None:
    message = driver_message(Exception(text))
    assert "\n" not in message and message.isascii()
    assert all(ch >= " " and ch != "\x7f" for ch in message)


def test_timeouts_reach_the_drivers_that_take_them() -> None:
    assert _connect_args("psycopg", 2.5) == {"connect_timeout": 3, "options": "-c statement_timeout=2500"}
    assert _connect_args("psycopg", 0.5)["connect_timeout"] == 2  # libpq's own floor
    assert _connect_args("pymysql", 4.0)["read_timeout"] == 4.0
    assert _connect_args("pg8000", 4.0) == {}
