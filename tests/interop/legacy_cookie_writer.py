"""Run inside an old-Flask venv (Flask 1.0.4 + itsdangerous 0.24, legacy timestamps).

``write KEY``   prints JSON: the session cookie a real Flask 1.0 app sets, with
                tuple, bytes, Markup, UUID and datetime values, and the versions used.
``read KEY COOKIE``  prints JSON: what that app reads from COOKIE (type and repr of
                each value), or ``{"session": null}`` when it rejects the cookie.

Made by the test setup (tests/venvs.py); itsdangerous 0.24 counts timestamps from
2011-01-01, which is what sesstool must detect.
"""

import datetime
import json
import sys
import time
import typing as t
import uuid
import warnings

warnings.simplefilter("ignore")

from flask import Flask, session  # noqa: E402
from markupsafe import Markup  # noqa: E402

VALUES = {
    "user_id": 42,
    "name": "Zoë",
    "pair": (1, "two"),
    "blob": b"\x00\xffbytes",
    "html": Markup("<b>bold</b>"),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "when": datetime.datetime(2016, 2, 29, 12, 30, 45),
    "nested": {" t": "looks like a tag"},
}


def make_app(key: str) -> t.Any:
    app = Flask(__name__)
    app.secret_key = key

    @app.route("/write")
    def write() -> str:
        session.update(VALUES)
        return "ok"

    @app.route("/read")
    def read() -> str:
        if not session:
            return json.dumps({"session": None})
        shown = {k: [type(v).__name__, repr(v)] for k, v in session.items()}
        return json.dumps({"session": shown})

    return app


def main(argv: list[str]) -> None:
    import itsdangerous
    import pkg_resources

    command, key = argv[0], argv[1]
    client = make_app(key).test_client()
    if command == "write":
        response = client.get("/write")
        header = response.headers["Set-Cookie"]
        cookie = header.split(";", 1)[0].split("=", 1)[1]
        print(
            json.dumps(
                {
                    "cookie": cookie,
                    "now": time.time(),
                    "flask": pkg_resources.get_distribution("flask").version,
                    "itsdangerous": pkg_resources.get_distribution("itsdangerous").version,
                    "epoch": getattr(itsdangerous, "EPOCH", None),
                }
            )
        )
    elif command == "read":
        client.set_cookie("localhost", "session", argv[2])
        print(client.get("/read").get_data(as_text=True))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
