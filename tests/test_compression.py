"""Bounded zlib (sesstool.codecs.compression): the one inflater cookies and memcached use."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs.compression import InflateError, inflate
from tests.properties import examples


@examples(300)
@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=4096))
def test_any_bytes_inflate_within_the_limit_or_fail_cleanly(raw: bytes, limit: int) -> None:
    try:
        out = inflate(raw, limit)
    except InflateError as e:
        assert str(e).startswith(("is not valid", "expands to more", "is truncated"))
    else:
        assert len(out) <= limit
        assert zlib.decompress(raw) == out


@examples(100)
@given(st.binary(max_size=5000))
def test_what_zlib_wrote_comes_back_exactly_when_it_fits(data: bytes) -> None:
    packed = zlib.compress(data, 9)
    assert inflate(packed, len(data)) == data
    if data:
        with pytest.raises(InflateError, match="expands to more than"):
            inflate(packed, len(data) - 1)
    if len(packed) > 2:
        with pytest.raises(InflateError):
            inflate(packed[:-2], len(data) + 10)


def test_a_bomb_stops_at_the_limit() -> None:
    bomb = zlib.compress(b"\0" * 50_000_000, 9)  # 50 MB from about 50 KB
    with pytest.raises(InflateError, match="zlib bomb"):
        inflate(bomb, 1_000_000)
