"""``doctor --cookie``: why is this browser's session lost?

Follows the cookie the way Flask-Session 0.8 does: which key verifies a signed id
(Flask-Session verifies with the current key only), the session id and the store
key it names, whether that key exists, its TTL, whether its value decodes, and,
when it is missing, whether it sits under another prefix or in another database.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sesstool.deadline import DeadlineExceeded
from sesstool.durations import format_duration
from sesstool.errors import InvalidInput, StoreError
from sesstool.ops.discovery import other_database_urls, survey
from sesstool.ops.doctor import FAIL, OK, WARN, Report
from sesstool.ops.records import UNKNOWN, decode_item
from sesstool.redact import redact_url
from sesstool.stores.base import STRING, Capability, Store

_StoreErrors = (StoreError, DeadlineExceeded)


@dataclass
class CookieContext:
    """What the trace needs besides the store."""

    prefix: str
    serializer: str
    secret_keys: t.Sequence[str | bytes]
    cookie_name: str | None
    store_url: str
    #: ``SESSION_USE_SIGNER`` from ``--app``; None: guessed from the cookie's shape.
    use_signer: bool | None = None
    #: Opens another store URL (another Redis database); None: do not look there.
    open_other: t.Callable[[str], Store] | None = None


def session_id(report: Report, text: str, ctx: CookieContext) -> str | None:
    """The session id the cookie names, with the ``cookie.signature`` check; None when
    the cookie names no server-side session at all."""
    from sesstool.cookies.format import FLASK_COOKIE, SID_SALT, extract_cookie, find_key, key_label, parse_cookie

    value = extract_cookie(text, ctx.cookie_name)
    if value.count(".") >= 2:
        kind = parse_cookie(value).kind
        if kind == FLASK_COOKIE:
            report.add("cookie.kind", FAIL, "this is a Flask cookie session (the data is in the cookie), not a "
                       "Flask-Session id: the app's session interface is Flask's own, or the cookie is from another "
                       "app; `sesstool decode` shows it")
            return None
    signed = "." in value if ctx.use_signer is None else ctx.use_signer
    if not signed:
        if "." in value:
            report.add("cookie.signature", WARN, "the cookie looks signed but the app does not sign ids "
                       "(SESSION_USE_SIGNER off): it looks the whole value up as the id")
        return value
    if "." not in value:
        report.add("cookie.signature", FAIL, "the app signs ids (SESSION_USE_SIGNER) but this cookie has no "
                   "signature: the app rejects it and starts a new session")
        return value
    try:
        cookie = parse_cookie(value)
    except InvalidInput as e:
        report.add("cookie.signature", FAIL, f"the signed id does not parse ({e}): the app starts a new session")
        return None
    sid = cookie.body
    if not ctx.secret_keys:
        report.add("cookie.signature", WARN, "cannot verify the signature: give --secret-key or --app")
        return sid
    index = find_key(cookie, ctx.secret_keys, SID_SALT)
    if index == 0:
        report.add("cookie.signature", OK, "signed with the current SECRET_KEY")
    elif index is not None:
        report.add("cookie.signature", FAIL, f"only {key_label(index)} verifies it: Flask-Session checks signed "
                   "ids with the current key only, so this session is lost (the app starts a new one); "
                   f"`sesstool sign --sid {sid}` prints the cookie the current key signs")
    else:
        report.add("cookie.signature", FAIL, "no key verifies it: the app starts a new session (SECRET_KEY "
                   "changed, or the cookie is from another deployment)")
    return sid


def trace_cookie(report: Report, store: Store, text: str, ctx: CookieContext) -> None:
    """Add the ``cookie.*`` checks for the cookie ``text``."""
    sid = session_id(report, text, ctx)
    if sid is None:
        return
    key = ctx.prefix + sid
    report.add("cookie.sid", OK, f"names session id {sid!r}, store key {key!r}")
    try:
        item = store.get(key.encode("utf-8", "surrogateescape"))
    except _StoreErrors as e:
        report.add("cookie.key", FAIL, f"cannot read {key!r}: {e}")
        return
    if item is None:
        where, searched = find_elsewhere(store, sid, ctx)
        if where:
            report.add("cookie.key", FAIL, f"no key {key!r} in {store.describe()}, but the session is "
                       f"{where}: the app and sesstool look in different places; align SESSION_KEY_PREFIX / "
                       "the store URL (--prefix, --store) with where the app writes")
        else:
            report.add("cookie.key", FAIL, f"no key {key!r} in {store.describe()}, nor elsewhere ({searched}): "
                       "the session expired or was deleted (logout, purge, eviction); the user must log in again")
        return
    if item.kind != STRING:
        report.add("cookie.key", FAIL, f"{key!r} holds a Redis {item.kind}, not a session value")
        return
    report.add("cookie.key", OK, f"{key!r} exists ({item.size:,} bytes)")
    if item.ttl is None:
        report.add("cookie.ttl", WARN, "the session never expires: Flask-Session always sets a TTL, so "
                   "something else wrote or persisted it")
    else:
        report.add("cookie.ttl", OK, f"expires in {format_duration(item.ttl)} ({item.ttl:,} s)")
    decoded = decode_item(item, ctx.serializer)
    if decoded.serializer == UNKNOWN or decoded.data is None:
        report.add("cookie.decode", FAIL, "the value cannot be decoded: Flask-Session fails to load it and "
                   "starts a new session; `sesstool show --raw` shows the bytes")
    else:
        report.add("cookie.decode", OK, f"decodes as {decoded.serializer} ({len(decoded.data)} fields)")


def find_elsewhere(store: Store, sid: str, ctx: CookieContext) -> tuple[str | None, str]:
    """Where the session ``sid`` is, when not under the prefix: another prefix of this
    database, or (plain ``redis://`` URLs) another database of the server; and, for
    the message, what was searched."""
    if not store.supports(Capability.ENUMERABLE_IDS):
        return None, "this store's keys hide the session ids, so no other prefix can be searched"
    try:
        keyspace = survey(store, find_sid=sid)
    except _StoreErrors:
        return None, "the keyspace could not be listed"
    searched = f"{keyspace.listed:,} keys of this database listed" + ("" if keyspace.complete else ", stopped there")
    expected = ctx.prefix + sid
    found = [key for key in keyspace.found if key != expected]
    if found:
        return f"under {found[0]!r} in this database", searched
    open_other = ctx.open_other
    urls = other_database_urls(ctx.store_url) if open_other is not None else []
    if open_other is None or not urls:
        return None, searched + "; other databases not searched (only for plain redis:// URLs)"
    prefixes = list(dict.fromkeys([ctx.prefix, *(p.prefix for p in keyspace.prefixes)]))[:10]
    searched += f"; the server's {len(urls)} other databases"
    for url in urls:
        try:
            other = open_other(url)
        except (*_StoreErrors, InvalidInput):
            continue
        try:
            items = other.fetch([(p + sid).encode("utf-8", "surrogateescape") for p in prefixes])
        except _StoreErrors:
            continue  # a server with fewer databases refuses the higher ones
        finally:
            other.close()
        for item in items:
            if item.kind == STRING and item.value is not None:
                return f"{item.key.decode('utf-8', 'backslashreplace')!r} in {redact_url(url)}", searched
    return None, searched
