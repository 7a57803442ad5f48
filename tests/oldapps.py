"""Sessions written and read by the real Flask-Session 0.4 and 0.5 (the pickle era).

Each version runs in its own venv (tests/venvs.py, made once under ``.cache/venvs``)
through ``tests/interop/old_flask_session_app.py``. Tests that use this module are
marked ``@pytest.mark.interop``.

- :func:`write_old_sessions` makes sessions through the old app's test client and
  returns ``[{"cookie": ..., "sid": ...}, ...]``.
- :func:`read_old_session` returns what the old app sees for a cookie:
  ``{"data": <tagged form>, "new": bool}``, ``new`` true when it found no session.
- :func:`update_old_session` lets the old app change a session, as a request would.
- :data:`PICKLE_ONLY` is what ``pickle_only=True`` stores, as Python values.

Mind what the old apps do: their ``save_session`` writes every non-empty session on
every request, and a session they did not find starts as ``{"_permanent": True}``,
so reading an unknown cookie stores ``{"_permanent": True}`` under it.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import subprocess
import typing as t
import uuid
from pathlib import Path

from sesstool.codecs.values import Markup
from tests.venvs import FLASK_SESSION_04, FLASK_SESSION_05, venv_python

SCRIPT = str(Path(__file__).resolve().parent / "interop" / "old_flask_session_app.py")
SECRET = "old-app-secret"

# Flask-Session 0.4/0.5's memcached backend needs python-memcached (or pylibmc, which
# needs a C library); pymemcache, which sesstool uses, is not one they look for.
MEMCACHED_CLIENT = ["python-memcached==1.62"]
PINS: dict[str, list[str]] = {
    "0.5": [*FLASK_SESSION_05, *MEMCACHED_CLIENT],
    "0.4": [*FLASK_SESSION_04, *MEMCACHED_CLIENT],
}
VERSIONS = tuple(PINS)

# The same values the script's /set-pickle-only stores, written out separately.
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


def old_python(version: str) -> str:
    """The python of the venv holding Flask-Session ``version`` (built on first use)."""
    return venv_python(f"flask-session-{version}", PINS[version])


def _run(version: str, args: list[str], stdin: str = "", timeout: float = 120) -> str:
    result = subprocess.run(
        [old_python(version), SCRIPT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"Flask-Session {version} app failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def _options(
    store: str,
    use_signer: bool,
    secret_key: str,
    prefix: str,
    lifetime: int | None,
    cookie_name: str,
) -> list[str]:
    options = ["--store", store, "--secret-key", secret_key, "--prefix", prefix, "--cookie-name", cookie_name]
    if use_signer:
        options.append("--use-signer")
    if lifetime is not None:
        options += ["--lifetime", str(lifetime)]
    return options


def write_old_sessions(
    version: str,
    store: str,
    sessions: list[dict[str, t.Any]],
    *,
    use_signer: bool = False,
    secret_key: str = SECRET,
    prefix: str = "session:",
    pickle_only: bool = False,
    app_object: bool = False,
    lifetime: int | None = None,
    cookie_name: str = "session",
) -> list[dict[str, str]]:
    """Create one session per JSON object in ``sessions`` with the real old app.

    :param store: ``redis://...`` or ``memcached://host:port``.
    :param pickle_only: also store :data:`PICKLE_ONLY` in every session.
    :param app_object: also store ``cart``, a ``__main__.Cart`` object of the app's own
        class (state ``{"items": ["book", "pen"], "coupon": None}``).
    :param lifetime: PERMANENT_SESSION_LIFETIME in seconds (the store TTL); 31 days if None.
    :returns: ``{"cookie": ..., "sid": ...}`` per session, in order.
    """
    args = ["write", *_options(store, use_signer, secret_key, prefix, lifetime, cookie_name)]
    if pickle_only:
        args.append("--pickle-only")
    if app_object:
        args.append("--app-object")
    out = _run(version, args, json.dumps(sessions))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def read_old_session(
    version: str,
    store: str,
    cookie: str,
    *,
    use_signer: bool = False,
    secret_key: str = SECRET,
    prefix: str = "session:",
    cookie_name: str = "session",
) -> dict[str, t.Any]:
    """What the real old app sees for ``cookie``: ``{"data": tagged, "new": bool}``."""
    args = ["read", f"--cookie={cookie}", *_options(store, use_signer, secret_key, prefix, None, cookie_name)]
    return t.cast(dict[str, t.Any], json.loads(_run(version, args)))


def update_old_session(
    version: str,
    store: str,
    cookie: str,
    changes: dict[str, t.Any],
    *,
    use_signer: bool = False,
    secret_key: str = SECRET,
    prefix: str = "session:",
    cookie_name: str = "session",
) -> dict[str, t.Any]:
    """Let the old app set ``changes`` (``None`` deletes a key) in a request; return
    what it then reads, as :func:`read_old_session` does."""
    args = ["update", f"--cookie={cookie}", *_options(store, use_signer, secret_key, prefix, None, cookie_name)]
    return t.cast(dict[str, t.Any], json.loads(_run(version, args, json.dumps(changes))))
