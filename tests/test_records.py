"""Properties of the per-session guard every bulk command goes through (records.py):
whatever a store holds, decoding and rendering one session never raises, the record
is always writable as one JSON line, and good sessions round-trip through it."""

from __future__ import annotations

import base64
import decimal
import pickle
import typing as t

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs.tagged import from_tagged
from sesstool.ops.records import decode_item, make_record
from sesstool.ops.transfer import export_record
from sesstool.stores.base import StoredItem
from tests.properties import examples

SERIALIZERS = {"msgpack", "json", "pickle", "unknown"}
_json = msgspec.json.Encoder()

hashable = st.one_of(
    st.integers(),
    st.integers(4300, 5000).map(lambda digits: 10**digits),  # past the int-to-text limit
    st.text(max_size=5),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2),
    st.decimals(allow_nan=False, allow_infinity=True),
    st.just(decimal.Decimal("NaN")),
    st.floats(),
)
values = st.recursive(
    hashable | st.none() | st.booleans() | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    | st.frozensets(hashable, max_size=4).map(set)
    | st.tuples(inner, inner),
    max_leaves=12,
)
sessions = st.dictionaries(st.text(max_size=6), values, max_size=5)


def _deep(depth: int) -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00d" + b"]" * depth + b"a" * (depth - 1) + b"s."


stored = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"\x80\x02" + b),  # random opcode streams
    st.tuples(sessions, st.integers(2, 5)).map(lambda sp: pickle.dumps(sp[0], protocol=sp[1])),
    st.integers(1, 20_000).map(_deep),
    st.integers(1, 20_000).map(lambda n: b'{"d": ' + b"[" * n + b"]" * n + b"}"),
)


def _check_record(value: bytes) -> dict[str, t.Any]:
    item = StoredItem(b"session:x", value, 60)
    decoded = decode_item(item)
    record = make_record(decoded, len("session:"), with_data=True)
    assert record["serializer"] in SERIALIZERS
    assert (record["data"] is None) == (record["serializer"] == "unknown")
    line = _json.encode(record)  # one JSON line, whatever the value held
    assert b"\n" not in line
    exported = export_record(decoded, len("session:"))
    _json.encode(exported)
    if exported["serializer"] == "unknown":
        assert base64.b64decode(exported["raw"]) == value  # lossless
    return record


@examples(200)
@given(stored)
def test_any_stored_value_gives_a_writable_record(value: bytes) -> None:
    _check_record(value)


@examples(100)
@given(st.dictionaries(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6), max_size=5))
def test_plain_sessions_round_trip_through_the_record(data: dict[str, t.Any]) -> None:
    for value in (msgspec.msgpack.encode(data), msgspec.json.encode(data), pickle.dumps(data, protocol=2)):
        record = _check_record(value)
        assert record["serializer"] != "unknown"
        assert from_tagged(record["data"]) == data
