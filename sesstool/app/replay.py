"""Ask the app itself what it sees for a cookie: run its session interface.

:func:`replay` builds a request for a path carrying the cookie and pushes its
request context, so Flask calls ``app.session_interface.open_session`` exactly as
it does for a real request. With changes it applies them to that session and calls
``save_session`` on a real response, as Flask does after a view: the store changes
the way the app itself changes it, and the ``Set-Cookie`` header is the app's own.

Only the public session-interface API is used, so Flask-Session's interfaces,
Flask's signed cookie sessions and any custom :class:`flask.sessions.SessionInterface`
work alike. Why a session is new is worked out beside the interface: no cookie, a
signature that does not verify with the app's key, or an id the store does not hold.
"""

from __future__ import annotations

import contextlib
import typing as t
from dataclasses import dataclass, field

from sesstool.codecs.tagged import contains_opaque, to_tagged
from sesstool.errors import InvalidInput, NoKey, SignatureInvalid, StoreError, UndecodableValue
from sesstool.ops.edits import Change, apply_change

NO_COOKIE = "no cookie"
UNKNOWN_ID = "unknown id"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
INTERFACE_SAYS_NEW = "new"

@dataclass
class ReplayResult:
    """What the app did with the request.

    :param reason: why the session is new (:data:`NO_COOKIE`, :data:`UNKNOWN_ID`,
        :data:`BAD_SIGNATURE`, :data:`EXPIRED`, :data:`INTERFACE_SAYS_NEW`), ``None``
        for an existing session.
    :param set_cookie: the session's ``Set-Cookie`` header from ``save_session``.
    :param headers: every header ``save_session`` put on the response.
    """

    interface: str
    sid: str | None
    new: bool
    reason: str | None
    data: dict[t.Any, t.Any]
    cookie_name: str
    cookie: str | None
    change: Change = field(default_factory=Change)
    saved: bool = False
    set_cookie: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    store_key: str | None = None

    def record(self) -> dict[str, t.Any]:
        """The contract's ``replay --format json`` shape."""
        return {
            "interface": self.interface,
            "sid": self.sid,
            "new": self.new,
            "data": to_tagged(self.data),
            "set_cookie": self.set_cookie,
        }


def cookie_header(value: str, cookie_name: str) -> str:
    """The ``Cookie`` header for what the user gave: a bare value, ``name=value``
    pairs, or a whole ``Cookie:`` header.

    Session cookie values (ids, signed ids, Flask cookies) never hold ``=``, so a
    ``=`` means the user gave pairs.
    """
    text = value.strip()
    if text.lower().startswith("cookie:"):
        return text.split(":", 1)[1].strip()
    if "=" in text:
        return text
    return f"{cookie_name}={text}"


def replay(
    app: t.Any,
    *,
    cookie: str | None = None,
    path: str = "/",
    change: Change | None = None,
    dry_run: bool = False,
) -> ReplayResult:
    """Open the session the app would open for ``cookie`` on ``path``; apply
    ``change`` and save it as the app would, unless ``dry_run``.

    :raises InvalidInput: when the app opens no session (Flask does so without a
        ``SECRET_KEY``), or a change does not fit the session's data.
    :raises StoreError: when the app's store fails.
    :raises UndecodableValue: when the app's ``open_session`` fails otherwise.
    """
    interface = app.session_interface
    cookie_name = interface.get_cookie_name(app)
    headers = {"Cookie": cookie_header(cookie, cookie_name)} if cookie else {}
    context = app.test_request_context(path, headers=headers)
    try:
        # Pushing runs open_session once, with the request context in place, as
        # for a real request; a failure there is the app's, told in one line.
        context.push()
    except BaseException as e:
        # A half-pushed context must not outlive the call (library users, tests),
        # also when a deadline or ^C interrupts the app.
        with contextlib.suppress(Exception):
            context.pop()
        if not isinstance(e, Exception):
            raise
        raise _app_failure("open_session", e) from e
    try:
        session = context.session
        if interface.is_null_session(session):
            raise InvalidInput(
                f"{type(interface).__name__}.open_session gave no session (Flask does this when SECRET_KEY is not set)"
            )
        received = context.request.cookies.get(cookie_name) or None
        reason = _why_new(app, interface, session, received)
        result = ReplayResult(
            interface=type(interface).__name__,
            sid=None,
            new=reason is not None,
            reason=reason,
            data={},
            cookie_name=cookie_name,
            cookie=received,
            change=change or Change(),
        )
        if change:
            _apply(session, change)
            if not dry_run:
                response = app.response_class()
                defaults = list(response.headers.items())
                try:
                    interface.save_session(app, session, response)
                except Exception as e:
                    raise _app_failure("save_session", e) from e
                result.saved = True
                # Only what save_session added, not the empty response's Content-Type.
                result.headers = [h for h in response.headers.items() if h not in defaults]
                result.set_cookie = _session_cookie(response, cookie_name)
        result.sid = _sid_of(session)
        result.data = dict(session)
        prefix = getattr(interface, "key_prefix", None)
        if result.sid is not None and isinstance(prefix, str):
            result.store_key = prefix + result.sid
        return result
    finally:
        context.pop()


def _why_new(app: t.Any, interface: t.Any, session: t.Any, cookie: str | None) -> str | None:
    if not cookie:
        return NO_COOKIE
    if _is_flask_session(interface):
        sid = cookie
        if interface.use_signer:
            from sesstool.cookies.sids import unsign_sid

            try:
                sid = unsign_sid(cookie, [app.secret_key] if app.secret_key else [])
            except (SignatureInvalid, NoKey, InvalidInput):
                # An id without a signature (InvalidInput: not sid.signature) is
                # one Flask-Session's unsign refuses too: it starts a new session.
                return BAD_SIGNATURE
        # Flask-Session hands out a fresh id exactly when the store has no session
        # under the cookie's id.
        return None if session.sid == sid else UNKNOWN_ID
    from flask.sessions import SecureCookieSessionInterface

    if isinstance(interface, SecureCookieSessionInterface):
        from itsdangerous import BadSignature, SignatureExpired

        serializer = interface.get_signing_serializer(app)
        if serializer is None:  # no SECRET_KEY: open_session gave a null session already
            return BAD_SIGNATURE
        try:
            serializer.loads(cookie, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except SignatureExpired:
            return EXPIRED
        except BadSignature:
            return BAD_SIGNATURE
        return None
    # A custom interface: Flask's SessionMixin.new is how it may say so.
    return INTERFACE_SAYS_NEW if getattr(session, "new", False) else None


def _is_flask_session(interface: t.Any) -> bool:
    try:
        from flask_session.base import ServerSideSessionInterface
    except ImportError:
        return False
    return isinstance(interface, ServerSideSessionInterface)


def _sid_of(session: t.Any) -> str | None:
    sid = getattr(session, "sid", None)
    return sid if isinstance(sid, str) else None


def _session_cookie(response: t.Any, cookie_name: str) -> str | None:
    headers: list[str] = response.headers.getlist("Set-Cookie")
    for header in headers:
        if header.startswith(f"{cookie_name}="):
            return header
    return headers[0] if headers else None


def _apply(session: t.Any, change: Change) -> None:
    """Apply ``change`` the way a view would: assign each top-level key that changed
    (which marks the session modified) and pop each one that went."""
    if any(contains_opaque(value) for _, value in change.sets):
        raise InvalidInput("--set: an $object value cannot be written")
    changed, _ = apply_change(dict(session), change)
    for key in [key for key in session if key not in changed]:
        session.pop(key)
    for key, value in changed.items():
        if key not in session or session[key] != value:
            session[key] = _app_value(value)


def _app_value(value: t.Any) -> t.Any:
    """Tagged values as the app's own types: sesstool's Markup stand-in → markupsafe."""
    from sesstool.codecs.values import Markup

    if isinstance(value, Markup):
        from markupsafe import Markup as RealMarkup

        return RealMarkup(str(value))
    if isinstance(value, dict):
        return {k: _app_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_app_value(v) for v in value]
    return value


def _app_failure(stage: str, error: Exception) -> Exception:
    """The app's own failure as a one-line sesstool error with the right exit code."""
    text = str(error).strip().splitlines()
    message = f"the app's {stage} failed: {type(error).__name__}" + (f": {text[0]}" if text else "")
    if isinstance(error, OSError) or _is_client_connection_error(error):
        return StoreError(message)
    if stage == "save_session":
        return StoreError(message)
    # What open_session reads is the stored session; a failure there is most
    # often data the app cannot decode.
    return UndecodableValue(message)


def _is_client_connection_error(error: Exception) -> bool:
    try:
        from redis.exceptions import ConnectionError, TimeoutError
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(error, (ConnectionError, TimeoutError))
