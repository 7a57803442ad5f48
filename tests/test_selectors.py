"""``--where`` parsing and matching (pure logic, no store needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from sesstool.errors import InvalidInput
from sesstool.ops.selectors import parse_all, parse_where

SESSION = {
    "user_id": 42,
    "name": "alice",
    "admin": True,
    "score": 1.5,
    "nothing": None,
    "cart": {"items": [7, 8], "coupon": {"code": "XMAS"}},
    "seen": dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.timezone.utc),
    "pair": (1, 2),
}


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("user_id=42", True),
        ("user_id=43", False),
        ('user_id="42"', False),  # JSON string "42" is not the integer 42
        ("user_id!=42", False),
        ("user_id!=7", True),
        ("name=alice", True),  # not valid JSON: taken as a string
        ('name="alice"', True),
        ("admin=true", True),
        ("admin=1", False),  # true is not the number 1
        ("score=1.5", True),
        ("nothing=null", True),
        ("cart.coupon.code=XMAS", True),
        ("cart.items.1=8", True),
        ("cart.items.-1=8", True),
        ("cart.items.5=8", False),
        ('cart.items=[7, 8]', True),
        ("cart.coupon.code.x=1", False),
        ("name~^al", True),
        ("name~^bo", False),
        ("user_id~^4", True),  # a regex sees non-strings as their JSON text
        ("seen~^2026-11", True),
        ('seen={"$datetime": "2026-11-21T10:00:00+00:00"}', True),
        ('pair={"$tuple": [1, 2]}', True),
        ("cart", True),
        ("cart.coupon", True),
        ("missing", False),
        ("!missing", True),
        ("!cart.items", False),
        ("missing!=1", True),  # absent is "not equal"
        ("missing=1", False),
        ("name = alice", True),
    ],
)
def test_match(expr: str, expected: bool) -> None:
    assert parse_where(expr)(SESSION) is expected


def test_all_expressions_must_match() -> None:
    both = parse_all(["user_id=42", "name=alice"])
    assert both is not None and both(SESSION)
    one_fails = parse_all(["user_id=42", "name=bob"])
    assert one_fails is not None and not one_fails(SESSION)
    assert parse_all([]) is None


def test_value_may_contain_operators() -> None:
    assert parse_where("url=https://x/?a=b")({"url": "https://x/?a=b"})
    assert parse_where("eq=a!=b")({"eq": "a!=b"})


@pytest.mark.parametrize("expr", ["", "=1", "!", "a..b=1", "a.=1", "x~(", "!=3", "~x"])
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(InvalidInput, match="--where|field path"):
        parse_where(expr)
