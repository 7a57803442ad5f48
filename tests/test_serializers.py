"""Decoding and encoding stored values as Flask-Session writes them (sesstool.codecs.serializers)."""

from __future__ import annotations

import datetime as dt
import pickle
import random
import typing as t
import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs import serializers
from sesstool.codecs.tagged import MsgpackExt, to_tagged
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import InvalidInput, UndecodableValue
from tests.properties import examples

# What a Flask-Session 0.8 app puts in a session through msgspec, and what it reads back.
SESSION: dict[str, t.Any] = {
    "_permanent": True,
    "user_id": 42,
    "name": "Zoë ✓",
    "roles": ["admin", "editor"],
    "nested": {"a": [1, 2.5, None, False], "b": {}},
    "big": 2**63,
    "negative": -(2**63),
    "float": 0.1,
    "empty": "",
}


def flask_session_serializer(fmt: str) -> t.Any:
    """Flask-Session 0.8's own serializer, as its RedisSessionInterface uses it."""
    from flask import Flask
    from flask_session.base import MsgSpecSerializer

    return MsgSpecSerializer(Flask(__name__), fmt)


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_decodes_what_flask_session_08_writes(fmt: str) -> None:
    fs = flask_session_serializer(fmt)
    raw = fs.encode(SESSION)
    assert serializers.decode(raw) == (fmt, SESSION)
    assert serializers.decode(raw, fmt) == (fmt, SESSION)
    # ...and sees exactly what the app itself reads back.
    assert serializers.decode(raw)[1] == fs.decode(raw)


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_encodes_byte_for_byte_as_flask_session_08(fmt: str) -> None:
    fs = flask_session_serializer(fmt)
    assert serializers.encode(SESSION, fmt) == fs.encode(SESSION)


def test_msgpack_values_beyond_json_decode_as_the_app_sees_them() -> None:
    fs = flask_session_serializer("msgpack")
    when = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.timezone.utc)
    raw = fs.encode({"blob": b"\x00\xff", "when": when, 1: "int key"})
    name, data = serializers.decode(raw)
    assert name == "msgpack"
    assert data == {"blob": b"\x00\xff", "when": when, 1: "int key"} == fs.decode(raw)
    assert to_tagged(data) == {
        "$map": [["blob", {"$bytes": "AP8="}], ["when", {"$datetime": "2026-11-21T10:00:00+00:00"}], [1, "int key"]]
    }


def test_msgspec_turns_some_types_into_plain_ones_as_flask_session_does() -> None:
    # A naive datetime, a UUID and a tuple come back as a string, a string and a list:
    # Flask-Session 0.8 apps see them so too.
    data = {"when": dt.datetime(2026, 1, 2, 3, 4), "id": uuid.UUID(int=1), "pair": (1, 2)}
    raw = serializers.encode(data, "msgpack")
    assert raw == flask_session_serializer("msgpack").encode(data)
    assert serializers.decode(raw) == (
        "msgpack",
        {"when": "2026-01-02T03:04:00", "id": "00000000-0000-0000-0000-000000000001", "pair": [1, 2]},
    )


def test_msgpack_extension_values_survive_decode_and_encode() -> None:
    raw = msgspec.msgpack.encode({"ext": msgspec.msgpack.Ext(5, b"\x01\x02")})
    name, data = serializers.decode(raw)
    assert name == "msgpack" and data == {"ext": MsgpackExt(5, b"\x01\x02")}
    assert serializers.encode(data, "msgpack") == raw
    with pytest.raises(UndecodableValue, match="extension"):
        serializers.encode(data, "json")


@pytest.mark.parametrize(
    "value",
    [OpaqueObject("myapp.User", state={"id": 1}), Markup("<b>"), complex(1, 2)],
    ids=["opaque", "markup", "complex"],
)
@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_encode_refuses_what_the_format_cannot_hold(value: t.Any, fmt: str) -> None:
    # An OpaqueObject is a dataclass that msgspec would happily write as a map: that
    # would silently replace the app's object with a dict.
    with pytest.raises(UndecodableValue) as info:
        serializers.encode({"x": [value]}, fmt)
    assert info.value.exit_code == 4


def test_encode_with_an_unknown_serializer_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        serializers.encode({}, "yaml")
    with pytest.raises(InvalidInput):
        serializers.decode(b"\x80", "yaml")


# -- auto detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x80", ("msgpack", {})),  # msgpack's empty map is the single byte 0x80...
        (pickle.dumps({}, 4), ("pickle", {})),  # ...and pickle protocol 4 starts 0x80 0x04
        (pickle.dumps({}, 5), ("pickle", {})),
        (pickle.dumps({"a": 1}, 2), ("pickle", {"a": 1})),  # 0x80 0x02
        (pickle.dumps({"a": 1}, 3), ("pickle", {"a": 1})),
        (pickle.dumps({"a": 1}, 1), ("pickle", {"a": 1})),  # starts with } (EMPTY_DICT)
        (pickle.dumps({"a": 1}, 0), ("pickle", {"a": 1})),  # starts with ( (MARK)
        (b"\x81\xa1a\x01", ("msgpack", {"a": 1})),  # fixmap
        (b"\xde\x00\x01\xa1a\x01", ("msgpack", {"a": 1})),  # map 16
        (b"\xdf\x00\x00\x00\x01\xa1a\x01", ("msgpack", {"a": 1})),  # map 32
        (b'{"a":1}', ("json", {"a": 1})),
        (b'  {"a": 1}\n', ("json", {"a": 1})),
        (b"{}", ("json", {})),
        (b'{"\\u00e9":"\xc3\xa9"}', ("json", {"é": "é"})),
    ],
)
def test_auto_detection(raw: bytes, expected: tuple[str, t.Any]) -> None:
    assert serializers.decode(raw) == expected
    assert serializers.decode(raw, expected[0]) == expected


@pytest.mark.parametrize(
    ("raw", "wrong"),
    [
        (b'{"a":1}', "msgpack"),
        (b'{"a":1}', "pickle"),
        (b"\x81\xa1a\x01", "json"),
        (pickle.dumps({"a": 1}, 4), "msgpack"),
        (pickle.dumps({"a": 1}, 4), "json"),
        (b"\x80", "pickle"),
    ],
)
def test_an_explicit_serializer_is_insisted_on(raw: bytes, wrong: str) -> None:
    assert serializers.decode(raw, wrong) == ("unknown", None)


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps([1, 2], 4),
        pickle.dumps("a string", 2),
        pickle.dumps(None, 0),
        msgspec.msgpack.encode([1, 2]),
        msgspec.msgpack.encode("x"),
        msgspec.msgpack.encode(None),
        b"[1, 2]",
        b'"text"',
        b"null",
        b"42",
    ],
)
def test_a_value_that_is_not_a_map_is_no_session(raw: bytes) -> None:
    for serializer in serializers.CHOICES:
        assert serializers.decode(raw, serializer) == ("unknown", None)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        b"\xff" * 10,
        b"\x80\x04",
        b"\x80\x05\x95",
        b'{"a": ',
        b'{"a": 1}}',
        b"\x82\xa1a\x01",  # a map of two entries holding one
        b"\x81\xa1a",
        b"\x91" * 100_000 + b"\x01",  # nesting deep enough for msgspec's RecursionError
        b"\x81\xa1a" + b"\x91" * 100_000 + b"\xc0",
        b"[" * 100_000,
        b"not a session at all",
        "Zoë".encode("utf-16"),
    ],
)
def test_garbage_is_unknown_never_an_exception(raw: bytes) -> None:
    for serializer in serializers.CHOICES:
        assert serializers.decode(raw, serializer) == ("unknown", None)


@examples(500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    for serializer in serializers.CHOICES:
        name, data = serializers.decode(raw, serializer)
        assert (name == "unknown") is (data is None)
        if data is not None:
            to_tagged(data)  # whatever decodes can be shown


def test_corrupted_real_values_never_raise() -> None:
    rng = random.Random(1234)  # fixed: the same corruptions every run
    originals = [
        pickle.dumps({"a": [1, (2, 3)], "b": {4, 5}, "c": dt.datetime(2020, 1, 1)}, protocol) for protocol in range(6)
    ] + [serializers.encode(SESSION, "msgpack"), serializers.encode(SESSION, "json")]
    for original in originals:
        for _ in range(300):
            raw = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            name, data = serializers.decode(bytes(raw))
            if data is not None:
                to_tagged(data)


# -- size --------------------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize("fmt", ["msgpack", "json", "pickle"])
def test_a_ten_megabyte_value_decodes(fmt: str) -> None:
    session = {"blob": "x" * TEN_MB, "_permanent": True}
    raw = pickle.dumps(session, 4) if fmt == "pickle" else serializers.encode(session, fmt)
    assert len(raw) > TEN_MB
    assert serializers.decode(raw) == (fmt, session)


def test_constants() -> None:
    assert serializers.SERIALIZERS == ("msgpack", "json", "pickle")
    assert serializers.CHOICES == ("auto", "msgpack", "json", "pickle")
    assert serializers.UNKNOWN == "unknown"


@pytest.mark.network
@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_values_a_real_flask_session_08_app_stored(fmt: str, redis_url: str, redis_client: t.Any) -> None:
    from tests.flaskapps import make_app, read_session, write_session

    app = make_app(redis_url=redis_url, fmt=fmt)
    data = {"user_id": 42, "name": "Zoë", "cart": {"items": [1, 2], "total": 9.5}, "ok": True}
    written = write_session(app, data)
    raw = redis_client.get(f"session:{written.sid}")
    name, decoded = serializers.decode(raw)
    assert name == fmt
    assert decoded == {"_permanent": True, **data} == read_session(app, written.cookie)
    # Written back unchanged, the bytes are the app's own.
    assert serializers.encode(decoded, fmt) == raw
