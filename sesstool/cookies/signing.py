"""HMAC signatures as itsdangerous's ``Signer`` makes them (hmac key derivation),
for Flask cookies and Flask-Session signed ids: which key of several verifies one,
and the names of digests HMAC can use.

itsdangerous is imported only when a key is used.
"""

from __future__ import annotations

import typing as t

from sesstool.errors import InvalidInput

if t.TYPE_CHECKING:
    from sesstool.cookies.format import SignedCookie

DEFAULT_DIGEST = "sha1"  #: Flask's

_COMMON_DIGESTS = frozenset({"sha1", "sha224", "sha256", "sha384", "sha512", "md5"})


def digest_name(name: str) -> str:
    """A hashlib digest name usable with HMAC (``sha1``, ``sha256``, ``SHA-256``, ...).

    :raises InvalidInput: when HMAC cannot use it.
    """
    base = name.strip().lower()
    if base in _COMMON_DIGESTS:
        return base
    import hmac

    for candidate in dict.fromkeys((base, base.replace("-", "_"), base.replace("-", ""))):
        try:
            hmac.digest(b"k", b"m", candidate)
        except (ValueError, TypeError):
            continue
        return candidate
    raise InvalidInput(f"unknown digest {name!r}: use sha1 (Flask's), sha256, sha512, md5, ...")


def _digest_method(name: str) -> t.Callable[..., t.Any]:
    import functools
    import hashlib

    constructor = getattr(hashlib, name, None)  # OpenSSL's, for HMAC's fast path
    return constructor if callable(constructor) else functools.partial(hashlib.new, name)


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def signature_for(signed: bytes, key: str | bytes, salt: str, digest: str = DEFAULT_DIGEST) -> str:
    """The base64 signature itsdangerous's ``Signer`` (hmac derivation) gives ``signed``."""
    from itsdangerous import Signer

    signer = Signer(_key_bytes(key), salt=salt, key_derivation="hmac", digest_method=_digest_method(digest))
    return signer.get_signature(signed).decode("ascii")


def find_key(
    cookie: SignedCookie, keys: t.Sequence[str | bytes], salt: str, digest: str = DEFAULT_DIGEST
) -> int | None:
    """The index in ``keys`` of the first key whose signature matches, else None."""
    from itsdangerous import Signer

    method = _digest_method(digest)
    signed, signature = cookie.signed, cookie.signature.encode("ascii")
    for index, key in enumerate(keys):
        signer = Signer(_key_bytes(key), salt=salt, key_derivation="hmac", digest_method=method)
        if signer.verify_signature(signed, signature):
            return index
    return None


def key_label(index: int | None) -> str | None:
    """``current`` for the first key, ``fallback N`` for the others (never the key)."""
    if index is None:
        return None
    return "current" if index == 0 else f"fallback {index}"
