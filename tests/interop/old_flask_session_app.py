"""A real Flask-Session 0.4 / 0.5 app (pickle era), run with an old-stack venv's python.

Made by the test setup (tests/oldapps.py builds the venv with tests/venvs.py); it
imports only that venv's Flask, Flask-Session, redis and python-memcached, never
sesstool, so what it prints is the old app's own view.

Commands (options after the command; ``--store`` is ``redis://...``,
``memcached://host:port`` or ``file:///dir`` for the filesystem backend):

``write``   stdin: a JSON array of objects, one per session. Each makes a new
            session through the app's test client (``POST /set``; with
            ``--pickle-only`` also ``POST /set-pickle-only``, which stores
            datetime, tuple, set, UUID, Decimal, Markup, OrderedDict... values
            that only pickle can hold; with ``--app-object`` also
            ``POST /set-app-object``, which stores ``cart``, a ``__main__.Cart``
            object of the app's own class). Prints one JSON line per session:
            ``{"cookie": ..., "sid": ...}``.
``read``    ``--cookie C``: prints ``{"data": ..., "new": bool}``, what the app's
            ``open_session`` gives for that cookie, in sesstool's documented tagged
            JSON form (written independently here, so it can check sesstool).
            ``new`` is true when the app did not find the session.
``update``  ``--cookie C``, stdin: a JSON object; the app sets those keys (``null``
            deletes one) on the existing session and saves it, as a request would.
            Prints what ``read`` prints, after the change.

Common options: ``--use-signer``, ``--secret-key KEY``, ``--prefix P``,
``--lifetime SECONDS`` (PERMANENT_SESSION_LIFETIME), ``--cookie-name NAME``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import decimal
import json
import math
import pickle
import sys
import typing as t
import uuid
import warnings
from http.cookies import SimpleCookie

warnings.simplefilter("ignore")  # old Flask on a new Python: deprecation noise only

from flask import Flask, jsonify, request, session  # noqa: E402
from flask_session import Session  # noqa: E402
from markupsafe import Markup  # noqa: E402

# What ``/set-pickle-only`` stores. tests/oldapps.py holds the same values, written
# out separately, to compare against.
PICKLE_ONLY: dict[str, t.Any] = {
    "when": datetime.datetime(2023, 5, 17, 14, 30, 15, 250000),
    "when_utc": datetime.datetime(2023, 5, 17, 14, 30, 15, tzinfo=datetime.timezone.utc),
    "day": datetime.date(2023, 5, 17),
    "alarm": datetime.time(7, 45),
    "ttl": datetime.timedelta(days=2, seconds=30),
    "pair": (1, "two", (3.5, None)),
    "tags": {"red", "green"},
    "frozen": frozenset({1, 2}),
    "uid": uuid.UUID("4b2f6b7e-8d61-4f4e-9a3b-0c9d8e7f6a5b"),
    "price": decimal.Decimal("19.990"),
    "html": Markup("<b>Hi</b> &amp; bye"),
    "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
    "raw": b"\x00\x01\xfe\xff",
    "ids": {1: "one", 2: "two"},
}


class Cart:
    """An object of the app's own class: sesstool must show it without importing it."""

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.coupon = None

    def __repr__(self) -> str:
        return f"Cart({self.items!r})"


TAGS = {
    "$bytes", "$bytearray", "$complex", "$tuple", "$set", "$frozenset", "$datetime", "$date",
    "$time", "$timedelta", "$uuid", "$decimal", "$markup", "$float", "$map", "$ordereddict",
    "$dict", "$object", "$ext",
}  # fmt: skip


def tagged(value: t.Any) -> t.Any:
    """sesstool's documented tagged JSON form (docs/tagged-json.md), from scratch."""
    if value is None or type(value) in (bool, str, int):
        return value
    if type(value) is float:
        if math.isnan(value):
            return {"$float": "nan"}
        if math.isinf(value):
            return {"$float": "inf" if value > 0 else "-inf"}
        return value
    if isinstance(value, Markup):
        return {"$markup": str(value)}
    if type(value) is list:
        return [tagged(item) for item in value]
    if type(value) is tuple:
        return {"$tuple": [tagged(item) for item in value]}
    if type(value) in (set, frozenset):
        tag = "$set" if type(value) is set else "$frozenset"
        try:
            members = sorted(value)
        except TypeError:
            members = sorted(value, key=repr)
        return {tag: [tagged(item) for item in members]}
    if type(value) is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if type(value) is bytearray:
        return {"$bytearray": base64.b64encode(bytes(value)).decode("ascii")}
    if type(value) is complex:
        return {"$complex": [tagged(value.real), tagged(value.imag)]}
    if type(value) is datetime.datetime:
        return {"$datetime": value.isoformat()}
    if type(value) is datetime.date:
        return {"$date": value.isoformat()}
    if type(value) is datetime.time:
        return {"$time": value.isoformat()}
    if type(value) is datetime.timedelta:
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if type(value) is uuid.UUID:
        return {"$uuid": str(value)}
    if type(value) is decimal.Decimal:
        return {"$decimal": str(value)}
    if type(value) is collections.OrderedDict:
        return {"$ordereddict": [[tagged(k), tagged(v)] for k, v in value.items()]}
    if isinstance(value, dict):
        if not all(type(key) is str for key in value):
            return {"$map": [[tagged(k), tagged(v)] for k, v in value.items()]}
        converted = {key: tagged(item) for key, item in value.items()}
        if len(converted) == 1 and next(iter(converted)) in TAGS:
            return {"$dict": converted}
        return converted
    kind = type(value)
    return {"$object": {"class": f"{kind.__module__}.{kind.__qualname__}", "repr": repr(value)}}


class TrackingPickle:
    """The interface's ``serializer`` (the pickle module), noting whether a load worked:
    the app treats a missing or unreadable session alike, as a fresh one."""

    loaded = False

    @classmethod
    def loads(cls, raw: bytes) -> t.Any:
        value = pickle.loads(raw)  # the old app's own behaviour, in its own process
        cls.loaded = True
        return value

    @staticmethod
    def dumps(value: t.Any, *args: t.Any) -> bytes:
        return pickle.dumps(value, *args)


def make_app(args: argparse.Namespace) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=args.secret_key,
        SESSION_USE_SIGNER=args.use_signer,
        SESSION_KEY_PREFIX=args.prefix,
        SESSION_COOKIE_NAME=args.cookie_name,
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(seconds=args.lifetime),
    )
    store = args.store
    if store.startswith(("redis://", "rediss://", "unix://")):
        import redis

        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(store))
    elif store.startswith("memcached://"):
        import memcache  # python-memcached: what Flask-Session 0.4/0.5 look for

        servers = store[len("memcached://") :].split(",")
        app.config.update(SESSION_TYPE="memcached", SESSION_MEMCACHED=memcache.Client(servers))
    elif store.startswith("file://"):  # SESSION_TYPE filesystem: cachelib's FileSystemCache
        app.config.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=store[len("file://") :])
    else:
        raise SystemExit(f"unsupported store {store!r}")
    Session(app)
    app.session_interface.serializer = TrackingPickle
    cache = getattr(app.session_interface, "cache", None)
    if cache is not None:  # the filesystem backend unpickles inside cachelib, not through serializer
        cache_get = cache.get

        def tracking_get(key: str) -> t.Any:
            value = cache_get(key)
            TrackingPickle.loaded = TrackingPickle.loaded or value is not None
            return value

        cache.get = tracking_get

    @app.route("/set", methods=["POST"])
    def set_values() -> t.Any:
        for key, value in (request.get_json() or {}).items():
            if value is None:
                session.pop(key, None)
            else:
                session[key] = value
        return "ok"

    @app.route("/set-pickle-only", methods=["POST"])
    def set_pickle_only() -> t.Any:
        session.update(PICKLE_ONLY)
        return "ok"

    @app.route("/set-app-object", methods=["POST"])
    def set_app_object() -> t.Any:
        session["cart"] = Cart(["book", "pen"])
        return "ok"

    @app.route("/get")
    def get_values() -> t.Any:
        return jsonify(data=tagged(dict(session)), new=not TrackingPickle.loaded)

    return app


def cookie_from(response: t.Any, name: str) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name].value
    raise SystemExit(f"the app set no {name} cookie")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["write", "read", "update"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--use-signer", action="store_true")
    parser.add_argument("--secret-key", default="old-app-secret")
    parser.add_argument("--prefix", default="session:")
    parser.add_argument("--lifetime", type=int, default=31 * 24 * 3600)
    parser.add_argument("--cookie-name", default="session")
    parser.add_argument("--cookie")
    parser.add_argument("--pickle-only", action="store_true")
    parser.add_argument("--app-object", action="store_true")
    args = parser.parse_args(argv)
    app = make_app(args)
    name = args.cookie_name

    if args.command == "write":
        for data in json.load(sys.stdin):
            client = app.test_client(use_cookies=False)
            response = client.post("/set", json=data)
            assert response.status_code == 200, response.status_code
            cookie = cookie_from(response, name)
            headers = {"Cookie": f"{name}={cookie}"}
            if args.pickle_only:
                assert client.post("/set-pickle-only", headers=headers).status_code == 200
            if args.app_object:
                assert client.post("/set-app-object", headers=headers).status_code == 200
            sid = cookie.rsplit(".", 1)[0] if args.use_signer else cookie
            print(json.dumps({"cookie": cookie, "sid": sid}), flush=True)
        return

    if not args.cookie:
        raise SystemExit("--cookie is required")
    # The cookie goes in as a header, with the client's own cookie handling off: its
    # cookie API changed between the Werkzeug versions these venvs hold, and with
    # cookies on, Werkzeug 2.2 replaces a Cookie header by its (empty) jar.
    headers = {"Cookie": f"{name}={args.cookie}"}
    client = app.test_client(use_cookies=False)
    if args.command == "update":
        response = client.post("/set", json=json.load(sys.stdin), headers=headers)
        assert response.status_code == 200, response.status_code
        TrackingPickle.loaded = False
    print(client.get("/get", headers=headers).get_data(as_text=True))


if __name__ == "__main__":
    main(sys.argv[1:])
