"""``replay`` against real app modules: Flask-Session 0.8 on Redis (signer off and on)
and memcached, Flask's cookie sessions, a custom interface and an app factory."""

from __future__ import annotations

import typing as t
from pathlib import Path

import msgspec
import pytest

from tests.apps import COOKIE_APP, CUSTOM_APP, AppDir, app_dir, memcached_app, redis_app
from tests.flaskapps import SECRET, make_app, read_session, write_session

CONTRACT_KEYS = ["interface", "sid", "new", "data", "set_cookie"]


def seen_by_app(app: t.Any, cookie: str) -> dict[str, t.Any]:
    """What the app's own views see for ``cookie``, without Flask's bookkeeping."""
    data = read_session(app, cookie)
    data.pop("_permanent", None)
    return data


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[AppDir]:
    with app_dir(tmp_path, monkeypatch) as directory:
        yield directory


def test_existing_redis_session_opens_as_the_app_sees_it(cli, apps, redis_url) -> None:
    written = write_session(make_app(redis_url=redis_url), {"user_id": 42, "cart": [1, 2]})
    apps.write("shop", redis_app(redis_url))
    result = cli("replay", "--app", "shop:app", "--cookie", written.cookie, "--format", "json")
    assert result.exit_code == 0, result.stderr
    record = result.json()
    assert list(record) == CONTRACT_KEYS
    assert record["interface"] == "RedisSessionInterface"
    assert record["sid"] == written.sid
    assert record["new"] is False
    assert record["data"] == {"user_id": 42, "cart": [1, 2], "_permanent": True}
    assert record["set_cookie"] is None


def test_set_and_unset_save_through_the_app_and_change_the_store(cli, apps, redis_url) -> None:
    writer = make_app(redis_url=redis_url)
    written = write_session(writer, {"user_id": 42, "cart": [1], "prefs": {"lang": "en"}})
    apps.write("shop", redis_app(redis_url))
    result = cli(
        "replay",
        "--app",
        "shop:app",
        "--cookie",
        written.cookie,
        "--set",
        "user_id=7",
        "--set",
        "prefs.theme=dark",
        "--set",
        "note=hello world",
        "--unset",
        "cart",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    record = result.json()
    assert record["new"] is False
    assert record["set_cookie"].startswith(f"session={written.sid};")
    assert "HttpOnly" in record["set_cookie"]
    expected = {"user_id": 7, "prefs": {"lang": "en", "theme": "dark"}, "note": "hello world"}
    assert seen_by_app(writer, written.cookie) == expected
    assert record["data"] == {**expected, "_permanent": True}


def test_unknown_id_and_no_cookie_are_new_sessions_with_the_reason(cli, apps, redis_url) -> None:
    apps.write("shop", redis_app(redis_url))
    unknown = cli("replay", "--app", "shop:app", "--cookie", "no-such-session-id")
    assert unknown.exit_code == 0, unknown.stderr
    assert "new: the store holds no session under the cookie's id" in unknown.stdout
    assert "request  GET / with session=no-such-session-id" in unknown.stdout
    as_json = cli("replay", "--app", "shop:app", "--cookie", "no-such-session-id", "--format", "json").json()
    assert as_json["new"] is True and as_json["sid"] != "no-such-session-id" and as_json["data"] == {"_permanent": True}
    fresh = cli("replay", "--app", "shop:app")
    assert fresh.exit_code == 0
    assert "new: no session cookie in the request" in fresh.stdout


def test_new_session_with_set_is_created_in_the_store(cli, apps, redis_url, redis_client) -> None:
    apps.write("shop", redis_app(redis_url))
    record = cli("replay", "--app", "shop:app", "--set", "user_id=1", "--format", "json").json()
    assert record["new"] is True
    assert record["set_cookie"].startswith(f"session={record['sid']};")
    assert seen_by_app(make_app(redis_url=redis_url), record["sid"]) == {"user_id": 1}
    assert 0 < redis_client.ttl(f"session:{record['sid']}") <= 31 * 86400


def test_dry_run_applies_changes_in_memory_only(cli, apps, redis_url, redis_client) -> None:
    writer = make_app(redis_url=redis_url)
    written = write_session(writer, {"user_id": 42})
    before = redis_client.get(f"session:{written.sid}")
    apps.write("shop", redis_app(redis_url))
    result = cli("replay", "--app", "shop:app", "--cookie", written.cookie, "--set", "user_id=0", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert '"user_id":0' in result.stdout
    assert "saved    no (--dry-run)" in result.stdout
    assert "Set-Cookie" not in result.stdout
    assert redis_client.get(f"session:{written.sid}") == before
    as_json = cli(
        "replay",
        "--app",
        "shop:app",
        "--cookie",
        written.cookie,
        "--unset",
        "user_id",
        "--dry-run",
        "--format",
        "json",
    ).json()
    assert as_json["set_cookie"] is None and "user_id" not in as_json["data"]


def test_signed_ids_verify_with_the_apps_key(cli, apps, redis_url) -> None:
    writer = make_app(redis_url=redis_url, use_signer=True, prefix="signed:")
    written = write_session(writer, {"user_id": 3})
    apps.write("signed", redis_app(redis_url, use_signer=True, prefix="signed:"))
    good = cli("replay", "--app", "signed:app", "--cookie", written.cookie, "--format", "json").json()
    assert good["new"] is False and good["sid"] == written.sid and good["data"]["user_id"] == 3

    human = cli("replay", "--app", "signed:app", "--cookie", written.cookie)
    assert f"key signed:{written.sid}" in human.stdout

    tampered = written.sid + ".AAAAAAAAAAAAAAAAAAAAAAAAAAA"
    bad = cli("replay", "--app", "signed:app", "--cookie", tampered)
    assert bad.exit_code == 0
    assert "new: the cookie's signature does not verify with the app's SECRET_KEY" in bad.stdout

    changed = cli(
        "replay",
        "--app",
        "signed:app",
        "--cookie",
        written.cookie,
        "--set",
        "user_id=4",
        "--format",
        "json",
    ).json()
    assert changed["set_cookie"].startswith(f"session={written.cookie};")
    assert seen_by_app(writer, written.cookie) == {"user_id": 4}


def test_memcached_session(cli, apps, memcached_server) -> None:
    servers = [(memcached_server.host, memcached_server.port)]
    writer = make_app(memcached_servers=servers, prefix="mc-replay:")
    written = write_session(writer, {"user_id": 9})
    # pymemcache sets without waiting for the reply (noreply); a read on the same
    # connection is ordered after the write, so the session is surely stored.
    assert seen_by_app(writer, written.cookie) == {"user_id": 9}
    module = apps.write("mcapp", memcached_app(memcached_server.host, memcached_server.port, prefix="mc-replay:"))
    record = cli("replay", "--app", "mcapp:app", "--cookie", written.cookie, "--format", "json").json()
    assert record["interface"] == "MemcachedSessionInterface"
    assert record["new"] is False and record["data"]["user_id"] == 9
    result = cli("replay", "--app", "mcapp:app", "--cookie", written.cookie, "--set", "user_id=10")
    assert result.exit_code == 0, result.stderr
    assert "Set-Cookie" in result.stdout
    # Read back on the replayed app's own connection (ordered after its write).
    stored = apps.module(module).app.config["SESSION_MEMCACHED"].get(f"mc-replay:{written.sid}")
    assert msgspec.msgpack.decode(stored) == {"user_id": 10, "_permanent": True}


def test_flask_cookie_sessions_the_cookie_is_the_session(cli, apps) -> None:
    module = apps.write("cookieapp", COOKIE_APP)
    cli("replay", "--app", "cookieapp:app")  # loads the module
    app = apps.module(module).app
    serializer = app.session_interface.get_signing_serializer(app)
    cookie = serializer.dumps({"user_id": 42, "cart": (1, 2)})

    record = cli("replay", "--app", "cookieapp:app", "--cookie", cookie, "--format", "json").json()
    assert record == {
        "interface": "SecureCookieSessionInterface",
        "sid": None,
        "new": False,
        "data": {"user_id": 42, "cart": {"$tuple": [1, 2]}},
        "set_cookie": None,
    }

    changed = cli(
        "replay",
        "--app",
        "cookieapp:app",
        "--cookie",
        cookie,
        "--set",
        "user_id=43",
        "--format",
        "json",
    ).json()
    name, _, rest = changed["set_cookie"].partition("=")
    assert name == "shop"  # SESSION_COOKIE_NAME
    assert serializer.loads(rest.split(";")[0]) == {"user_id": 43, "cart": (1, 2)}

    forged = cli("replay", "--app", "cookieapp:app", "--cookie", cookie[:-3] + "xyz")
    assert "new: the cookie's signature does not verify with the app's SECRET_KEY" in forged.stdout
    assert "sid" not in [line.split()[0] for line in forged.stdout.splitlines() if line.strip()]


def test_cookie_header_forms(cli, apps) -> None:
    module = apps.write("cookieapp", COOKIE_APP)
    cli("replay", "--app", "cookieapp:app")
    app = apps.module(module).app
    cookie = app.session_interface.get_signing_serializer(app).dumps({"user_id": 1})
    for given in (f"shop={cookie}", f"Cookie: theme=dark; shop={cookie}"):
        record = cli("replay", "--app", "cookieapp:app", "--cookie", given, "--format", "json").json()
        assert record["new"] is False and record["data"] == {"user_id": 1}, given


def test_custom_session_interface(cli, apps) -> None:
    module = apps.write("customapp", CUSTOM_APP)
    known = cli("replay", "--app", "customapp:app", "--cookie", "known-id", "--format", "json")
    assert known.exit_code == 0, known.stderr
    assert known.json() == {
        "interface": "DictSessionInterface",
        "sid": "known-id",
        "new": False,
        "data": {"user_id": 5},
        "set_cookie": None,
    }
    unknown = cli("replay", "--app", "customapp:app", "--cookie", "other")
    assert "new: the app's session interface reports a new session" in unknown.stdout

    changed = cli(
        "replay",
        "--app",
        "customapp:app",
        "--cookie",
        "known-id",
        "--set",
        'tags=["a"]',
        "--format",
        "json",
    ).json()
    assert changed["set_cookie"].startswith("session=known-id;")
    assert apps.module(module).STORE["known-id"] == {"user_id": 5, "tags": ["a"]}


def test_app_factory_and_flask_app_fallback(cli, apps, redis_url, monkeypatch) -> None:
    written = write_session(make_app(redis_url=redis_url), {"user_id": 42})
    apps.write("factory", redis_app(redis_url, factory=True))
    for target in ("factory:create_app()", "factory:create_app('dev')", "factory"):
        record = cli("replay", "--app", target, "--cookie", written.cookie, "--format", "json")
        assert record.exit_code == 0, (target, record.stderr)
        assert record.json()["data"]["user_id"] == 42
    monkeypatch.setenv("FLASK_APP", "factory:create_app()")
    assert cli("replay", "--cookie", written.cookie, "--format", "json").json()["new"] is False
    monkeypatch.setenv("SESSTOOL_APP", "nosuchmodule:app")  # SESSTOOL_APP beats FLASK_APP
    assert cli("replay", "--cookie", written.cookie).exit_code == 2


def test_app_runs_as_under_flask_cli_and_its_prints_stay_off_stdout(cli, apps, redis_url) -> None:
    module = apps.write(
        "noisy",
        redis_app(
            redis_url,
            extra="print('starting up'); import os; RUN_FROM_CLI = os.environ.get('FLASK_RUN_FROM_CLI')",
        ),
    )
    result = cli("replay", "--app", "noisy:app", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["new"] is True  # stdout is JSON alone
    assert apps.module(module).RUN_FROM_CLI == "true"
    import os

    assert "FLASK_RUN_FROM_CLI" not in os.environ


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        (
            "import nope_not_a_module\n",
            "broken:app",
            "error: cannot load app 'broken:app': ModuleNotFoundError: No module named 'nope_not_a_module'",
        ),
        (
            "raise RuntimeError('config missing\\nsecond line')\n",
            "broken:app",
            "error: cannot load app 'broken:app': RuntimeError: config missing",
        ),
        (
            "x = 1\n",
            "broken",
            "error: cannot load app 'broken': Failed to find Flask application or factory"
            " in module 'broken'. Use 'broken:name' to specify one.",
        ),
        (
            "x = 1\n",
            "missing_module:app",
            "error: cannot load app 'missing_module:app': Could not import 'missing_module'.",
        ),
    ],
)
def test_apps_that_fail_to_load_give_one_error_line(cli, apps, source, target, message) -> None:
    apps.write("broken", source)
    result = cli("replay", "--app", target)
    assert result.exit_code == 2
    assert result.stderr == message + "\n"
    assert result.stdout == ""


def test_replay_needs_an_app(cli, apps) -> None:
    result = cli("replay", "--cookie", "x")
    assert result.exit_code == 2
    assert result.stderr == "error: replay needs the app: give --app IMPORT (or SESSTOOL_APP, FLASK_APP)\n"


def test_bad_changes_are_usage_errors(cli, apps, redis_url) -> None:
    written = write_session(make_app(redis_url=redis_url), {"user_id": 42})
    apps.write("shop", redis_app(redis_url))
    no_equals = cli("replay", "--app", "shop:app", "--set", "user_id")
    assert (no_equals.exit_code, no_equals.stderr) == (
        2,
        "error: invalid --set 'user_id': use KEY=VALUE (KEY may be a dotted path)\n",
    )
    into_number = cli("replay", "--app", "shop:app", "--cookie", written.cookie, "--set", "user_id.x=1")
    assert into_number.exit_code == 2
    assert into_number.stderr == "error: cannot set user_id.x: user_id holds int, not an object\n"


def test_unreachable_store_is_exit_3(cli, apps) -> None:
    from tests.servers import free_port

    apps.write("down", redis_app(f"redis://127.0.0.1:{free_port()}/0"))
    result = cli("replay", "--app", "down:app", "--cookie", "abc")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: the app's open_session failed: ConnectionError")
    assert len(result.stderr.splitlines()) == 1


def test_cookie_app_without_secret_key(cli, apps) -> None:
    apps.write("nokey", "from flask import Flask\napp = Flask(__name__)\n")
    result = cli("replay", "--app", "nokey:app")
    assert result.exit_code == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_secret_key_is_not_printed(cli, apps) -> None:
    apps.write("cookieapp", COOKIE_APP)
    result = cli("replay", "--app", "cookieapp:app", "--set", "a=1")
    assert SECRET not in result.stdout + result.stderr


def test_a_failed_open_leaves_no_request_context_behind(cli, apps) -> None:
    from flask import has_request_context

    from tests.servers import free_port

    apps.write("down", redis_app(f"redis://127.0.0.1:{free_port()}/0"))
    assert cli("replay", "--app", "down:app", "--cookie", "abc").exit_code == 3
    assert not has_request_context()
