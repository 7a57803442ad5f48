"""sesstool.cookies.format: Flask cookie sessions and signed ids, checked against Flask, itsdangerous."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import tracemalloc
import typing as t
import uuid
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.codecs.values import Markup
from sesstool.cookies import format as cookies
from sesstool.cookies.format import (
    LEGACY_EPOCH,
    MAX_COOKIE_LENGTH,
    decode_cookie,
    extract_cookie,
    flask_dumps,
    flask_loads,
    parse_cookie,
    sign_cookie,
    sign_sid,
)
from sesstool.errors import InvalidInput
from tests.properties import examples

KEY = "s3cret key"
NOW = 1_795_000_000.0  # 2026-11-18


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forged(payload: bytes, *, compressed: bool = False, stamp: int = int(NOW), key: str = KEY) -> str:
    """A cookie around any payload bytes, correctly signed, as a hostile app could make."""
    body = ("." if compressed else "") + b64(zlib.compress(payload) if compressed else payload)
    signed = f"{body}.{b64(stamp.to_bytes(4, 'big'))}"
    return f"{signed}.{cookies.signature_for(signed.encode(), key, 'cookie-session')}"


@pytest.fixture(scope="module")
def flask_serializer() -> t.Any:
    """Flask 3.1's own signing serializer for KEY, used inside an app context."""
    from flask import Flask

    app = Flask(__name__)
    app.secret_key = KEY
    return app, t.cast(t.Any, app.session_interface).get_signing_serializer(app)


SAMPLE = {
    "user_id": 42,
    "name": "Zoë",
    "pair": (1, "two", (3,)),
    "blob": b"\x00\xffbytes",
    "html": Markup("<b>bold</b>"),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "when": dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.timezone.utc),
    "nested": {" t": "a dict whose only key looks like a tag"},
    "items": [1.5, None, True, {"a": [b"x"]}],
}


class TestFlaskTaggedJSON:
    def test_sign_writes_exactly_what_flask_writes(
        self, flask_serializer: t.Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app, serializer = flask_serializer
        monkeypatch.setattr(time, "time", lambda: NOW)
        from markupsafe import Markup as RealMarkup

        flask_sample = {**SAMPLE, "html": RealMarkup("<b>bold</b>")}
        small = {"user_id": 42, "_fresh": True}
        large = {"cart": ["the same item"] * 50, **flask_sample}
        with app.app_context():
            for data in (small, large, flask_sample):
                assert sign_cookie(data, KEY, now=NOW) == serializer.dumps(data)

    def test_reads_every_tag_flask_writes(self, flask_serializer: t.Any) -> None:
        from markupsafe import Markup as RealMarkup

        app, serializer = flask_serializer
        with app.app_context():
            cookie = serializer.dumps({**SAMPLE, "html": RealMarkup("<b>bold</b>")})
        data = decode_cookie(cookie, [KEY]).data
        assert data == SAMPLE
        assert type(data["html"]) is Markup and type(data["pair"][2]) is tuple

    def test_tagged_output_form(self) -> None:
        record = decode_cookie(sign_cookie(SAMPLE, KEY, now=NOW)).to_record()
        assert record["data"] == {
            "user_id": 42,
            "name": "Zoë",
            "pair": {"$tuple": [1, "two", {"$tuple": [3]}]},
            "blob": {"$bytes": "AP9ieXRlcw=="},
            "html": {"$markup": "<b>bold</b>"},
            "uid": {"$uuid": "12345678-1234-5678-1234-567812345678"},
            "when": {"$datetime": "2026-11-21T10:00:00+00:00"},
            "nested": {" t": "a dict whose only key looks like a tag"},
            "items": [1.5, None, True, {"a": [{"$bytes": "eA=="}]}],
        }

    def test_naive_datetime_is_utc_and_whole_seconds(self) -> None:
        naive = dt.datetime(2026, 1, 2, 3, 4, 5, 678)
        data = flask_loads(flask_dumps({"d": naive}))
        assert data["d"] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)

    def test_unparseable_date_reads_as_none_like_werkzeug(self) -> None:
        assert flask_loads('{"d": {" d": "not a date"}}') == {"d": None}

    @pytest.mark.parametrize("value", [{1, 2}, dt.date(2026, 1, 1), {1: "int key"}, dt.timedelta(1)], ids=repr)
    def test_values_flask_cannot_hold_are_refused(self, value: t.Any) -> None:
        with pytest.raises(InvalidInput, match="cannot hold|string keys"):
            flask_dumps({"v": value})


class TestExtract:
    @pytest.mark.parametrize(
        "text",
        [
            "VALUE",
            "  VALUE\n",
            "session=VALUE",
            '"VALUE"',
            "Cookie: theme=dark; session=VALUE; other=1",
            "cookie:session=VALUE",
            "Set-Cookie: session=VALUE; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Path=/",
            "session=VALUE; HttpOnly; Path=/",
            "HTTP/1.1 302 FOUND\nLocation: /\nSet-Cookie: csrf=x; Path=/\nSet-Cookie: session=VALUE; Path=/",
        ],
    )
    def test_forms(self, text: str) -> None:
        assert extract_cookie(text) == "VALUE"

    def test_only_cookie_in_a_header_is_taken_whatever_its_name(self) -> None:
        assert extract_cookie("Cookie: flask=VALUE") == "VALUE"

    def test_named_cookie(self) -> None:
        assert extract_cookie("Cookie: a=1; sess=VALUE", "sess") == "VALUE"

    def test_missing_name_lists_what_is_there(self) -> None:
        with pytest.raises(InvalidInput, match=r"no cookie named 'session' \(found: a, b\)"):
            extract_cookie("Cookie: a=1; b=2")

    @pytest.mark.parametrize("text", ["", "   ", "\n"])
    def test_empty(self, text: str) -> None:
        with pytest.raises(InvalidInput, match="empty"):
            extract_cookie(text)


class TestDecode:
    def test_record_shape(self) -> None:
        record = decode_cookie(sign_cookie({"user_id": 42}, KEY, now=NOW), now=NOW).to_record()
        assert record == {
            "kind": "flask-cookie",
            "data": {"user_id": 42},
            "compressed": False,
            "issued_at": "2026-11-18T11:06:40+00:00",
            "verified": None,
            "key": None,
            "legacy": False,
        }

    def test_compressed(self) -> None:
        cookie = sign_cookie({"cart": ["item"] * 100}, KEY)
        assert cookie.startswith(".")
        result = decode_cookie(cookie, [KEY])
        assert result.cookie.compressed and result.verified and result.data == {"cart": ["item"] * 100}

    def test_current_and_fallback_keys(self) -> None:
        cookie = sign_cookie({"a": 1}, "old")
        assert decode_cookie(cookie, ["old"]).to_record()["key"] == "current"
        result = decode_cookie(cookie, ["new", "older", "old"])
        assert (result.verified, result.to_record()["key"]) == (True, "fallback 2")
        assert decode_cookie(cookie, ["new"]).verified is False

    def test_salt_and_digest(self) -> None:
        cookie = sign_cookie({"a": 1}, KEY, salt="my-salt", digest="sha256")
        assert decode_cookie(cookie, [KEY]).verified is False
        assert decode_cookie(cookie, [KEY], salt="my-salt").verified is False
        assert decode_cookie(cookie, [KEY], salt="my-salt", digest="sha256").verified is True

    def test_verification_agrees_with_itsdangerous(self) -> None:
        from itsdangerous import BadSignature, URLSafeTimedSerializer

        cookie = sign_cookie({"a": 1}, KEY, now=time.time())
        for keys in (["x", KEY], [KEY], ["x"]):
            serializer = URLSafeTimedSerializer(
                list(reversed(keys)),
                salt="cookie-session",
                signer_kwargs={"key_derivation": "hmac"},
            )
            try:
                serializer.loads(cookie)
                expected = True
            except BadSignature:
                expected = False
            assert decode_cookie(cookie, keys).verified is expected

    def test_legacy_timestamp_detected(self) -> None:
        cookie = sign_cookie({"a": 1}, KEY, legacy=True, now=NOW)
        result = decode_cookie(cookie, [KEY], now=NOW + 5)
        assert result.cookie.timestamp == int(NOW) - LEGACY_EPOCH
        record = result.to_record()
        assert record["legacy"] is True and record["verified"] is True
        assert record["issued_at"] == "2026-11-18T11:06:40+00:00"
        assert result.age == 5

    def test_max_age(self) -> None:
        cookie = sign_cookie({"a": 1}, KEY, now=NOW - 7200)
        fresh = decode_cookie(cookie, [KEY], max_age=3 * 3600, now=NOW)
        assert (fresh.verified, fresh.expired) == (True, False)
        old = decode_cookie(cookie, [KEY], max_age=3600, now=NOW)
        assert (old.verified, old.expired, old.key_index) == (False, True, 0)
        assert decode_cookie(cookie, max_age=3600, now=NOW).to_record()["expired"] is True
        future = decode_cookie(sign_cookie({}, KEY, now=NOW + 600), [KEY], max_age=3600, now=NOW)
        assert future.expired is True

    def test_signed_sid(self) -> None:
        from itsdangerous import Signer

        sid = "Xy3-q2sF0y0C1mM8o3b0dZ1oK3tL0nB9YwW9uJw7a2Q"
        value = Signer(KEY, salt="flask-session", key_derivation="hmac").sign(sid).decode()
        assert sign_sid(sid, KEY) == value
        record = decode_cookie(value, [KEY]).to_record()
        assert record == {
            "kind": "signed-sid", "sid": sid, "compressed": False, "issued_at": None,
            "verified": True, "key": "current", "legacy": False,
        }  # fmt: skip
        assert decode_cookie(value, ["other"]).verified is False
        with pytest.raises(InvalidInput, match="timestamp"):
            decode_cookie(value, max_age=60)


def _bomb(size: int) -> str:
    compressor = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    data = b"".join(compressor.compress(block) for _ in range(size >> 20)) + compressor.flush()
    return "." + b64(data) + ".ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln"


@pytest.fixture(scope="module")
def bomb_200mb() -> str:
    return _bomb(200 << 20)


class TestBadInput:
    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("", "empty"),
            ("eyJhIjoxfQ", "expected payload.timestamp.signature"),
            ("eyJhIjoxfQ.ZxYgAA", "truncated"),
            ("eyJhIjoxfQ.ZxYgAA.", "truncated"),
            ("eyJhIjoxfQ.ZxYgAA.c2ln", "too short"),
            ("a.b.c.d", "found 4 parts"),
            ("eyJhIjo!fQ.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", "unexpected character '!'"),
            ("eyJhI.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", "not valid base64"),
            ("eyJhIjoxfQ.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc", "not valid base64"),
            ("eyJhIjoxfQ.ZxYgAAZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", "malformed timestamp"),
            (".bm90IHpsaWI.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", "not valid zlib"),
            (
                "." + b64(zlib.compress(b'{"a": 1}')[:-3]) + ".ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln",
                "truncated",
            ),
            ("eyJhIjox.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln", "not Flask's tagged JSON"),
            ("x" * (MAX_COOKIE_LENGTH + 1), "at most 1,048,576"),
        ],
    )
    def test_malformed(self, value: str, message: str) -> None:
        with pytest.raises(InvalidInput, match=message):
            decode_cookie(value, [KEY])

    @pytest.mark.parametrize(
        "payload",
        [b"[1, 2]", b'"text"', b"42", b"null", b'{" t": [1]}'],
    )
    def test_json_that_is_not_an_object(self, payload: bytes) -> None:
        with pytest.raises(InvalidInput, match="not an object"):
            decode_cookie(forged(payload), [KEY])

    def test_invalid_utf8(self) -> None:
        with pytest.raises(InvalidInput, match="not UTF-8"):
            decode_cookie(forged(b'{"a": "\xff\xfe"}'), [KEY])

    @pytest.mark.parametrize(
        "payload",
        [b'{"a": {" b": 5}}', b'{"a": {" u": "nope"}}', b'{"a": {" di": []}}', b'{"a": {" t": 1}}'],
    )
    def test_malformed_tags(self, payload: bytes) -> None:
        with pytest.raises(InvalidInput):
            decode_cookie(forged(payload), [KEY])

    def test_deep_nesting(self) -> None:
        for depth in (900, 5000, 100_000):
            payload = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
            try:
                decode_cookie(forged(payload, compressed=True))
            except InvalidInput as e:
                assert "nested too deeply" in str(e)

    def test_zlib_bomb_refused_fast_with_bounded_memory(self, bomb_200mb: str) -> None:
        assert len(bomb_200mb) < MAX_COOKIE_LENGTH  # refused by the inflate bound, not the size
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(InvalidInput, match="expands to more than 1,048,576 bytes"):
                decode_cookie(bomb_200mb)
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert elapsed < 1.0
        assert peak < 8 << 20

    def test_payload_at_the_limit_still_decodes(self) -> None:
        data = {"a": "x" * ((1 << 20) - 20)}
        raw = json.dumps(data, separators=(",", ":")).encode()
        assert len(raw) <= 1 << 20
        assert decode_cookie(forged(raw, compressed=True)).data == data

    def test_signature_does_not_protect_against_a_bomb(self) -> None:
        # A correctly signed bomb (a key that leaked, or a hostile app) is refused too.
        cookie = _bomb(4 << 20).rsplit(".", 2)[0]
        stamp = b64(int(NOW).to_bytes(4, "big"))
        signed = f"{cookie}.{stamp}"
        value = f"{signed}.{cookies.signature_for(signed.encode(), KEY, 'cookie-session')}"
        with pytest.raises(InvalidInput, match="zlib bomb"):
            decode_cookie(value, [KEY])


# --- Property-based -------------------------------------------------------------------

_b64_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=40)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_tag_keys = st.sampled_from([" t", " b", " m", " u", " d", " di", "x", " d__"])
_tagged_json = st.recursive(
    _json_values,
    lambda inner: st.dictionaries(_tag_keys, inner, min_size=1, max_size=1) | st.lists(inner, max_size=3),
    max_leaves=8,
)


@st.composite
def cookie_like(draw: st.DrawFn) -> str:
    """Strings shaped like cookies, with payloads from random bytes to tag-laden JSON."""
    kind = draw(st.sampled_from(["json", "bytes", "text"]))
    if kind == "json":
        payload = json.dumps(draw(_tagged_json)).encode()
    elif kind == "bytes":
        payload = draw(st.binary(max_size=60))
    else:
        return draw(st.text(max_size=60))
    compressed = draw(st.booleans())
    body = b64(zlib.compress(payload) if compressed and draw(st.booleans()) else payload)
    parts = [("." if compressed else "") + body, draw(_b64_text), draw(_b64_text)]
    return ".".join(parts[: draw(st.integers(1, 3))])


@examples(300)
@given(value=cookie_like(), keys=st.lists(st.text(max_size=5), max_size=2))
def test_decode_fails_only_with_invalid_input(value: str, keys: list[str]) -> None:
    try:
        result = decode_cookie(value, keys)
    except InvalidInput:
        return
    json.dumps(result.to_record())  # whatever decodes can be printed


@examples(150)
@given(text=st.text(max_size=200), name=st.none() | st.text(min_size=1, max_size=5))
def test_extract_fails_only_with_invalid_input(text: str, name: str | None) -> None:
    try:
        value = extract_cookie(text, name)
    except InvalidInput:
        return
    try:
        decode_cookie(value)
    except InvalidInput:
        pass


_session_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=8) | st.uuids() | st.text(max_size=8).map(Markup)
    | st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=dt.timezone.utc)
    ),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4) | st.sampled_from([" t", " di"]), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip


@examples(150)
@given(data=st.dictionaries(st.text(max_size=6), _session_values, max_size=5))
def test_sign_then_decode_round_trips(data: dict[str, t.Any]) -> None:
    result = decode_cookie(sign_cookie(data, KEY), [KEY])
    assert result.verified is True
    assert result.data == data
    assert {type(v) for v in _walk(result.data)} == {type(v) for v in _walk(data)}


def _walk(value: t.Any) -> t.Iterator[t.Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)


def test_parse_cookie_signed_part() -> None:
    cookie = sign_cookie({"cart": ["x"] * 100}, KEY)
    parsed = parse_cookie(cookie)
    assert parsed.signed == cookie.rsplit(".", 1)[0].encode()
    assert parsed.signed.startswith(b".")
