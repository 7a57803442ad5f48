"""The decoding budget: a hostile value costs at most ~64 MiB and ~1 s, then is undecodable.

Each bomb is a few hundred bytes (or a few hundred KiB) of pickle, msgpack or json
that, without the budget, took gigabytes or minutes. They run in a child process
with a 1 GiB address-space limit, which reports how much its peak memory grew and
how long decoding took: so a regression fails the test instead of the machine.
The bounds asserted are generous (the budget is 64 MiB and 1 s); what matters is
that the decoder stopped, and why.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import typing as t
from decimal import Decimal

import msgspec
import pytest

from sesstool.codecs import serializers
from sesstool.codecs.budget import MAX_BYTES, MAX_DEPTH, MAX_INT_BITS, BudgetExceeded
from sesstool.codecs.safepickle import safe_loads
from sesstool.codecs.tagged import to_tagged
from tests.pickleops import (
    MARK,
    MEMOIZE,
    POP,
    call,
    doubling,
    get,
    global_,
    long,
    raw_bytes,
    session,
    text,
)

_CHILD = r"""
import json, resource, sys, time
limit = 1 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from sesstool.codecs import serializers
from sesstool.codecs.safepickle import safe_loads
fmt, raw = sys.argv[1], sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    if fmt == "pickle":
        safe_loads(raw)
        outcome = "decoded"
    else:
        outcome = serializers.decode(raw, fmt)[0]
except BaseException as e:
    outcome = type(e).__name__
seconds = time.monotonic() - started
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"outcome": outcome, "seconds": seconds, "grew_mib": grew}))
"""


def decode_in_child(raw: bytes, fmt: str = "pickle") -> dict[str, t.Any]:
    result = subprocess.run([sys.executable, "-c", _CHILD, fmt], input=raw, capture_output=True, timeout=60, check=True)
    return t.cast("dict[str, t.Any]", json.loads(result.stdout))


def assert_refused_within_budget(raw: bytes, outcome: str, fmt: str = "pickle") -> None:
    report = decode_in_child(raw, fmt)
    assert report["outcome"] == outcome, report
    assert report["grew_mib"] < 2 * MAX_BYTES / 2**20, report
    assert report["seconds"] < 3, report


LEAF = text("x" * 64)
COLLIDING = [k * (2**61 - 1) for k in range(1, 40_001)]  # every one hashes to 0

# -- expansion of memo-shared objects -----------------------------------------------------------

PUNY = b"a" * 60_000 + b"-" + b"b" * 60_000
BOMBS_REFUSED_BY_ARGUMENT_CHECKS = {
    # str() of a list 2**30 wide writes out every shared reference (70 GB).
    "str of a shared list": session(global_("builtins", "str") + doubling(30, LEAF, kind="list") + b"\x85R"),
    "Markup of a shared list": session(global_("markupsafe", "Markup") + doubling(30, LEAF, kind="list") + b"\x85R"),
    # int() of a Decimal with a huge exponent builds a 40 MB integer, slowly.
    "int of a huge Decimal": session(call("builtins", "int", call("decimal", "Decimal", text("1e100000000")))),
    # punycode decoding takes quadratic time.
    "punycode text codec": session(call("builtins", "str", raw_bytes(PUNY), text("punycode"))),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BOMBS_REFUSED_BY_ARGUMENT_CHECKS))
def test_allow_listed_constructors_refuse_arguments_that_expand(name: str) -> None:
    assert_refused_within_budget(BOMBS_REFUSED_BY_ARGUMENT_CHECKS[name], "UnpicklingError")


def _copies(builder: str, source: bytes, times: int) -> bytes:
    # [builder(source), builder(source), ...] with source and builder memoized once.
    module, name = builder.split(".")
    head = source + MEMOIZE + POP + global_(module, name) + MEMOIZE + POP
    one = get(1) + get(0) + b"\x85R"
    return head + b"]" + MARK + one * times + b"e"


KEYS = range(100_000)  # 50,000 pairs
COLLIDING_OPS = b"".join(map(long, COLLIDING))
COLLIDING_KEYS = b"".join(long(k) + b"N" for k in COLLIDING)  # each maps to None
BOMBS_REFUSED_BY_THE_BUDGET = {
    # 2,000 copies of a 100,000-item list: 1.6 GB from 250 KB.
    "list() copies": session(_copies("builtins.list", b"]" + MARK + b"N" * 100_000 + b"e", 2_000)),
    "tuple() copies": session(_copies("builtins.tuple", b"]" + MARK + b"N" * 100_000 + b"e", 2_000)),
    "dict() copies": session(_copies("builtins.dict", b"}" + MARK + b"".join(map(long, KEYS)) + b"u", 500)),
    # 1,000 copies of 1 MB: 1 GB.
    "bytes() copies": session(_copies("builtins.bytes", raw_bytes(b"\0" * 1_000_000), 1_000)),
    "bytearray() copies": session(_copies("builtins.bytearray", raw_bytes(b"\0" * 1_000_000), 1_000)),
    # Hashing a tuple 2**40 wide walks all of it (hours), in a set, a dict key or a frozenset.
    "set of a shared tuple": session(b"\x8f" + MARK + doubling(40, LEAF) + b"\x90"),
    "dict key of a shared tuple": session(b"}" + doubling(40, LEAF) + b"Ns"),
    "frozenset of a shared tuple": session(MARK + doubling(40, LEAF) + b"\x91"),
    # 40,000 integers with one hash: each insertion compares with all before it.
    "set of colliding integers": session(b"\x8f" + MARK + COLLIDING_OPS + b"\x90"),
    "dict of colliding integer keys": session(b"}" + MARK + COLLIDING_KEYS + b"u"),
    "set() of colliding integers": session(call("builtins", "set", b"]" + MARK + COLLIDING_OPS + b"e")),
    # Every MARK starts a new stack: 3 million of them, 3 MB, were 190 MB of lists.
    "MARK after MARK": session(MARK * 3_000_000),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BOMBS_REFUSED_BY_THE_BUDGET))
def test_memo_shared_and_colliding_values_exhaust_the_budget(name: str) -> None:
    assert_refused_within_budget(BOMBS_REFUSED_BY_THE_BUDGET[name], "BudgetExceeded")


def test_a_tuple_nested_a_million_deep_is_refused_before_anything_walks_it() -> None:
    # Hashing it recursed a million deep in C.
    assert_refused_within_budget(session(b"\x8f" + MARK + b"K\x01" + b"\x85" * 1_000_000 + b"\x90"), "BudgetExceeded")


# -- integers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        long(1 << 2_000_000),  # LONG4: 2 MB of integer
        long(1 << MAX_INT_BITS),
        b"I0b" + b"1" * 100_000 + b"\n",  # INT reads int(text, 0): binary has no digit limit
        call("builtins", "int", text("1" * 100_000), b"K\x02"),
    ],
    ids=["LONG4", "one bit over", "INT 0b", "int(text, 2)"],
)
def test_integers_over_the_limit_are_refused(payload: bytes) -> None:
    with pytest.raises(BudgetExceeded, match=f"more than {MAX_INT_BITS} bits"):
        safe_loads(session(payload))
    assert serializers.decode(session(payload)) == ("unknown", None)


def test_the_largest_integer_allowed_decodes_and_prints() -> None:
    largest = (1 << MAX_INT_BITS) - 1
    name, data = serializers.decode(session(long(largest)))
    assert name == "pickle" and data == {"x": largest}
    assert msgspec.json.decode(msgspec.json.encode(to_tagged(data))) == {"x": largest}


def test_json_integers_over_the_limit_are_unknown() -> None:
    over = str(1 << MAX_INT_BITS).encode()
    assert serializers.decode(b'{"n": ' + over + b"}") == ("unknown", None)
    largest = (1 << MAX_INT_BITS) - 1
    assert serializers.decode(b'{"n": %d}' % largest) == ("json", {"n": largest})


# -- msgpack and json: one C call, so bounded from the input ----------------------------------


def test_msgpack_that_would_make_too_many_objects_is_refused_before_decoding() -> None:
    # 1.1 million empty maps in an array: 2.3 MB that would make ~100 MB of dicts.
    raw = b"\xdd" + (1_100_000).to_bytes(4, "big") + b"\x80" * 1_100_000
    assert_refused_within_budget(b"\x81\xa1x" + raw, "unknown", "msgpack")
    with pytest.raises(BudgetExceeded):
        serializers._decode_msgpack(b"\x81\xa1x" + raw)


def test_json_that_would_make_too_many_objects_is_refused_before_decoding() -> None:
    raw = b'{"x": [' + b",".join([b"{}"] * 1_100_000) + b"]}"
    assert_refused_within_budget(raw, "unknown", "json")


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_large_text_values_still_decode(fmt: str) -> None:
    session_data = {"blob": "x" * 12_000_000, "bin": "é" * 1_000_000}
    raw = serializers.encode(session_data, fmt)
    assert serializers.decode(raw) == (fmt, session_data)


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_nesting_past_the_limit_is_unknown_and_at_the_limit_shows(fmt: str) -> None:
    def nested(depth: int) -> dict[str, t.Any]:
        value: t.Any = 1
        for _ in range(depth):
            value = [value]
        return {"x": value}

    assert serializers.decode(serializers.encode(nested(MAX_DEPTH + 1), fmt)) == ("unknown", None)
    name, data = serializers.decode(serializers.encode(nested(MAX_DEPTH - 1), fmt))
    assert name == fmt
    to_tagged(data)


# -- values that used to crash whatever showed them -------------------------------------------


def test_a_decimal_nan_inside_a_set_shows() -> None:
    data = safe_loads(pickle.dumps({"s": {Decimal("NaN"), Decimal(1), Decimal("-Infinity")}}, 4))
    assert to_tagged(data) == {"s": {"$set": [{"$decimal": "-Infinity"}, {"$decimal": "1"}, {"$decimal": "NaN"}]}}


@pytest.mark.parametrize(
    "raw",
    [
        session(b"\x8c\x03\xed\xa0\x80"),  # SHORT_BINUNICODE of a UTF-8-encoded surrogate
        b"(dp0\nVx\nV\\ud800\ns.",  # UNICODE reads raw-unicode-escape
        session(call("builtins", "str", raw_bytes(b"\xed\xa0\x80"), text("utf-8"), text("surrogatepass"))),
    ],
)
def test_text_with_a_lone_surrogate_is_unknown(raw: bytes) -> None:
    # Decoded, it could be shown as nothing: no UTF-8 encoder writes a lone surrogate.
    assert serializers.decode(raw) == ("unknown", None)


def test_ordinary_large_pickles_fit_the_budget() -> None:
    data = {"blob": "x" * 10_000_000, "ids": list(range(200_000)), "s": set(range(50_000))}
    assert safe_loads(pickle.dumps(data, 4)) == data


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 1e999999}',  # msgspec: out of range
        b'{"n": ' + b"9" * 100_000 + b"}",  # past Python's 4,300 digits
        b'{"x": "\\ud800"}',  # a lone surrogate
        b'{"x": "\\udc00y"}',
        b"\x81\xa1x\xa3\xed\xa0\x80",  # msgpack text holding a UTF-8-encoded surrogate
    ],
)
def test_json_and_msgpack_that_nothing_could_show_are_unknown(raw: bytes) -> None:
    assert serializers.decode(raw) == ("unknown", None)


