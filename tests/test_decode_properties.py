"""Properties of every decoder that reads untrusted bytes: pickle, msgpack, json, tagged JSON.

For any input: the decoder returns or raises only its documented errors (never a
traceback for the CLI to show), stays within the decoding budget, and what it
returns the tagged encoder can write as UTF-8 JSON that reads back as the same
value. Example counts are modest for CI; ``SESSTOOL_PROPERTY_SCALE=50`` runs fifty
times as many (see docs/budgets.md).
"""

from __future__ import annotations

import json
import pickle
import struct
import time
import tracemalloc
import typing as t
import uuid

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs import serializers
from sesstool.codecs.budget import MAX_BYTES, MAX_SECONDS, BudgetExceeded
from sesstool.codecs.fidelity import fingerprint
from sesstool.codecs.safepickle import safe_loads
from sesstool.codecs.tagged import TAGS, from_tagged, to_tagged
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import InvalidInput
from tests.pickleops import PROTO, call, doubling, get, global_, long, raw_bytes, session, text
from tests.properties import examples


def assert_shows_and_round_trips(data: t.Any) -> None:
    """The tagged form of ``data`` is UTF-8 JSON that reads back as ``data``."""
    encoded = msgspec.json.encode(to_tagged(data))
    encoded.decode("utf-8")  # valid UTF-8
    assert fingerprint(from_tagged(json.loads(encoded))) == fingerprint(data)


# -- pickle: random opcode streams ---------------------------------------------------------------

NAMES = [
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float", "bytes", "bytearray", "object")
] + [
    ("datetime", "datetime"), ("datetime", "timedelta"), ("datetime", "timezone"), ("uuid", "UUID"),
    ("uuid", "SafeUUID"), ("decimal", "Decimal"), ("markupsafe", "Markup"), ("collections", "OrderedDict"),
    ("_codecs", "encode"), ("copyreg", "_reconstructor"), ("os", "system"), ("myapp", "User"),
]  # fmt: skip

SIMPLE_OPS = [
    b"N", b"\x88", b"\x89", b")", b"]", b"}", b"\x8f", b"(", b"t", b"\x85", b"\x86", b"\x87", b"l", b"d",
    b"\x91", b"a", b"e", b"s", b"u", b"\x90", b"\x94", b"0", b"1", b"2", b"R", b"\x81", b"\x92", b"b", b"o",
]  # fmt: skip

opcodes = st.one_of(
    st.sampled_from(SIMPLE_OPS),
    st.integers(0, 255).map(lambda i: b"K" + bytes([i])),
    st.integers(0, 12).map(get),
    st.integers(-(2**70), 2**70).map(long),
    st.floats().map(lambda f: b"G" + struct.pack(">d", f)),
    st.text(max_size=6).map(text),
    st.binary(max_size=6).map(lambda b: b"C" + bytes([len(b)]) + b),
    st.sampled_from(NAMES).map(lambda name: global_(*name)),
    st.sampled_from(["latin1", "utf-8", "punycode", "surrogatepass"]).map(text),
)
opcode_streams = st.lists(opcodes, max_size=40).map(lambda ops: PROTO + b"".join(ops) + b".")


def decode_pickle_or_refuse(raw: bytes) -> t.Any:
    try:
        return safe_loads(raw)
    except (pickle.UnpicklingError, BudgetExceeded):
        return None


@examples(400)
@given(opcode_streams)
def test_random_opcode_streams_decode_or_are_refused_and_what_decodes_shows(raw: bytes) -> None:
    value = decode_pickle_or_refuse(raw)
    if value is not None:
        assert_shows_and_round_trips(value)
    name, data = serializers.decode(raw)
    assert (data is None) == (name == "unknown")
    if data is not None:
        assert_shows_and_round_trips(data)


@examples(150)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_from_any_decoder(raw: bytes) -> None:
    for serializer in serializers.CHOICES:
        name, data = serializers.decode(raw, serializer)
        if data is not None:
            assert_shows_and_round_trips(data)


# -- pickle: structured hostile pickles ------------------------------------------------------------

leaves = st.sampled_from([text("x" * 64), b"K\x01", long(2**61 - 1), raw_bytes(b"\0" * 1000), b"N"])
WRAPPERS: dict[str, t.Callable[[bytes], bytes]] = {
    "as is": lambda v: v,
    "set member": lambda v: b"\x8f(" + v + b"\x90",
    "dict key": lambda v: b"}" + v + b"Ns",
    "frozenset": lambda v: b"(" + v + b"\x91",
    "str()": lambda v: call("builtins", "str", v),
    "list()": lambda v: call("builtins", "list", v),
    "set()": lambda v: call("builtins", "set", b"(" + v + b"l"),
    "Markup()": lambda v: call("markupsafe", "Markup", v),
    "stand-in": lambda v: call("myapp", "User", v, v),
}


@examples(60)
@given(
    levels=st.integers(0, 45),
    leaf=leaves,
    kind=st.sampled_from(["tuple", "list"]),
    wrapper=st.sampled_from(sorted(WRAPPERS)),
)
def test_memo_shared_structures_stay_within_the_budget(levels: int, leaf: bytes, kind: str, wrapper: str) -> None:
    raw = session(WRAPPERS[wrapper](doubling(levels, leaf, kind=kind)))
    tracemalloc.start()
    started = time.monotonic()
    try:
        value = decode_pickle_or_refuse(raw)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 3 * MAX_SECONDS
    assert peak < 2 * MAX_BYTES
    if value is not None:
        assert_shows_and_round_trips(value)


# -- pickle: decoding never changes what is shared -------------------------------------------------


def shared_state() -> t.Any:
    return (
        {k: v for k, v in vars(Markup).items() if k != "__doc__"},
        dict(vars(OpaqueObject)),
        [(member.name, member.value, dict(vars(member))) for member in uuid.SafeUUID],
    )


@examples(150)
@given(opcode_streams)
def test_no_pickle_changes_a_class_or_a_shared_object(raw: bytes) -> None:
    before = shared_state()
    decode_pickle_or_refuse(raw)
    assert shared_state() == before


# -- msgpack and json ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)
msgpack_keys = st.text() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=4)
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(msgpack_keys, inner, max_size=4),
    max_leaves=30,
)


@examples(200)
@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_json_sessions_decode_exactly_and_show(data: dict[str, t.Any]) -> None:
    raw = msgspec.json.encode(data)
    assert serializers.decode(raw, "json") == ("json", data)
    assert_shows_and_round_trips(serializers.decode(raw)[1])


@examples(200)
@given(st.dictionaries(msgpack_keys, msgpack_values, max_size=5))
def test_msgpack_sessions_decode_exactly_and_show(data: dict[t.Any, t.Any]) -> None:
    raw = msgspec.msgpack.encode(data)
    name, decoded = serializers.decode(raw, "msgpack")
    assert name == "msgpack" and fingerprint(decoded) == fingerprint(data)
    assert_shows_and_round_trips(decoded)


@examples(200)
@given(st.binary(max_size=100), st.sampled_from([b"\x81\xa1k", b'{"k": ']))
def test_arbitrary_bytes_inside_a_session_never_raise(tail: bytes, head: bytes) -> None:
    name, data = serializers.decode(head + tail)
    if data is not None:
        assert_shows_and_round_trips(data)


# -- the tagged JSON decoder -----------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
tag_like = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(), inner, max_size=3)
        | st.builds(lambda tag, body: {tag: body}, st.sampled_from(sorted(TAGS)), inner)
        | st.builds(lambda body: {"$object": body}, st.dictionaries(st.sampled_from(["class", "args", "x"]), inner))
    ),
    max_leaves=20,
)


@examples(400)
@given(tag_like)
def test_tagged_json_decodes_or_is_invalid_input_and_what_decodes_shows(document: t.Any) -> None:
    try:
        value = from_tagged(document)
    except InvalidInput:
        return
    assert_shows_and_round_trips(value)


def test_tagged_json_refuses_lone_surrogates() -> None:
    for document in ['{"x": "\\ud800"}', '{"\\udfff": 1}', '{"x": {"$markup": "\\ud800"}}']:
        try:
            from_tagged(json.loads(document))
        except InvalidInput as e:
            assert "surrogate" in str(e)
        else:
            raise AssertionError(document)
