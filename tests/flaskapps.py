"""Real Flask 3.1 + Flask-Session 0.8 apps that write sessions through their test client
(Redis, memcached, or SQL through Flask-SQLAlchemy).

Each app has two routes: ``POST /set`` stores the JSON body in the session (a
``null`` value deletes the key) and ``GET /get`` returns the session as the app
sees it, so tests can both create sessions and read back what sesstool changed.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import timedelta

SECRET = "test-secret-key"


def make_app(
    *,
    redis_url: str | None = None,
    memcached_servers: list[tuple[str, int]] | None = None,
    fmt: str = "msgpack",
    use_signer: bool = False,
    prefix: str = "session:",
    lifetime: timedelta = timedelta(days=31),
    secret_key: str = SECRET,
    file_dir: str | None = None,
    file_type: str = "cachelib",
    sql_url: str | None = None,
    sql_table: str = "sessions",
) -> t.Any:
    """:param file_dir: a directory for SESSION_TYPE ``file_type``: ``cachelib`` (a
        ``FileSystemCache`` as SESSION_CACHELIB) or ``filesystem`` (SESSION_FILE_DIR)."""
    import warnings

    from flask import Flask, jsonify, request, session
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_KEY_PREFIX=prefix,
        SESSION_SERIALIZATION_FORMAT=fmt,
        SESSION_USE_SIGNER=use_signer,
        PERMANENT_SESSION_LIFETIME=lifetime,
    )
    if file_dir is not None:
        from cachelib.file import FileSystemCache

        if file_type == "cachelib":
            app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(file_dir, threshold=500))
        else:
            app.config.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=file_dir)
    elif sql_url is not None:
        from flask_sqlalchemy import SQLAlchemy

        # SQLAlchemy's own pool would keep SQLite files and server connections open
        # between requests of tests that then change the rows from outside: no pool.
        app.config.update(SQLALCHEMY_DATABASE_URI=sql_url,
                          SQLALCHEMY_ENGINE_OPTIONS={"poolclass": _null_pool()})
        db = SQLAlchemy(app)
        app.config.update(SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db, SESSION_SQLALCHEMY_TABLE=sql_table,
                          SESSION_CLEANUP_N_REQUESTS=None)
    elif redis_url is not None:
        import redis

        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url))
    else:
        from pymemcache.client.hash import HashClient

        assert memcached_servers
        # Acknowledged writes: with pymemcache's default noreply, a test's next step
        # on another connection could overtake the app's write.
        client = HashClient(memcached_servers, default_noreply=False)
        app.config.update(SESSION_TYPE="memcached", SESSION_MEMCACHED=client)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # use_signer is deprecated in 0.8; apps still use it
        Session(app)

    @app.post("/set")
    def set_values() -> t.Any:
        for key, value in (request.get_json() or {}).items():
            if value is None:
                session.pop(key, None)
            else:
                session[key] = value
        return jsonify(ok=True)

    @app.get("/get")
    def get_values() -> t.Any:
        return jsonify(dict(session))

    @app.post("/clear")
    def clear_values() -> t.Any:
        session.clear()  # an emptied session is deleted from the store by save_session
        return jsonify(ok=True)

    return app


def _null_pool() -> t.Any:
    from sqlalchemy.pool import NullPool

    return NullPool


@dataclass
class WrittenSession:
    cookie: str  # what the browser holds: the sid, or sid.signature with the signer
    sid: str  # the id in the store key


def write_session(app: t.Any, data: dict[str, t.Any]) -> WrittenSession:
    """Create one session holding ``data`` through the app's test client.

    About one id in 64 starts with ``-``, which a command line must pass after
    ``--`` (tests/test_cli_inspect.py tests that on its own). Most tests pass ids as
    plain arguments, so such a session is cleared through the app, which deletes it
    from the store, and written again: every run sees the same kind of ids.
    """
    name = app.config.get("SESSION_COOKIE_NAME", "session")
    while True:
        client = app.test_client()
        response = client.post("/set", json=data)
        assert response.status_code == 200
        cookie = client.get_cookie(name)
        assert cookie is not None
        value = cookie.value
        if not value.startswith("-"):
            break
        assert client.post("/clear").status_code == 200
    sid = value.rsplit(".", 1)[0] if app.config["SESSION_USE_SIGNER"] else value
    return WrittenSession(cookie=value, sid=sid)


def settle(app: t.Any) -> None:
    """Wait for a memcached app's noreply writes: a round trip on each of its connections
    (memcached serves each connection on its own thread, so another client's read may
    otherwise come first)."""
    for client in app.session_interface.client.clients.values():
        client.version()


def read_session(app: t.Any, cookie: str) -> dict[str, t.Any]:
    """What the app sees for ``cookie`` (an empty dict when it has no such session)."""
    client = app.test_client()
    client.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), cookie)
    response = client.get("/get")
    assert response.status_code == 200
    return t.cast(dict[str, t.Any], response.get_json())
