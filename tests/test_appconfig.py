"""``--app``: settings read from real app modules, precedence, and load errors."""

from __future__ import annotations

import json
import sys
import typing as t
from pathlib import Path

import click
import pytest

from sesstool.app.config import load_app_settings, memcached_client_url, redis_client_url
from sesstool.cli.main import COMMANDS
from sesstool.cli.options import resolve_settings, store_options
from sesstool.errors import InvalidInput
from tests.apps import COOKIE_APP, AppDir, app_dir, memcached_app, redis_app
from tests.flaskapps import SECRET, make_app, write_session


@click.command("probe")
@store_options
@click.pass_context
def probe(ctx: click.Context, **_: t.Any) -> None:
    """Print the resolved settings: a stand-in for any store command."""
    settings = resolve_settings(ctx)
    shown = {
        "store_url": settings.store_url,
        "prefix": settings.prefix,
        "serializer": settings.serializer,
        "app_serializer": settings.app_serializer,
        "secret_keys": settings.secret_keys,
        "cookie_name": settings.cookie_name,
        "lifetime": settings.lifetime,
        "client": type(settings.client).__name__ if settings.client is not None else None,
    }
    ctx.obj.stdout.write(json.dumps(shown) + "\n")


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[AppDir]:
    monkeypatch.setitem(COMMANDS, "probe", ("tests.test_appconfig", "probe"))
    with app_dir(tmp_path, monkeypatch) as directory:
        yield directory


def test_redis_app_settings(apps) -> None:
    apps.write(
        "shop",
        redis_app(
            "redis://:hunter2@127.0.0.1:6390/3",
            use_signer=True,
            prefix="shop:",
            fmt="json",
            fallbacks=["old-key"],
        ),
    )
    settings = load_app_settings("shop:app")
    assert settings.session_type == "redis"
    assert type(settings.app.session_interface).__name__ == "RedisSessionInterface"
    assert settings.store_url == "redis://127.0.0.1:6390/3"  # never the password
    assert type(settings.client).__name__ == "Redis"
    assert settings.client is settings.app.config["SESSION_REDIS"]
    assert (settings.prefix, settings.app_serializer, settings.use_signer) == ("shop:", "json", True)
    assert settings.secret_keys == [SECRET, "old-key"]
    assert (settings.cookie_name, settings.lifetime) == ("session", 31 * 86400)
    # Only what the app says: how values are read (--serializer) is the user's to say.
    assert settings.given == {
        "app",
        "session_type",
        "store_url",
        "client",
        "prefix",
        "app_serializer",
        "use_signer",
        "secret_keys",
        "cookie_name",
        "lifetime",
    }


def test_cookie_app_settings(apps) -> None:
    apps.write("cookieapp", COOKIE_APP)
    settings = load_app_settings("cookieapp")  # a module holding one Flask instance
    assert settings.session_type is None and not settings.given & {"store_url", "client", "session_type"}
    assert settings.secret_keys == [SECRET, "older-key"]
    assert (settings.cookie_name, settings.lifetime) == ("shop", 7200)
    assert (settings.cookie_salt, settings.cookie_digest) == ("cookie-session", "sha1")


def test_memcached_app_settings(apps) -> None:
    apps.write("mcapp", memcached_app("127.0.0.1", 21299, prefix="mc:"))
    settings = load_app_settings("mcapp:app")
    assert settings.store_url == "memcached://127.0.0.1:21299"
    assert type(settings.client).__name__ == "HashClient"
    assert settings.prefix == "mc:"


def test_redis_client_urls_name_the_server_without_secrets() -> None:
    import redis
    from redis.sentinel import Sentinel

    tls = redis.Redis(host="cache.internal", port=6380, db=2, password="pw", ssl=True)
    assert redis_client_url(tls) == "rediss://cache.internal:6380/2"
    assert redis_client_url(redis.Redis(unix_socket_path="/run/redis.sock", db=1)) == "unix:///run/redis.sock?db=1"
    sentinel = Sentinel([("10.0.0.1", 26379), ("10.0.0.2", 26380)], password="pw")
    master = sentinel.master_for("mymaster", db=4, password="pw")
    assert redis_client_url(master) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/4"


def test_memcached_client_urls() -> None:
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient

    assert memcached_client_url(Client(("10.0.0.5", 11222))) == "memcached://10.0.0.5:11222"
    pair = HashClient([("10.0.0.5", 11211), ("10.0.0.6", 11211)])
    assert memcached_client_url(pair) == "memcached://10.0.0.5:11211,10.0.0.6:11211"


def test_precedence_explicit_beats_env_beats_app_beats_default(cli, apps, monkeypatch) -> None:
    apps.write("shop", redis_app("redis://127.0.0.1:6390/3", prefix="app:", fmt="json"))

    def probe_json(*args: str) -> dict[str, t.Any]:
        result = cli("probe", *args)
        assert result.exit_code == 0, result.stderr
        return t.cast(dict[str, t.Any], json.loads(result.stdout))

    default = probe_json()
    assert (default["store_url"], default["prefix"], default["serializer"]) == (
        "redis://localhost:6379/0",
        "session:",
        "auto",
    )
    from_app = probe_json("--app", "shop:app")
    # The app's format is what it writes; reading still detects each value.
    assert (from_app["store_url"], from_app["prefix"], from_app["app_serializer"], from_app["serializer"]) == (
        "redis://127.0.0.1:6390/3",
        "app:",
        "json",
        "auto",
    )
    assert from_app["client"] == "Redis" and from_app["secret_keys"] == [SECRET]

    monkeypatch.setenv("SESSTOOL_APP", "shop:app")
    monkeypatch.setenv("SESSTOOL_PREFIX", "env:")
    monkeypatch.setenv("SESSTOOL_STORE", "redis://10.1.1.1:6379/0")
    from_env = probe_json()
    assert (from_env["prefix"], from_env["app_serializer"]) == ("env:", "json")
    assert (from_env["store_url"], from_env["client"]) == ("redis://10.1.1.1:6379/0", None)

    explicit = probe_json(
        "--prefix",
        "cli:",
        "--store",
        "redis://10.2.2.2:6379/0",
        "--serializer",
        "msgpack",
        "--secret-key",
        "k2",
    )
    assert (explicit["prefix"], explicit["store_url"], explicit["serializer"]) == (
        "cli:",
        "redis://10.2.2.2:6379/0",
        "msgpack",
    )
    assert explicit["secret_keys"] == ["k2"]


def test_app_client_reaches_the_apps_store(cli, apps, redis_url) -> None:
    written = write_session(make_app(redis_url=redis_url, prefix="shop:"), {"user_id": 42})
    apps.write("shop", redis_app(redis_url, prefix="shop:"))
    ctx = probe.make_context("probe", ["--app", "shop:app"])
    settings = resolve_settings(ctx)
    store = settings.open_store()
    try:
        item = store.get(f"shop:{written.sid}".encode())
    finally:
        store.close()
    assert item is not None and item.ttl is not None and item.value is not None
    from sesstool.codecs.serializers import decode

    assert decode(item.value, settings.serializer)[1] == {"user_id": 42, "_permanent": True}


def test_unsupported_session_type(cli, apps) -> None:
    apps.write(
        "mongo",
        "from flask import Flask\napp = Flask(__name__)\napp.config['SESSION_TYPE'] = 'mongodb'\n",
    )
    result = cli("probe", "--app", "mongo:app")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unsupported SESSION_TYPE 'mongodb': sesstool supports redis, memcached, sqlalchemy, filesystem "
        "and cachelib\n"
    )
    # replay runs the app's own interface, whatever its backend
    assert load_app_settings("mongo:app", require_store=False).session_type == "mongodb"


@pytest.mark.parametrize("kind", ["filesystem", "cachelib"])
def test_filesystem_and_cachelib_apps_name_their_directory(cli, apps, tmp_path, kind) -> None:
    directory = tmp_path / "sessions"
    apps.write(
        "files",
        "import warnings\nfrom flask import Flask\nfrom flask_session import Session\n"
        "from cachelib.file import FileSystemCache\napp = Flask(__name__)\n"
        f"app.config.update(SESSION_TYPE={kind!r}, SESSION_FILE_DIR={str(directory)!r},\n"
        f"    SESSION_CACHELIB=FileSystemCache({str(directory)!r}))\n"
        "warnings.simplefilter('ignore')\nSession(app)\n",
    )
    result = cli("probe", "--app", "files:app")
    assert result.exit_code == 0, result.stderr
    assert result.json()["store_url"] == f"file://{directory}"
    listed = cli("list", "--app", "files:app", "--format", "json")
    assert listed.exit_code == 0 and listed.json() == []


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (
            "from nowhere_at_all import thing\n",
            "broken:app",
            "error: cannot load app 'broken:app': ModuleNotFoundError: No module named 'nowhere_at_all'",
        ),
        (
            "def create_app():\n    raise KeyError('DATABASE_URL')\n",
            "broken:create_app()",
            "error: cannot load app 'broken:create_app()': KeyError: 'DATABASE_URL'",
        ),
        (
            "from flask import Flask\na = Flask('a')\nb = Flask('b')\n",
            "broken",
            "error: cannot load app 'broken': Detected multiple Flask applications"
            " in module 'broken'. Use 'broken:name' to specify the correct one.",
        ),
        ("import sys\nsys.exit(3)\n", "broken", "error: cannot load app 'broken': SystemExit: 3"),
    ],
)
def test_load_errors_are_one_line_and_exit_2(cli, apps, source, target, message) -> None:
    apps.write("broken", source)
    result = cli("probe", "--app", target)
    assert (result.exit_code, result.stderr, result.stdout) == (2, message + "\n", "")


def test_package_module_path(apps) -> None:
    apps.write("proj/web/wsgi", redis_app("redis://127.0.0.1:6390/0", prefix="pkg:", factory=True))
    assert load_app_settings("proj.web.wsgi:create_app()").prefix == "pkg:"
    assert load_app_settings("proj/web/wsgi.py").prefix == "pkg:"  # a file path, as flask --app takes


def test_without_flask_installed(apps, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "flask.cli", None)
    with pytest.raises(InvalidInput, match=r"pip install 'sesstool\[flask\]'"):
        load_app_settings("shop:app")


def test_flaskenv_names_the_app_for_replay(cli, apps, monkeypatch) -> None:
    pytest.importorskip("dotenv")  # Flask reads .flaskenv only with python-dotenv
    apps.write("cookieapp", COOKIE_APP)
    Path(".flaskenv").write_text("FLASK_APP=cookieapp:app\n")
    monkeypatch.setenv("FLASK_APP", "")  # restored (to unset) after the test
    monkeypatch.delenv("FLASK_APP")
    result = cli("replay", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["interface"] == "SecureCookieSessionInterface"


def test_later_layers_win_and_may_clear_what_a_lower_one_set() -> None:
    from sesstool.ops.settings import Settings, merge

    from_app = Settings.layer({"store_url": "redis://app.internal/0", "client": object(), "prefix": "app:"})
    from_user = Settings.layer({"store_url": "redis://other.internal/0", "client": None})
    merged = merge(from_app, from_user)
    assert (merged.store_url, merged.client, merged.prefix, merged.serializer) == (
        "redis://other.internal/0", None, "app:", "auto")
    assert merged.given == frozenset()
    with pytest.raises(TypeError):
        Settings.layer({"prefixes": "typo:"})
