"""``sesstool decode`` and ``sesstool sign`` against real Flask apps (3.1 here, 1.0 in a venv)."""

from __future__ import annotations

import json
import threading
import time
import typing as t
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesstool.cookies.format import sign_cookie
from tests.properties import examples

KEY = "app secret key"
HERE = Path(__file__).resolve().parent


# --- Real Flask 3.1 apps --------------------------------------------------------------


def flask_app(secret_key: str = KEY, fallbacks: t.Sequence[str] = ()) -> t.Any:
    """A Flask 3.1 app: /write puts every kind of value in the session, /read shows what it sees."""
    import datetime as dt
    import uuid

    from flask import Flask, redirect, session
    from markupsafe import Markup

    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key, SECRET_KEY_FALLBACKS=list(fallbacks))

    @app.get("/write")
    def write() -> t.Any:
        session.update(
            user_id=42,
            name="Zoë",
            pair=(1, "two"),
            blob=b"\x00\xffbytes",
            html=Markup("<b>bold</b>"),
            uid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
            when=dt.datetime(2026, 11, 21, 10, 0, 0),
            nested={" t": "looks like a tag"},
        )
        return "ok"

    @app.get("/big")
    def big() -> t.Any:
        session["cart"] = ["the same item"] * 40
        return "ok"

    @app.get("/login")
    def login() -> t.Any:
        session["user_id"] = 7
        return redirect("/home")

    @app.get("/plain")
    def plain() -> t.Any:
        return "no session here"

    @app.get("/read")
    def read() -> t.Any:
        return json.dumps({k: [type(v).__name__, repr(v)] for k, v in session.items()})

    return app


def flask_cookie(app: t.Any, path: str = "/write") -> str:
    client = app.test_client()
    assert client.get(path).status_code in (200, 302)
    cookie = client.get_cookie("session")
    assert cookie is not None
    return str(cookie.value)


def flask_reads(app: t.Any, cookie: str) -> dict[str, list[str]]:
    client = app.test_client()
    client.set_cookie("session", cookie)
    return t.cast(dict[str, list[str]], json.loads(client.get("/read").get_data(as_text=True)))


EXPECTED_DATA = {
    "user_id": 42,
    "name": "Zoë",
    "pair": {"$tuple": [1, "two"]},
    "blob": {"$bytes": "AP9ieXRlcw=="},
    "html": {"$markup": "<b>bold</b>"},
    "uid": {"$uuid": "12345678-1234-5678-1234-567812345678"},
    "when": {"$datetime": "2026-11-21T10:00:00+00:00"},
    "nested": {" t": "looks like a tag"},
}


class TestDecodeFlask31:
    def test_every_tag(self, cli: t.Any) -> None:
        result = cli("decode", flask_cookie(flask_app()), "--secret-key", KEY, "--format", "json")
        assert result.exit_code == 0, result.stderr
        record = result.json()
        assert record["data"] == EXPECTED_DATA
        assert list(record)[:5] == ["kind", "data", "compressed", "issued_at", "verified"]
        assert (record["kind"], record["verified"], record["key"], record["legacy"]) == (
            "flask-cookie",
            True,
            "current",
            False,
        )
        issued = record["issued_at"]
        assert issued.endswith("+00:00") and abs(_epoch(issued) - time.time()) < 60

    def test_without_key_verified_is_null(self, cli: t.Any) -> None:
        record = cli("decode", flask_cookie(flask_app()), "--format", "json").json()
        assert record["verified"] is None and record["key"] is None

    def test_compressed(self, cli: t.Any) -> None:
        cookie = flask_cookie(flask_app(), "/big")
        assert cookie.startswith(".")
        record = cli("decode", cookie, "--secret-key", KEY, "--format", "json").json()
        assert record["compressed"] is True and record["data"] == {"cart": ["the same item"] * 40}

    def test_key_rotation(self, cli: t.Any) -> None:
        old_cookie = flask_cookie(flask_app("old key"))
        rotated = flask_app("new key", fallbacks=["old key"])
        assert flask_reads(rotated, old_cookie)["user_id"] == ["int", "42"]  # Flask accepts it, and so do we
        for cookie, key in ((old_cookie, "fallback 1"), (flask_cookie(rotated), "current")):
            record = cli("decode", cookie, "--secret-key", "new key", "--secret-key", "old key", "--format", "json")
            assert (record.json()["verified"], record.json()["key"]) == (True, key)
        denied = cli("decode", old_cookie, "--secret-key", "new key", "--format", "json")
        assert denied.exit_code == 1 and denied.json()["verified"] is False

    def test_wrong_key_prints_record_then_one_error(self, cli: t.Any) -> None:
        result = cli("decode", flask_cookie(flask_app()), "--secret-key", "wrong", "--format", "json")
        assert result.exit_code == 1
        assert result.json()["verified"] is False and result.json()["data"] == EXPECTED_DATA
        assert result.stderr == "error: signature not verified by the 1 key given\n"
        assert "wrong" not in result.stdout + result.stderr

    def test_table_for_people(self, cli: t.Any) -> None:
        result = cli("decode", flask_cookie(flask_app()), "--secret-key", KEY)
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["kind", "flask-cookie"]
        assert "yes, with the current key" in lines[1]
        assert any(line.split() == ["user_id", "42"] for line in lines)
        assert any(line.split(None, 1) == ["pair", '{"$tuple":[1,"two"]}'] for line in lines)
        assert KEY not in result.stdout

    def test_key_sources(self, cli: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        cookie = flask_cookie(flask_app())
        key_file = tmp_path / "keys"
        key_file.write_text(f"new\n{KEY}\n")
        record = cli("decode", cookie, "--secret-key-file", str(key_file), "--format", "json").json()
        assert (record["verified"], record["key"]) == (True, "fallback 1")
        monkeypatch.setenv("SESSTOOL_SECRET_KEY", KEY)  # one key, spaces and all
        record = cli("decode", cookie, "--format", "json").json()
        assert (record["verified"], record["key"]) == (True, "current")


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


class TestSignAcceptedByFlask31:
    def test_flask_reads_signed_data(self, cli: t.Any) -> None:
        data = json.dumps(EXPECTED_DATA)
        result = cli("sign", data, "--secret-key", KEY)
        assert result.exit_code == 0 and result.stderr == ""
        cookie = result.stdout.strip()
        assert result.stdout == cookie + "\n"
        seen = flask_reads(flask_app(), cookie)
        assert seen == {
            "blob": ["bytes", "b'\\x00\\xffbytes'"],
            "html": ["Markup", "Markup('<b>bold</b>')"],
            "name": ["str", "'Zoë'"],
            "nested": ["dict", "{' t': 'looks like a tag'}"],
            "pair": ["tuple", "(1, 'two')"],
            "uid": ["UUID", "UUID('12345678-1234-5678-1234-567812345678')"],
            "user_id": ["int", "42"],
            "when": [
                "datetime",
                "datetime.datetime(2026, 11, 21, 10, 0, tzinfo=datetime.timezone.utc)",
            ],
        }
        assert flask_reads(flask_app("other key"), cookie) == {}

    def test_compressed_when_flask_would(self, cli: t.Any) -> None:
        cookie = cli("sign", json.dumps({"cart": ["the same item"] * 40}), "--secret-key", KEY).stdout.strip()
        assert cookie.startswith(".")
        assert flask_reads(flask_app(), cookie)["cart"][0] == "list"
        assert not cli("sign", '{"a": 1}', "--secret-key", KEY).stdout.startswith(".")

    def test_decode_sign_round_trip(self, cli: t.Any) -> None:
        record = cli("decode", flask_cookie(flask_app()), "--format", "json").stdout
        signed = cli("sign", "-", "--secret-key", "k2", "--format", "json", input=record)
        assert list(signed.json()) == ["cookie"]
        again = cli("decode", signed.json()["cookie"], "--secret-key", "k2", "--format", "json").json()
        assert again["data"] == EXPECTED_DATA and again["verified"] is True

    def test_first_key_is_used(self, cli: t.Any) -> None:
        cookie = cli("sign", "{}", "--secret-key", KEY, "--secret-key", "old").stdout.strip()
        assert flask_reads(flask_app(), cookie) == {}
        assert cli("decode", cookie, "--secret-key", KEY, "--format", "json").json()["key"] == "current"

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (["sign", "{}"], 1, "sign needs a key"),
            (["sign", "[1, 2]", "--secret-key", "k"], 2, "must be a JSON object"),
            (["sign", "{nope", "--secret-key", "k"], 2, "DATA is not JSON"),
            (["sign", '{"s": {"$set": [1]}}', "--secret-key", "k"], 2, "cannot hold a set"),
            (["sign", '{"b": {"$bytes": "!!"}}', "--secret-key", "k"], 2, "malformed $bytes"),
            (["sign", "{}", "--secret-key", "k", "--digest", "nope"], 2, "unknown digest"),
        ],
    )
    def test_errors(self, cli: t.Any, args: list[str], code: int, message: str) -> None:
        result = cli(*args)
        assert (result.exit_code, result.stdout) == (code, "")
        assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1


class TestDecodeForms:
    @pytest.fixture
    def cookie(self) -> str:
        return sign_cookie({"user_id": 42}, KEY)

    @pytest.mark.parametrize(
        "template",
        [
            "{c}",
            "session={c}",
            "Cookie: theme=dark; session={c}",
            "Set-Cookie: session={c}; HttpOnly; Path=/",
        ],
    )
    def test_argument_forms(self, cli: t.Any, cookie: str, template: str) -> None:
        result = cli("decode", template.format(c=cookie), "--format", "json")
        assert result.exit_code == 0 and result.json()["data"] == {"user_id": 42}

    def test_stdin(self, cli: t.Any, cookie: str) -> None:
        result = cli(
            "decode",
            "-",
            "--secret-key",
            KEY,
            "--format",
            "json",
            input=f"Cookie: session={cookie}\n",
        )
        assert result.json()["verified"] is True

    def test_cookie_name(self, cli: t.Any, cookie: str) -> None:
        header = f"Cookie: a=1; my_session={cookie}"
        assert cli("decode", header).exit_code == 2
        assert cli("decode", header, "--cookie-name", "my_session").exit_code == 0

    def test_salt_and_digest(self, cli: t.Any) -> None:
        cookie = sign_cookie({"a": 1}, KEY, salt="custom", digest="sha256")
        assert cli("decode", cookie, "--secret-key", KEY).exit_code == 1
        ok = cli(
            "decode",
            cookie,
            "--secret-key",
            KEY,
            "--salt",
            "custom",
            "--digest",
            "sha256",
            "--format",
            "json",
        )
        assert ok.exit_code == 0 and ok.json()["verified"] is True

    def test_max_age(self, cli: t.Any) -> None:
        old = sign_cookie({"a": 1}, KEY, now=time.time() - 7200)
        fresh = cli("decode", old, "--secret-key", KEY, "--max-age", "3h", "--format", "json")
        assert fresh.exit_code == 0 and fresh.json()["expired"] is False
        expired = cli("decode", old, "--secret-key", KEY, "--max-age", "1h", "--format", "json")
        assert expired.exit_code == 1
        assert (expired.json()["verified"], expired.json()["expired"], expired.json()["key"]) == (
            False,
            True,
            "current",
        )
        assert expired.stderr.startswith("error: signature expired: signed 7") and "--max-age 1h" in expired.stderr
        table = cli("decode", old, "--secret-key", KEY, "--max-age", "1h")
        assert "signed with the current key, but expired" in table.stdout

    def test_legacy_timestamp(self, cli: t.Any) -> None:
        cookie = cli("sign", '{"a": 1}', "--secret-key", KEY, "--legacy").stdout.strip()
        record = cli("decode", cookie, "--secret-key", KEY, "--format", "json").json()
        assert record["legacy"] is True and record["verified"] is True
        assert abs(_epoch(record["issued_at"]) - time.time()) < 60
        assert "itsdangerous < 1.0 timestamp" in cli("decode", cookie).stdout

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            ([""], "empty cookie"),
            (["eyJhIjoxfQ.ZxYgAA"], "truncated"),
            (["not base64!"], "unexpected character"),
            ([".bm90IHpsaWI.ZxYgAA.c2lnbmF0dXJlc2lnbmF0dXJlc2ln"], "not valid zlib"),
            (["x.y.z", "--digest", "shake"], "unknown digest"),
            (["x.y.z", "--max-age", "soon"], "invalid duration"),
            ([], "give a COOKIE or --url"),
        ],
    )
    def test_bad_input_exits_2(self, cli: t.Any, args: list[str], message: str) -> None:
        result = cli("decode", *args)
        assert (result.exit_code, result.stdout) == (2, "")
        assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1


@examples(60)
@given(value=st.text(max_size=80))
def test_cli_decode_never_fails_outside_the_contract(value: str) -> None:
    from tests.conftest import CliRunner

    result = (
        CliRunner()("decode", "--", value, "--format", "json")
        if value.startswith("-")
        else CliRunner()("decode", value, "--format", "json")
    )
    assert result.exit_code in (0, 2)
    if result.exit_code:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    else:
        json.loads(result.stdout)


# --- Flask-Session signed ids ---------------------------------------------------------


def test_flask_session_signed_id(cli: t.Any, tmp_path: Path) -> None:
    from cachelib import SimpleCache
    from flask import Flask, session
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=KEY,
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=SimpleCache(),
        SESSION_USE_SIGNER=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Session(app)

    @app.get("/")
    def index() -> str:
        session["user_id"] = 1
        return "ok"

    client = app.test_client()
    client.get("/")
    cookie = client.get_cookie("session")
    assert cookie is not None
    # After "--": about one Flask-Session id in 64 begins with "-".
    record = cli("decode", "--secret-key", KEY, "--format", "json", "--", cookie.value).json()
    assert record["kind"] == "signed-sid" and "data" not in record
    assert record["verified"] is True and cookie.value.startswith(record["sid"] + ".")
    assert cli("decode", "--secret-key", "nope", "--", cookie.value).exit_code == 1
    words = tmp_path / "words"
    words.write_text(f"a\nb\n{KEY}\n")
    assert cli("crack", "-w", str(words), "--", cookie.value).stdout == KEY + "\n"


# --- --url from a running app on loopback ---------------------------------------------


@pytest.fixture(scope="module")
def served_app() -> t.Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, flask_app())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


class TestDecodeUrl:
    def test_fetches_set_cookie(self, cli: t.Any, served_app: str) -> None:
        result = cli("decode", "--url", served_app + "/write", "--secret-key", KEY, "--format", "json")
        assert result.exit_code == 0, result.stderr
        assert result.json()["data"] == EXPECTED_DATA and result.json()["verified"] is True

    def test_takes_the_cookie_of_a_redirect(self, cli: t.Any, served_app: str) -> None:
        result = cli("decode", "--url", served_app + "/login", "--format", "json")
        assert result.exit_code == 0 and result.json()["data"] == {"user_id": 7}

    def test_no_cookie_is_not_found(self, cli: t.Any, served_app: str) -> None:
        result = cli("decode", "--url", served_app + "/plain")
        assert result.exit_code == 1
        assert result.stderr == f"error: {served_app}/plain (HTTP 200) set no cookie named 'session' (it set: none)\n"

    def test_unreachable(self, cli: t.Any) -> None:
        from tests.servers import free_port

        result = cli("decode", "--url", f"http://127.0.0.1:{free_port()}/", "--timeout", "2")
        assert result.exit_code == 3 and result.stderr.startswith("error: cannot fetch http://127.0.0.1:")

    @pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "not a url", "http://[::1"])
    def test_bad_url(self, cli: t.Any, url: str) -> None:
        result = cli("decode", "--url", url)
        assert result.exit_code == 2 and result.stderr.startswith("error: --url")

    def test_cookie_and_url_together(self, cli: t.Any, served_app: str) -> None:
        assert cli("decode", "x.y.z", "--url", served_app).exit_code == 2


# --- Legacy timestamps: a real Flask 1.0 with itsdangerous 0.24, in its own venv ---------

LEGACY_STACK = ["flask==1.0.4", "werkzeug==0.16.1", "jinja2==2.11.3", "markupsafe==1.1.1",
                "itsdangerous==0.24", "click==7.1.2"]  # fmt: skip
WRITER = str(HERE / "interop" / "legacy_cookie_writer.py")


@pytest.fixture(scope="module")
def legacy_python() -> str:
    from tests.venvs import venv_python

    return venv_python("flask10-itsdangerous024", LEGACY_STACK)


@pytest.mark.interop
class TestLegacyFlask10:
    def test_decode_cookie_written_by_flask_10(self, cli: t.Any, legacy_python: str) -> None:
        from tests.venvs import run_in_venv

        written = json.loads(run_in_venv(legacy_python, WRITER, "write", KEY))
        assert (written["flask"], written["itsdangerous"], written["epoch"]) == (
            "1.0.4",
            "0.24",
            1293840000,
        )
        result = cli("decode", written["cookie"], "--secret-key", KEY, "--format", "json")
        assert result.exit_code == 0, result.stderr
        record = result.json()
        assert (record["legacy"], record["verified"], record["key"]) == (True, True, "current")
        assert abs(_epoch(record["issued_at"]) - written["now"]) < 2
        assert record["data"] == {
            **EXPECTED_DATA,
            "when": {"$datetime": "2016-02-29T12:30:45+00:00"},
        }
        assert cli("decode", written["cookie"], "--secret-key", "nope").exit_code == 1

    def test_flask_10_reads_sign_legacy(self, cli: t.Any, legacy_python: str) -> None:
        from tests.venvs import run_in_venv

        cookie = cli("sign", json.dumps(EXPECTED_DATA), "--secret-key", KEY, "--legacy").stdout.strip()
        seen = json.loads(run_in_venv(legacy_python, WRITER, "read", KEY, cookie))["session"]
        assert seen["pair"] == ["tuple", "(1, 'two')"] and seen["blob"] == [
            "bytes",
            "b'\\x00\\xffbytes'",
        ]
        assert seen["uid"][0] == "UUID" and seen["when"][0] == "datetime" and seen["html"][0] == "Markup"
        rejected = json.loads(run_in_venv(legacy_python, WRITER, "read", "other key", cookie))
        assert rejected == {"session": None}

    def test_crack_legacy_cookie(self, cli: t.Any, legacy_python: str, tmp_path: Path) -> None:
        from tests.venvs import run_in_venv

        written = json.loads(run_in_venv(legacy_python, WRITER, "write", "dev"))
        words = tmp_path / "words"
        words.write_text("admin\nsecret\n'dev'\n")
        assert cli("crack", written["cookie"], "-w", str(words)).stdout == "dev\n"


def test_app_supplies_keys_salt_digest_and_cookie_name(
    cli: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sesstool_cookie_app.py").write_text(
        "import hashlib\n"
        "from flask import Flask\n"
        "from flask.sessions import SecureCookieSessionInterface\n"
        "class Interface(SecureCookieSessionInterface):\n"
        "    salt = 'custom-salt'\n"
        "    digest_method = staticmethod(hashlib.sha256)\n"
        "app = Flask(__name__)\n"
        "app.config.update(SECRET_KEY='current', SECRET_KEY_FALLBACKS=['old'], SESSION_COOKIE_NAME='sid')\n"
        "app.session_interface = Interface()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cookie = sign_cookie({"a": 1}, "old", salt="custom-salt", digest="sha256")
    result = cli("decode", f"Cookie: session=x; sid={cookie}", "--app", "sesstool_cookie_app:app", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert (result.json()["verified"], result.json()["key"]) == (True, "fallback 1")
