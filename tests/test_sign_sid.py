"""``sign --sid``: the signed session-id cookie value, byte-identical to a real Flask-Session 0.8 app's."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from tests.apps import app_dir, redis_app
from tests.flaskapps import SECRET, make_app, read_session, write_session


def test_the_cookie_is_the_one_flask_session_sets(cli: t.Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url, use_signer=True)
    written = write_session(app, {"user_id": 42})
    assert "." in written.cookie
    result = cli("sign", "--sid", written.sid, "--secret-key", SECRET)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == written.cookie + "\n"
    as_json = cli("sign", "--sid", written.sid, "--secret-key", SECRET, "--format", "json")
    assert as_json.json() == {"cookie": written.cookie}


def test_the_app_opens_the_session_it_names(cli: t.Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url, use_signer=True)
    written = write_session(app, {"user_id": 7})
    cookie = cli("sign", "--sid", written.sid, "--secret-key", SECRET).stdout.strip()
    assert read_session(app, cookie).get("user_id") == 7
    wrong = cli("sign", "--sid", written.sid, "--secret-key", "another key").stdout.strip()
    assert "user_id" not in read_session(app, wrong)


def test_the_current_key_signs_not_a_fallback(cli: t.Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url, use_signer=True)
    written = write_session(app, {"a": 1})
    result = cli("sign", "--sid", written.sid, "--secret-key", SECRET, "--secret-key", "old key")
    assert result.stdout.strip() == written.cookie


def test_keys_come_from_the_app(cli: t.Any, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(redis_url=redis_url, use_signer=True)
    written = write_session(app, {"a": 1})
    with app_dir(tmp_path, monkeypatch) as apps:
        # The app's interface is Flask-Session's: its cookie salt must not leak into --sid.
        apps.write("signed", redis_app(redis_url, use_signer=True, fallbacks=["older"]))
        result = cli("sign", "--sid", written.sid, "--app", "signed:app")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == written.cookie


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sign", "--sid", "abc"], 1, "sign needs a key"),
        (["sign", "--secret-key", "k"], 2, "give DATA (a JSON object) or --sid SID"),
        (["sign", "{}", "--sid", "abc", "--secret-key", "k"], 2, "give DATA (a JSON object) or --sid SID"),
        (["sign", "--sid", "a b", "--secret-key", "k"], 2, "not a session id a cookie can carry"),
        (["sign", "--sid", "a\x1b[2Jb", "--secret-key", "k"], 2, "a\\x1b[2Jb"),
        (["sign", "--sid", "abc", "--legacy", "--secret-key", "k"], 2, "no timestamp"),
    ],
)
def test_refusals(cli: t.Any, args: list[str], code: int, message: str) -> None:
    result = cli(*args)
    assert result.exit_code == code
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "\x1b" not in result.stderr and result.stdout == ""


def test_decode_reads_back_what_sign_made(cli: t.Any) -> None:
    cookie = cli("sign", "--sid", "some-session-id", "--secret-key", "k").stdout.strip()
    record = cli("decode", cookie, "--secret-key", "k", "--format", "json").json()
    assert record["kind"] == "signed-sid" and record["sid"] == "some-session-id" and record["verified"] is True


def test_an_id_beginning_with_a_dash(cli: t.Any) -> None:
    from sesstool.cookies.format import sign_sid

    result = cli("sign", "--sid", "-Xy9abcdefghijklmnopqrstu", "--secret-key", "k")
    assert result.exit_code == 0 and result.stdout.strip() == sign_sid("-Xy9abcdefghijklmnopqrstu", "k")
