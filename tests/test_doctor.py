"""``doctor``: planted problems it must find, a healthy app where it finds none, and the cookie trace."""

from __future__ import annotations

import pickle
import typing as t
from pathlib import Path

import msgspec
import pytest

from tests.apps import AppDir, app_dir, redis_app
from tests.flaskapps import make_app, settle, write_session
from tests.servers import ServerProcess, start_memcached

STRONG = "7c1f0b9e4d2a8356e1f0c3b7a9d2e4f60b8c1d3e5f7a9b2c"
HEALTHY = 'app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Lax")'


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[AppDir]:
    with app_dir(tmp_path, monkeypatch) as directory:
        yield directory


def levels(result: t.Any) -> dict[str, str]:
    return {check["id"]: check["level"] for check in result.json()["checks"]}


def messages(result: t.Any) -> dict[str, str]:
    return {check["id"]: check["message"] for check in result.json()["checks"]}


def test_a_healthy_app_passes_every_check(cli: t.Any, redis_url: str, apps: AppDir) -> None:
    app = make_app(redis_url=redis_url, secret_key=STRONG)
    for n in range(3):
        write_session(app, {"_user_id": n})
    apps.write("healthy", redis_app(redis_url, secret=STRONG, extra=HEALTHY))
    result = cli("doctor", "--app", "healthy:app", "--format", "json")
    assert result.exit_code == 0, result.stdout
    report = result.json()
    assert set(report) == {"checks", "failed", "warnings"}
    assert all(set(check) == {"id", "level", "message"} for check in report["checks"])
    assert report["failed"] == 0 and report["warnings"] == 0, report
    assert {"store.reachable", "sessions.present", "serializers", "sessions.pickle", "sessions.expiry",
            "sessions.size", "app.lifetime", "app.secret_key", "app.cookie_secure", "app.cookie_httponly",
            "app.cookie_samesite", "app.signer"} <= set(levels(result))
    assert "3 sessions under 'session:'" in messages(result)["sessions.present"]
    table = cli("doctor", "--app", "healthy:app")
    assert table.exit_code == 0 and "0 failed, 0 warnings" in table.stdout and "FAIL" not in table.stdout


def test_planted_problems_are_found(cli: t.Any, redis_url: str, redis_client: t.Any, apps: AppDir) -> None:
    weak = "changeme"
    app = make_app(redis_url=redis_url, secret_key=weak)
    write_session(app, {"_user_id": 1})
    redis_client.set(b"session:pickled-one-from-flask-session-0-6", pickle.dumps({"_user_id": 2}, protocol=4),
                     ex=3600)
    redis_client.set(b"session:forever-and-ever-session-id-xyz", msgspec.msgpack.encode({"a": 1}))
    redis_client.set(b"session:json-written-session-id-0000000", msgspec.json.encode({"a": 1}), ex=60)
    redis_client.set(b"session:too-long-lived-session-id-00000", msgspec.msgpack.encode({"a": 1}), ex=90 * 86400)
    extra = 'app.config.update(SESSION_COOKIE_HTTPONLY=False, SESSION_COOKIE_SAMESITE="None")'
    apps.write("planted", redis_app(redis_url, secret=weak, extra=extra))
    result = cli("doctor", "--app", "planted:app", "--format", "json")
    assert result.exit_code == 1
    found, text = levels(result), messages(result)
    assert found["sessions.pickle"] == "warn" and "migrate --to msgpack --dry-run" in text["sessions.pickle"]
    assert found["sessions.expiry"] == "warn" and "1 session never expires" in text["sessions.expiry"]
    assert found["serializers"] == "warn" and "json 1" in text["serializers"]
    assert found["app.lifetime"] == "warn" and "1 session lives longer" in text["app.lifetime"]
    assert found["app.secret_key"] == "fail" and "well-known" in text["app.secret_key"]
    assert found["app.cookie_secure"] == "warn"
    assert found["app.cookie_httponly"] == "fail"
    assert found["app.cookie_samesite"] == "fail"  # None without Secure: browsers drop the cookie
    assert weak not in result.stdout and weak not in result.stderr
    assert result.json()["failed"] == sum(level == "fail" for level in found.values())


@pytest.mark.parametrize(("key", "why"), [("short-key", "9 bytes"), ("a" * 40, "1 distinct"),
                                           ("Your_Secret-Key", "well-known")])
def test_weak_keys(cli: t.Any, redis_url: str, apps: AppDir, key: str, why: str) -> None:
    apps.write("weak", redis_app(redis_url, secret=key, extra=HEALTHY))
    result = cli("doctor", "--app", "weak:app", "--format", "json")
    assert result.exit_code == 1 and why in messages(result)["app.secret_key"]
    assert key not in result.stdout


def test_an_unreachable_store_is_a_failed_check(cli: t.Any) -> None:
    from tests.servers import free_port

    result = cli("doctor", "--store", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "2", "--format", "json")
    assert result.exit_code == 1
    assert levels(result) == {"store.reachable": "fail"} and result.json()["failed"] == 1


def test_no_sessions_under_the_prefix_names_the_prefixes_that_hold_some(cli: t.Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url, prefix="shop_sess:")
    write_session(app, {"a": 1})
    write_session(app, {"a": 2})
    result = cli("doctor", "--store", redis_url, "--format", "json")
    assert result.exit_code == 1
    assert levels(result)["sessions.present"] == "fail"
    assert "'shop_sess:' (2 keys)" in messages(result)["sessions.present"]
    empty = cli("doctor", "--store", redis_url, "--prefix", "nothing:", "--format", "json")
    assert "shop_sess:" in messages(empty)["sessions.present"]


@pytest.fixture
def own_memcached() -> t.Iterator[ServerProcess]:
    """A memcached of one test's own: nothing another test wrote is in it (apps write
    with noreply, so a flush may come before their last writes), and no LRU maintainer
    moves items while the listing's dump walks them (the dump skips an item in motion)."""
    server = start_memcached(["-o", "no_lru_maintainer"])
    yield server
    server.stop()


def test_values_near_memcacheds_item_limit(cli: t.Any, own_memcached: ServerProcess) -> None:
    from pymemcache.client.base import Client

    client = Client((own_memcached.host, own_memcached.port))
    # Acknowledged writes: the listing reads on another connection, which memcached
    # may serve before it reads what this one sent.
    client.set(b"session:big-session-near-the-limit-0001", msgspec.msgpack.encode({"blob": "x" * 960_000}),
               expire=600, noreply=False)
    client.set(b"session:small-session-0000000000000000001", msgspec.msgpack.encode({"a": 1}), expire=600,
               noreply=False)
    client.close()
    url = f"memcached://{own_memcached.host}:{own_memcached.port}"
    result = cli("doctor", "--store", url, "--format", "json")
    assert levels(result)["sessions.size"] == "warn", result.stdout
    assert "1 value near the store's 1 MiB item limit" in messages(result)["sessions.size"]


# --- --cookie: why is this session lost? ------------------------------------------------


@pytest.fixture
def signed(redis_url: str, apps: AppDir) -> t.Any:
    app = make_app(redis_url=redis_url, use_signer=True, secret_key=STRONG)
    apps.write("signed", redis_app(redis_url, use_signer=True, secret=STRONG, fallbacks=["an-older-key-rotated-out"],
                                   extra=HEALTHY))
    return app


def test_a_good_cookie_traces_clean(cli: t.Any, signed: t.Any) -> None:
    written = write_session(signed, {"_user_id": 5})
    result = cli("doctor", "--app", "signed:app", "--cookie", f"session={written.cookie}", "--format", "json")
    assert result.exit_code == 0, result.stdout
    found, text = levels(result), messages(result)
    for check in ("cookie.signature", "cookie.sid", "cookie.key", "cookie.ttl", "cookie.decode", "store.reachable"):
        assert found[check] == "ok", (check, text)
    assert f"session:{written.sid}" in text["cookie.sid"]
    assert "decodes as msgpack" in text["cookie.decode"]


def test_a_cookie_only_a_fallback_verifies_is_a_lost_session(cli: t.Any, signed: t.Any) -> None:
    written = write_session(signed, {"_user_id": 5})
    old = cli("sign", "--sid", written.sid, "--secret-key", "an-older-key-rotated-out").stdout.strip()
    result = cli("doctor", "--app", "signed:app", "--cookie", old, "--format", "json")
    assert result.exit_code == 1
    assert levels(result)["cookie.signature"] == "fail"
    assert "only fallback 1 verifies it" in messages(result)["cookie.signature"]
    assert levels(result)["app.signer"] == "warn"  # fallbacks set, which the signer ignores
    forged = cli("sign", "--sid", written.sid, "--secret-key", "nobody's key").stdout.strip()
    assert "no key verifies it" in messages(cli("doctor", "--app", "signed:app", "--cookie", forged,
                                                 "--format", "json"))["cookie.signature"]


def test_a_deleted_session(cli: t.Any, signed: t.Any, redis_client: t.Any) -> None:
    written = write_session(signed, {"_user_id": 5})
    redis_client.delete(f"session:{written.sid}")
    result = cli("doctor", "--app", "signed:app", "--cookie", written.cookie, "--format", "json")
    assert result.exit_code == 1
    assert "expired or was deleted" in messages(result)["cookie.key"]


def test_a_session_under_another_prefix_or_database(cli: t.Any, signed: t.Any, redis_client: t.Any,
                                                    redis_url: str) -> None:
    import redis

    written = write_session(signed, {"_user_id": 5})
    redis_client.rename(f"session:{written.sid}", f"old_prefix:{written.sid}")
    moved = messages(cli("doctor", "--app", "signed:app", "--cookie", written.cookie, "--format", "json"))
    assert f"under 'old_prefix:{written.sid}' in this database" in moved["cookie.key"]
    db3 = redis.Redis.from_url(redis_url[: -len("/0")] + "/3")
    db3.set(f"session:{written.sid}", redis_client.get(f"old_prefix:{written.sid}"), ex=600)
    redis_client.delete(f"old_prefix:{written.sid}")
    elsewhere = messages(cli("doctor", "--store", redis_url, "--secret-key", STRONG, "--cookie", written.cookie,
                             "--format", "json"))
    assert f"'session:{written.sid}' in {redis_url[: -len('/0')]}/3:" in elsewhere["cookie.key"]
    db3.flushdb()
    db3.close()


def test_an_undecodable_session(cli: t.Any, signed: t.Any, redis_client: t.Any) -> None:
    written = write_session(signed, {"_user_id": 5})
    redis_client.set(f"session:{written.sid}", b"\xc1\xc1 garbage \x1b[2J", ex=600)
    result = cli("doctor", "--app", "signed:app", "--cookie", written.cookie)
    assert result.exit_code == 1
    assert "FAIL  cookie.decode" in result.stdout and "\x1b" not in result.stdout


def test_a_flask_cookie_session_is_not_a_session_id(cli: t.Any, redis_url: str) -> None:
    from sesstool.cookies.format import sign_cookie

    cookie = sign_cookie({"a": 1}, STRONG)
    result = cli("doctor", "--store", redis_url, "--cookie", cookie, "--format", "json")
    assert result.exit_code == 1 and levels(result)["cookie.kind"] == "fail"


def test_memcached_sessions_under_another_prefix(cli: t.Any, own_memcached: ServerProcess) -> None:
    app = make_app(memcached_servers=[(own_memcached.host, own_memcached.port)], prefix="other:")
    write_session(app, {"a": 1})
    settle(app)
    url = f"memcached://{own_memcached.host}:{own_memcached.port}"
    result = cli("doctor", "--store", url, "--format", "json")
    assert result.exit_code == 1
    assert "'other:' (1 key)" in messages(result)["sessions.present"]


def test_hostile_keys_and_values_never_reach_the_terminal_raw(cli: t.Any, redis_url: str, redis_client: t.Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from sesstool.cli.main import main
    from sesstool.render.env import Environment

    token = "A" * 43
    redis_client.set(f"\x1b]52;c;aGk=\x07[red]evil:{token}".encode(), msgspec.msgpack.encode({"a": 1}), ex=60)
    redis_client.set(b"session:" + b"\x1b[2J" + token.encode(), b"\xc1\xc1\xc1", ex=60)
    monkeypatch.setenv("FORCE_COLOR", "1")
    for rich in (False, True):
        env = Environment(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=rich,
                          stderr_isatty=False, no_color=not rich)
        for args in ([], ["--prefix", "nothing:"], ["--cookie", "\x1b[2J" + token]):
            main(["doctor", "--store", redis_url, *args], env)
        out = t.cast(io.StringIO, env.stdout).getvalue()
        assert "\x1b]52" not in out and "\x1b[2J" not in out and "\x07" not in out
        assert "\\x1b" in out


def test_a_cookie_session_app_gets_its_app_checks(cli: t.Any, apps: AppDir) -> None:
    apps.write("cookies", f"""
from flask import Flask
app = Flask(__name__)
app.config.update(SECRET_KEY={STRONG!r}, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict")
""")
    result = cli("doctor", "--app", "cookies:app", "--format", "json")
    assert result.exit_code == 0, result.stdout
    found = levels(result)
    assert found["store.kind"] == "ok" and "store.reachable" not in found
    assert found["app.secret_key"] == "ok" and found["app.cookie_samesite"] == "ok"
