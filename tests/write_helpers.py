"""Helpers for the write-command tests: what the apps see, pickle-era sessions, idle keys.

- :func:`typed_app`: the real Flask-Session 0.8 app of :mod:`tests.flaskapps` plus a
  ``GET /types`` route naming the Python type of each session value, so a test can
  tell a ``markupsafe.Markup`` from a ``str`` and a tuple from a list.
- :func:`app_has_no_session`: the app starts a fresh session for a cookie.
- :func:`make_idle`: give a key an idle time without waiting (RESTORE ... IDLETIME).
"""

from __future__ import annotations

import typing as t

from tests.flaskapps import make_app


def typed_app(redis_url: str, fmt: str = "msgpack") -> t.Any:
    """The Flask-Session 0.8 test app with ``GET /types``."""
    from flask import jsonify, session

    app = make_app(redis_url=redis_url, fmt=fmt)
    # Read only: a refresh would re-save the session, and Flask-Session 0.8 cannot
    # re-save a pickle-era session holding Markup (its msgpack encoder rejects it).
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False

    @app.get("/types")
    def types() -> t.Any:
        return jsonify({k: [f"{type(v).__module__}.{type(v).__name__}", repr(v)] for k, v in session.items()})

    return app


def app_has_no_session(app: t.Any, cookie: str) -> bool:
    """The app starts a fresh session for ``cookie`` (it only holds ``_permanent``)."""
    from tests.flaskapps import read_session

    return read_session(app, cookie) in ({}, {"_permanent": True})


def read_types(app: t.Any, cookie: str) -> dict[str, list[str]]:
    """``{key: [module.Type, repr]}`` of the session as the app loads it."""
    client = app.test_client()
    client.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), cookie)
    response = client.get("/types")
    assert response.status_code == 200
    return t.cast(dict[str, list[str]], response.get_json())


def make_idle(client: t.Any, key: bytes | str, seconds: int) -> None:
    """Make ``key`` look idle for ``seconds``, keeping its value and TTL."""
    payload = client.dump(key)
    pttl = client.pttl(key)
    client.restore(key, max(pttl, 0), payload, replace=True, idletime=seconds)
