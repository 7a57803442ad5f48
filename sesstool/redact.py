"""The one redaction routine: secrets never reach output or errors.

Two layers, because neither alone is enough:

- :func:`redact_url` masks what *looks* like a credential in any text: the password
  of every ``scheme://user:password@host`` (also in URLs that do not parse, such as
  ``redis://:pa/ss@host`` or an unclosed IPv6 bracket) and the value of query
  parameters named like a secret (``?password=``, ``sentinel_password=``, ...).
- :func:`redact` also masks every secret this run was given (``--secret-key``,
  ``--secret-key-file`` contents, the app's ``SECRET_KEY``, a URL's password), in
  whatever form a message happens to quote it. Those are registered with
  :func:`remember` when they are read, and the CLI's printer passes every line it
  writes to stderr through :func:`redact`.

The registry is per process (the CLI clears it at the start of a run): a secret is
a fact about this invocation, and the error printer has no other way to learn the
secrets that library code read (a key file, an app's config).
"""

from __future__ import annotations

import contextlib
import re
import typing as t
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

#: Secrets shorter than this are masked only where they sit in a URL: masking every
#: "a" in a message for a one-letter password would make errors unreadable, and a
#: key that short is no secret anyway.
MIN_MASKED_LENGTH = 4

# scheme://userinfo@ — userinfo runs to the *last* "@" before the end of the token,
# since a password may hold "/", ":", "@" or "[" unescaped (a URL that then does not
# parse is exactly where an error message would echo it).
# The scheme may be missing or malformed ("://u:pw@h"): still a password.
_URL_USERINFO = re.compile(r"(?P<scheme>(?:[A-Za-z0-9+.\-]*)://)(?P<userinfo>[^\s'\"]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][^=&\s'\"]*(?:pass|pwd|secret|token|auth|credential)[^=&\s'\"]*=)(?P<value>[^&\s'\"]*)",
    re.IGNORECASE,
)

_known: set[str] = set()


def remember(secret: str | bytes | None) -> None:
    """Register a secret of this run so :func:`redact` masks it everywhere."""
    if secret is None:
        return
    if isinstance(secret, bytes):
        text = secret.decode("utf-8", "backslashreplace")
        _known.add(repr(secret)[2:-1])  # how a bytes key would be quoted in a message
    else:
        text = secret
    # As typed, as a URL or a message may quote it (percent-encoded, or repr-escaped).
    for form in (text, quote(text, safe=""), unquote(text), repr(text)[1:-1]):
        if len(form) >= MIN_MASKED_LENGTH:
            _known.add(form)


def forget_all() -> None:
    """Drop every registered secret (a new run starts)."""
    _known.clear()


def url_userinfo(url: str) -> str | None:
    """The ``user:password`` part of a URL as written, also for a URL that does not parse."""
    match = _URL_USERINFO.search(url)
    return None if match is None else match.group("userinfo")


def url_password(url: str) -> str | None:
    """The password part of a URL's userinfo, also for a URL that does not parse."""
    userinfo = url_userinfo(url)
    if userinfo is None:
        return None
    user, colon, password = userinfo.partition(":")
    return unquote(password) if colon and password else None


def _password_candidates(url: str) -> set[str]:
    """Every string a parser might take for the password of ``url``.

    A password may hold what ends it for one parser and not another (a space, "@",
    "/", "://"), so each reading is registered: extra ones only mask more.
    """
    found = set()
    _, sep, rest = url.partition("://")
    if sep:
        for end in (rest.find("@"), rest.rfind("@")):
            if end > 0:
                userinfo = rest[:end]
                _, colon, password = userinfo.partition(":")
                if colon and password:
                    found.add(password)
    lenient = url_password(url)
    if lenient is not None:
        found.add(lenient)
    with contextlib.suppress(ValueError):
        parsed = urlsplit(url).password
        if parsed:
            found.add(parsed)
    return found


def remember_url(url: str | None) -> None:
    """Register the password of a store URL (and its secret query parameters)."""
    if not url:
        return
    for password in _password_candidates(url):
        remember(password)
        remember(unquote(password))
    for match in _SECRET_PARAM.finditer(url):
        remember(unquote(match.group("value")) or None)


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    return match.group("scheme") + (f"{user}:{MASK}" if colon else user) + "@"


def redact_url(text: str) -> str:
    """``text`` with URL passwords and secret query parameters replaced by ``***``."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, text)


def redact(text: str, extra: t.Iterable[str] = ()) -> str:
    """``text`` with every registered secret (and ``extra``) and every URL password masked."""
    secrets = sorted({*_known, *(s for s in extra if len(s) >= MIN_MASKED_LENGTH)}, key=len, reverse=True)
    # Longest first: a key that contains another is masked whole. Again until none is
    # left, as a mask can join its neighbours into a secret ("x***" in "xx***..."):
    # each pass shortens the text, so this ends.
    changed = True
    while changed:
        changed = False
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
                changed = True
    return redact_url(text)
