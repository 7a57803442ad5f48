"""``decode --url``: the session cookie a running app sets, fetched over HTTP.

The server is untrusted: the fetch runs under the ``--timeout`` deadline (a server
that answers one byte at a time cannot hold it), a malformed response is an error
line, and no credential in the URL is ever echoed.
"""

from __future__ import annotations

import typing as t

from sesstool.cookies.format import DEFAULT_COOKIE_NAME, _pairs, _unquote
from sesstool.deadline import DEFAULT_TIMEOUT, deadline
from sesstool.errors import InvalidInput, NotFound, StoreError
from sesstool.redact import redact_url

#: Longest single socket wait; the deadline bounds the whole fetch.
SOCKET_TIMEOUT = 10.0

def fetch_cookie(url: str, cookie_name: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The value of the session cookie that ``url`` sets (its ``Set-Cookie``, no redirects).

    :param timeout: seconds the whole fetch may take (connect, status line, headers).
    :raises InvalidInput: for a URL that is not http(s).
    :raises StoreError: when the app cannot be reached or answers with something
        that is not HTTP.
    :raises NotFound: when the response sets no such cookie.
    :raises DeadlineExceeded: past ``timeout``.
    """
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from sesstool import __version__

    try:
        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no credentials
        host = parts.hostname
    except ValueError as e:
        raise InvalidInput(f"--url {redact_url(url)!r} is not a valid URL ({e})") from e
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidInput(f"--url needs an http:// or https:// URL, not {shown!r}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
            return None  # the Set-Cookie of a redirect is what we want

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"User-Agent": f"sesstool/{__version__}"})
    try:
        with deadline(timeout, shown), opener.open(request, timeout=min(timeout, SOCKET_TIMEOUT)) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as e:  # 3xx, 4xx and 5xx still set cookies
        status, headers = e.code, e.headers
        e.close()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise StoreError(f"cannot fetch {shown}: {reason}") from e
    except http.client.HTTPException as e:  # a bad status line, too many headers, ...
        raise StoreError(f"{shown} did not answer with valid HTTP: {type(e).__name__} {e}") from e
    set_cookies = headers.get_all("Set-Cookie") or []
    wanted = cookie_name or DEFAULT_COOKIE_NAME
    pairs = _pairs(line.split(";", 1)[0] for line in set_cookies)
    for name, value in reversed(pairs):
        if name == wanted:
            return _unquote(value)
    found = ", ".join(dict.fromkeys(name for name, _ in pairs)) or "none"
    raise NotFound(f"{shown} (HTTP {status}) set no cookie named {wanted!r} (it set: {found})")
