"""Turn what a user typed for SID into the session id and its store key.

Accepted: a bare session id (the prefix is added), a full key that already starts
with the prefix, or a signed ``sid.signature`` cookie value as Flask-Session's
``SESSION_USE_SIGNER`` writes it (itsdangerous ``Signer``, salt ``flask-session``,
hmac key derivation), verified with the secret keys.
"""

from __future__ import annotations

import re
import typing as t

from sesstool.errors import InvalidInput, NoKey, SignatureInvalid

# token_urlsafe ids and uuid4 ids, then "." and a base64url signature (27 chars for sha1).
_SIGNED = re.compile(r"(?P<sid>[A-Za-z0-9_-][A-Za-z0-9_-]*)\.(?P<sig>[A-Za-z0-9_-]{20,})")


class SessionRef(t.NamedTuple):
    sid: str
    key: bytes
    signed: bool = False


def unsign_sid(value: str, secret_keys: t.Sequence[str | bytes]) -> str:
    """The session id inside a signed ``sid.signature`` value.

    :raises NoKey: when no secret key is known.
    :raises SignatureInvalid: when no key verifies the signature.
    """
    if not secret_keys:
        raise NoKey(
            f"{value[:12]}... looks like a signed session id: give --secret-key "
            "(or SESSTOOL_SECRET_KEY / --app) to verify it"
        )
    from sesstool.cookies.format import SID_SALT, find_key, parse_cookie

    cookie = parse_cookie(value)
    if find_key(cookie, secret_keys, SID_SALT) is None:
        raise SignatureInvalid("the signature of the session id does not verify with any given key")
    return cookie.body


def resolve_sid(
    text: str, prefix: str, secret_keys: t.Sequence[str | bytes] = (), cookie_name: str | None = None
) -> SessionRef:
    """Resolve a SID argument to a :class:`SessionRef`.

    Besides ids, keys and signed ids, this takes what a browser holds: ``session=...``
    or a pasted ``Cookie:`` / ``Set-Cookie:`` header line.

    :raises InvalidInput: for an empty id, or a Flask cookie session (which holds
        the data itself, not an id).
    """
    from sesstool.cookies.format import extract_cookie

    value = text.strip()
    if not value:
        raise InvalidInput("empty session id")
    if prefix and value.startswith(prefix):
        sid = value[len(prefix) :]
        if not sid:
            raise InvalidInput("empty session id")
        return SessionRef(sid, value.encode("utf-8", "surrogateescape"))
    value = extract_cookie(value, cookie_name)
    if value.count(".") >= 2:
        raise InvalidInput(
            "this is a Flask cookie session, not a session id: the cookie holds the data "
            "itself (sesstool decode COOKIE shows it)"
        )
    if _SIGNED.fullmatch(value):
        sid = unsign_sid(value, secret_keys)
        return SessionRef(sid, (prefix + sid).encode("utf-8", "surrogateescape"), signed=True)
    return SessionRef(value, (prefix + value).encode("utf-8", "surrogateescape"))
