"""Flask's signed cookie sessions and Flask-Session's signed session ids.

A Flask cookie session is ``payload.timestamp.signature`` (``.payload...`` when the
payload is zlib-compressed), made by itsdangerous's ``URLSafeTimedSerializer`` with
salt ``cookie-session``, hmac key derivation, sha1 and Flask's tagged JSON. A
Flask-Session signed id is ``sid.signature`` (salt ``flask-session``, no timestamp).

This module reads and writes both without importing Flask. It follows itsdangerous
for the signature rules (itsdangerous is imported only when a key is used), but
decompresses with a size limit, since itsdangerous's ``zlib.decompress`` has none
and a cookie of a few hundred kilobytes could otherwise expand to gigabytes.

Timestamps: itsdangerous 1.0 and later count seconds since 1970; older versions
counted from 2011-01-01 (``LEGACY_EPOCH``). A timestamp that would fall before 2011
is such a legacy one, and :func:`decode_cookie` reads it as one.

Split by concern: Flask's tagged JSON is :mod:`sesstool.cookies.flaskjson`, HMAC signatures
:mod:`sesstool.cookies.signing`, the ``decode --url`` fetch :mod:`sesstool.cookies.fetch`; the
names other modules use are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import time
import typing as t
import zlib
from dataclasses import dataclass

from sesstool.codecs import compression
from sesstool.codecs.tagged import to_tagged
from sesstool.cookies.flaskjson import FLASK_TAGS as FLASK_TAGS
from sesstool.cookies.flaskjson import flask_dumps as flask_dumps
from sesstool.cookies.flaskjson import flask_loads as flask_loads
from sesstool.cookies.flaskjson import flask_tag as flask_tag
from sesstool.cookies.flaskjson import http_date as http_date
from sesstool.cookies.signing import DEFAULT_DIGEST as DEFAULT_DIGEST
from sesstool.cookies.signing import digest_name as digest_name
from sesstool.cookies.signing import find_key as find_key
from sesstool.cookies.signing import key_label as key_label
from sesstool.cookies.signing import signature_for as signature_for
from sesstool.errors import InvalidInput, UndecodableValue

DEFAULT_SALT = "cookie-session"  #: Flask's SecureCookieSessionInterface.salt
SID_SALT = "flask-session"  #: Flask-Session's signer salt for session ids
DEFAULT_COOKIE_NAME = "session"
LEGACY_EPOCH = 1293840000  #: itsdangerous < 1.0 counted seconds from 2011-01-01
MAX_COOKIE_LENGTH = 1 << 20  #: longest cookie value accepted (browsers keep 4 KiB)
MAX_PAYLOAD_SIZE = 1 << 20  #: most bytes a payload may decompress to

FLASK_COOKIE = "flask-cookie"
SIGNED_SID = "signed-sid"

_VALUE = re.compile(r"[A-Za-z0-9_.\-]+")
_B64 = re.compile(r"[A-Za-z0-9_\-]*")
_HEADER = re.compile(r"\s*(set-cookie|cookie)\s*:\s*", re.IGNORECASE)
_ATTRIBUTES = frozenset({"path", "domain", "expires", "max-age", "samesite", "secure", "httponly", "partitioned"})


# --- Cookie text ----------------------------------------------------------------------


def extract_cookie(text: str, cookie_name: str | None = None) -> str:
    """The cookie value in ``text``: a bare value, ``name=value``, or header lines.

    Accepts ``Cookie: a=1; session=...``, ``Set-Cookie: session=...; HttpOnly``,
    ``session=...`` and several header lines (a pasted response), picking the
    cookie named ``cookie_name`` (default ``session``, or the only one there is).

    :raises InvalidInput: when it is empty or names no such cookie.
    """
    text = text.strip()
    if not text:
        raise InvalidInput("empty cookie")
    lines = [line for line in text.splitlines() if line.strip()]
    headers = [(m, line) for line in lines if (m := _HEADER.match(line))]
    pairs: list[tuple[str, str]] = []
    if headers:
        for match, line in headers:
            rest = line[match.end() :]
            parts = [rest.split(";", 1)[0]] if match.group(1).lower() == "set-cookie" else rest.split(";")
            pairs.extend(_pairs(parts))
    elif len(lines) > 1:
        raise InvalidInput("several lines and no Cookie: or Set-Cookie: header among them")
    elif "=" in text:
        pairs = [p for p in _pairs(text.split(";")) if p[0].lower() not in _ATTRIBUTES]
    else:
        return _unquote(text)
    return _unquote(_pick(pairs, cookie_name))


def _pairs(parts: t.Iterable[str]) -> list[tuple[str, str]]:
    found = []
    for part in parts:
        name, sep, value = part.partition("=")
        if sep:
            found.append((name.strip(), value.strip()))
    return found


def _pick(pairs: list[tuple[str, str]], cookie_name: str | None) -> str:
    wanted = cookie_name or DEFAULT_COOKIE_NAME
    for name, value in reversed(pairs):  # the last Set-Cookie wins, as in a browser
        if name == wanted:
            return value
    names = list(dict.fromkeys(name for name, _ in pairs))
    if cookie_name is None and len(names) == 1:
        return pairs[-1][1]
    listed = ", ".join(names[:10]) or "none"
    raise InvalidInput(f"no cookie named {wanted!r} (found: {listed}); name it with --cookie-name")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _b64decode(text: str, what: str) -> bytes:
    """itsdangerous's URL-safe base64 without padding, strictly."""
    if not _B64.fullmatch(text):
        raise InvalidInput(f"{what} is not URL-safe base64")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{what} is not valid base64 ({e})") from e


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass(frozen=True)
class SignedCookie:
    """A cookie value split into its parts; nothing decoded or verified yet."""

    kind: str  #: ``flask-cookie`` or ``signed-sid``
    value: str  #: the whole cookie value
    body: str  #: the base64 payload (flask-cookie) or the session id (signed-sid)
    compressed: bool
    timestamp: int | None  #: as written: seconds since 1970, or since 2011 when legacy
    signature: str  #: base64, as in the cookie

    @property
    def signed(self) -> bytes:
        """The bytes the signature covers: everything before the last ``.``."""
        return self.value[: self.value.rindex(".")].encode("ascii")

    @property
    def legacy(self) -> bool:
        """Whether the timestamp counts from 2011 (itsdangerous before 1.0)."""
        return self.timestamp is not None and self.timestamp < LEGACY_EPOCH

    @property
    def issued_at(self) -> dt.datetime | None:
        if self.timestamp is None:
            return None
        seconds = self.timestamp + (LEGACY_EPOCH if self.legacy else 0)
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)

    @property
    def default_salt(self) -> str:
        return DEFAULT_SALT if self.kind == FLASK_COOKIE else SID_SALT


def parse_cookie(value: str) -> SignedCookie:
    """Split a cookie value into payload, timestamp and signature (or sid and signature).

    :raises InvalidInput: when it has neither shape.
    """
    if len(value) > MAX_COOKIE_LENGTH:
        raise InvalidInput(
            f"cookie is {len(value):,} characters; sesstool reads at most {MAX_COOKIE_LENGTH:,} (browsers keep 4,096)"
        )
    if not value:
        raise InvalidInput("empty cookie")
    if not _VALUE.fullmatch(value):
        bad = next(ch for ch in value if not _VALUE.fullmatch(ch))
        raise InvalidInput(f"not a Flask session cookie: unexpected character {bad!r}")
    compressed = value.startswith(".")
    parts = (value[1:] if compressed else value).split(".")
    if any(not part for part in parts):
        raise InvalidInput("not a Flask session cookie: empty part between dots (truncated?)")
    if len(parts) == 3:
        body, stamp, signature = parts
        raw = _b64decode(stamp, "timestamp")
        if not 0 < len(raw) <= 8:
            raise InvalidInput("malformed timestamp")
        _signature_bytes(signature)
        return SignedCookie(FLASK_COOKIE, value, body, compressed, int.from_bytes(raw, "big"), signature)
    if len(parts) == 2 and not compressed:
        body, signature = parts
        if len(signature) <= 8 and _looks_like_payload(body):
            raise InvalidInput("Flask cookie without its signature (truncated?)")
        _signature_bytes(signature)
        return SignedCookie(SIGNED_SID, value, body, False, None, signature)
    raise InvalidInput(
        "not a Flask session cookie: expected payload.timestamp.signature "
        f"or sid.signature, found {len(parts)} part{'s' if len(parts) != 1 else ''}"
    )


def _signature_bytes(signature: str) -> bytes:
    raw = _b64decode(signature, "signature")
    if len(raw) < 16:  # md5, the shortest digest HMAC is used with, has 16 bytes
        raise InvalidInput(f"signature is {len(raw)} bytes, too short for an HMAC (truncated?)")
    return raw


def _looks_like_payload(body: str) -> bool:
    try:
        return _b64decode(body[:8], "payload").startswith(b"{")
    except InvalidInput:
        return False


def load_payload(cookie: SignedCookie) -> dict[str, t.Any]:
    """The session data of a flask-cookie: base64, bounded inflate, UTF-8, tagged JSON.

    :raises InvalidInput: for anything malformed, and for a payload that would
        decompress to more than :data:`MAX_PAYLOAD_SIZE` bytes.
    """
    raw = _b64decode(cookie.body, "payload")
    if cookie.compressed:
        raw = inflate(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"payload is not UTF-8 text ({e.reason} at byte {e.start})") from e
    return flask_loads(text)


def inflate(raw: bytes, limit: int = MAX_PAYLOAD_SIZE) -> bytes:
    """zlib-decompress at most ``limit`` bytes, in time and memory bounded by ``limit``.

    :raises InvalidInput: for bad zlib data, or data that expands past ``limit``.
    """
    try:
        return compression.inflate(raw, limit)
    except compression.InflateError as e:
        raise InvalidInput(f"compressed payload {e}") from e


# --- Decode and sign ------------------------------------------------------------------


@dataclass
class DecodedCookie:
    """What a cookie says, and whether a key vouches for it."""

    cookie: SignedCookie
    data: dict[str, t.Any] | None  #: session data (flask-cookie); None for a signed sid
    tagged: t.Any  #: ``data`` in sesstool's tagged JSON form
    verified: bool | None  #: None when no key was given
    key_index: int | None = None  #: which key verified: 0 current, 1.. fallbacks
    expired: bool | None = None  #: with ``max_age``: older than that (or from the future)
    age: int | None = None  #: seconds since it was signed, when it has a timestamp

    def to_record(self) -> dict[str, t.Any]:
        """The contract's ``decode --format json`` record, values in the tagged form."""
        cookie = self.cookie
        issued = cookie.issued_at
        record: dict[str, t.Any] = {"kind": cookie.kind}
        if cookie.kind == FLASK_COOKIE:
            record["data"] = self.tagged
        else:
            record["sid"] = cookie.body
        record["compressed"] = cookie.compressed
        record["issued_at"] = issued.isoformat() if issued else None
        record["verified"] = self.verified
        record["key"] = key_label(self.key_index)
        record["legacy"] = cookie.legacy
        if self.expired is not None:
            record["expired"] = self.expired
        return record


def decode_cookie(
    value: str,
    keys: t.Sequence[str | bytes] = (),
    *,
    salt: str | None = None,
    digest: str = DEFAULT_DIGEST,
    max_age: int | None = None,
    now: float | None = None,
) -> DecodedCookie:
    """Decode a Flask session cookie or a Flask-Session signed id, verifying it with ``keys``.

    :param keys: the current key first, then fallbacks (``SECRET_KEY_FALLBACKS``).
    :param salt: default ``cookie-session`` for cookies, ``flask-session`` for ids.
    :param max_age: seconds; an older signature (or one from the future) is
        ``expired`` and not ``verified``, as Flask would treat it.
    :raises InvalidInput: for a malformed cookie; never anything else for bad input.
    """
    cookie = parse_cookie(value)
    try:
        issued = cookie.issued_at
    except (OverflowError, ValueError, OSError) as e:
        raise InvalidInput(f"timestamp out of range ({e})") from e
    data = load_payload(cookie) if cookie.kind == FLASK_COOKIE else None
    try:
        tagged = to_tagged(data)
    except (RecursionError, UndecodableValue) as e:
        raise InvalidInput("payload is nested too deeply") from e
    result = DecodedCookie(cookie, data, tagged, None)
    if issued is not None:
        result.age = int((time.time() if now is None else now) - issued.timestamp())
    if max_age is not None:
        if cookie.timestamp is None:
            raise InvalidInput("--max-age needs a cookie with a timestamp; a signed session id has none")
        assert result.age is not None
        result.expired = result.age > max_age or result.age < 0
    if keys:
        result.key_index = find_key(cookie, keys, salt or cookie.default_salt, digest)
        result.verified = result.key_index is not None and not result.expired
    return result


def sign_cookie(
    data: dict[str, t.Any],
    key: str | bytes,
    *,
    salt: str = DEFAULT_SALT,
    digest: str = DEFAULT_DIGEST,
    legacy: bool = False,
    now: float | None = None,
) -> str:
    """A Flask session cookie for ``data``, as Flask's ``save_session`` would write it.

    Compressed when that is shorter (as itsdangerous decides); ``legacy`` writes the
    timestamp of itsdangerous < 1.0 (seconds since 2011), for apps that old.
    """
    payload = flask_dumps(data)
    compressed = zlib.compress(payload)
    if len(compressed) < len(payload) - 1:
        body = b"." + _b64encode(compressed)
    else:
        body = _b64encode(payload)
    stamp = int(time.time() if now is None else now) - (LEGACY_EPOCH if legacy else 0)
    signed = body + b"." + _b64encode(stamp.to_bytes((stamp.bit_length() + 7) // 8 or 1, "big"))
    return f"{signed.decode('ascii')}.{signature_for(signed, key, salt, digest)}"


def sign_sid(sid: str, key: str | bytes, *, salt: str = SID_SALT, digest: str = DEFAULT_DIGEST) -> str:
    """A Flask-Session signed session id (``USE_SIGNER``): ``sid.signature``."""
    return f"{sid}.{signature_for(sid.encode('utf-8'), key, salt, digest)}"
