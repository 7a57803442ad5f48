"""Real Flask app modules written to a temporary directory, for ``--app`` and ``replay``.

:class:`AppDir` writes a module into the test's ``tmp_path``, makes it the current
directory (where ``--app`` looks, as ``flask --app`` does), and afterwards removes
every module it imported from ``sys.modules`` and restores ``sys.path``, so the next
test can write a module of the same name.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest

from tests.flaskapps import SECRET


class AppDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: set[str] = set()

    def write(self, name: str, source: str) -> str:
        """Write ``name.py`` (``pkg/mod`` makes a package); return the module name."""
        path = self.root / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(self.root).parents:
            if str(parent) != ".":
                (self.root / parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
        module = name.replace("/", ".")
        self.names.add(module.split(".")[0])
        importlib.invalidate_caches()
        return module

    def module(self, name: str) -> t.Any:
        return sys.modules[name]


@contextlib.contextmanager
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[AppDir]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in (
        "SESSTOOL_APP",
        "FLASK_APP",
        "SESSTOOL_STORE",
        "SESSTOOL_PREFIX",
        "SESSTOOL_SERIALIZER",
        "SESSTOOL_SECRET_KEY",
        "SESSTOOL_TABLE",
    ):
        monkeypatch.delenv(name, raising=False)
    before = set(sys.modules)
    apps = AppDir(tmp_path)
    try:
        yield apps
    finally:
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            file = getattr(module, "__file__", None) or ""
            if name.split(".")[0] in apps.names or file.startswith(str(tmp_path)):
                del sys.modules[name]


def redis_app(
    url: str,
    *,
    use_signer: bool = False,
    prefix: str = "session:",
    fmt: str = "msgpack",
    secret: str = SECRET,
    fallbacks: t.Sequence[str] = (),
    factory: bool = False,
    extra: str = "",
) -> str:
    """A Flask-Session 0.8 app on Redis, as ``app`` or as ``create_app(name='prod')``."""
    body = f"""
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY={secret!r},
            SECRET_KEY_FALLBACKS={list(fallbacks)!r},
            SESSION_TYPE="redis",
            SESSION_REDIS=redis.Redis.from_url({url!r}),
            SESSION_USE_SIGNER={use_signer!r},
            SESSION_KEY_PREFIX={prefix!r},
            SESSION_SERIALIZATION_FORMAT={fmt!r},
        )
        {extra}
        Session(app)
    """
    header = "import redis\nfrom flask import Flask\nfrom flask_session import Session\n"
    if factory:
        indented = textwrap.indent(textwrap.dedent(body), "    ")
        return (
            header + f"\ndef create_app(name='prod'):\n{indented}\n" + "    app.config['NAME'] = name\n    return app\n"
        )
    return header + textwrap.dedent(body)


def memcached_app(host: str, port: int, *, prefix: str = "session:") -> str:
    return f"""
from flask import Flask
from flask_session import Session
from pymemcache.client.hash import HashClient

app = Flask(__name__)
app.config.update(
    SECRET_KEY={SECRET!r},
    SESSION_TYPE="memcached",
    SESSION_MEMCACHED=HashClient([({host!r}, {port})]),
    SESSION_KEY_PREFIX={prefix!r},
)
Session(app)
"""


COOKIE_APP = f"""
from datetime import timedelta
from flask import Flask

app = Flask(__name__)
app.config.update(
    SECRET_KEY={SECRET!r},
    SECRET_KEY_FALLBACKS=["older-key"],
    SESSION_COOKIE_NAME="shop",
    PERMANENT_SESSION_LIFETIME=timedelta(hours=2),
)
"""

# A hand-written server-side interface: sessions in a dict, ids in the cookie, and
# SessionMixin.new set for sessions it starts.
CUSTOM_APP = f"""
import secrets
from flask import Flask
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

STORE = {{"known-id": {{"user_id": 5}}}}


class DictSession(CallbackDict, SessionMixin):
    def __init__(self, initial=None, sid=None, new=False):
        def on_update(self):
            self.modified = True
        super().__init__(initial, on_update)
        self.sid = sid
        self.new = new
        self.modified = False


class DictSessionInterface(SessionInterface):
    def open_session(self, app, request):
        sid = request.cookies.get(self.get_cookie_name(app))
        if sid and sid in STORE:
            return DictSession(dict(STORE[sid]), sid=sid)
        return DictSession(sid=secrets.token_hex(8), new=True)

    def save_session(self, app, session, response):
        if session.modified:
            STORE[session.sid] = dict(session)
            response.set_cookie(self.get_cookie_name(app), session.sid, httponly=True)


app = Flask(__name__)
app.secret_key = {SECRET!r}
app.session_interface = DictSessionInterface()
"""


def sqlalchemy_app(url: str, *, table: str = "sessions", prefix: str = "session:") -> str:
    """A Flask-Session 0.8 app on Flask-SQLAlchemy (``SESSION_TYPE="sqlalchemy"``)."""
    return f"""
from flask import Flask
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config.update(SECRET_KEY={SECRET!r}, SQLALCHEMY_DATABASE_URI={url!r})
db = SQLAlchemy(app)
app.config.update(
    SESSION_TYPE="sqlalchemy",
    SESSION_SQLALCHEMY=db,
    SESSION_SQLALCHEMY_TABLE={table!r},
    SESSION_KEY_PREFIX={prefix!r},
)
Session(app)
"""
