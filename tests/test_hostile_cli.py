"""Hostile input and hostile servers at the CLI: no secret in any output, no terminal
escape passed through, no server that can hold a command past ``--timeout``, and
one ``error:`` line (never a traceback) for every malformed input."""

from __future__ import annotations

import io
import os
import socket
import stat
import threading
import time
import typing as t
from pathlib import Path

import pytest

from sesstool.cli.main import main
from sesstool.render.env import Environment
from tests.apps import AppDir, app_dir, redis_app
from tests.flaskapps import make_app, write_session
from tests.servers import ServerProcess, free_port, start_redis

SECRET = "Pl4nted-S3cret-Zq9"  # distinctive: found nowhere unless leaked


def _closed_port() -> int:
    return free_port()


def _assert_one_error_line(result: t.Any, code: int) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


# -- secrets ------------------------------------------------------------------------------


def _secret_paths(port: int, redis_port: int) -> list[list[str]]:
    closed = f"127.0.0.1:{port}"
    return [
        ["list", "--store", f"redis://:{SECRET}@[::1"],  # invalid IPv6
        ["list", "--store", f"redis://:{SECRET}@[::1]:{port}/0"],
        ["list", "--store", f"redis://:ab/{SECRET}@{closed}"],  # "/" in the password: malformed
        ["list", "--store", f"redis://:{SECRET}/x@{closed}"],
        ["list", "--store", f"redis://user:{SECRET}@{closed}/0"],  # unreachable
        ["list", "--store", f"redis://{closed}/0?password={SECRET}"],
        ["list", "--store", f"redis://127.0.0.1:{redis_port}/0?password={SECRET}"],  # wrong password
        ["list", "--store", f"redis://default:{SECRET}@127.0.0.1:{redis_port}/0"],
        ["list", "--store", f"redis+sentinel://:{SECRET}@{closed}/mymaster"],
        ["list", "--store", f"redis+cluster://:{SECRET}@{closed}"],
        ["list", "--store", f"memcached://:{SECRET}@{closed}"],
        ["list", "--store", f"memcached://{closed}?password={SECRET}"],
        ["list", "--store", f"bogus://:{SECRET}@host"],
        ["show", "abcdefgh.AAAAAAAAAAAAAAAAAAAAAAAAAAA", "--secret-key", SECRET, "--store", f"redis://{closed}"],
        ["decode", "not-a-cookie!", "--secret-key", SECRET],
        ["decode", "eyJhIjoxfQ.ZZZZZZ.AAAAAAAAAAAAAAAAAAAAAAAAAAA", f"--secret-key={SECRET}"],
        ["decode", "--url", f"http://user:{SECRET}@{closed}/login"],
        ["decode", "--url", f"http://user:{SECRET}@[::1/login"],
        ["sign", "[1]", "--secret-key", SECRET],
        ["crack", "not a cookie", "--wordlist", "/nonexistent"],
    ]


@pytest.fixture(scope="module")
def guarded_redis() -> t.Iterator[ServerProcess]:
    """A redis-server that wants another password than the planted one."""
    server = start_redis(password="the-real-password")
    yield server
    server.stop()


def test_no_error_path_prints_a_planted_secret(cli, guarded_redis, monkeypatch) -> None:
    monkeypatch.delenv("SESSTOOL_DEBUG", raising=False)
    for args in _secret_paths(_closed_port(), guarded_redis.port):
        result = cli(*args)
        assert result.exit_code != 0, args
        output = result.stdout + result.stderr
        assert SECRET not in output, (args, output)
        assert "Traceback" not in output, (args, output)
        assert result.stderr.count("\n") == 1, (args, result.stderr)


def test_secrets_from_the_environment_and_key_files_are_masked(cli, tmp_path, monkeypatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("SESSTOOL_STORE", f"redis://:{SECRET}@127.0.0.1:{port}/0")
    result = cli("list")
    _assert_one_error_line(result, 3)
    assert SECRET not in result.stderr and ":***@" in result.stderr

    keys = tmp_path / "keys"
    keys.write_bytes(SECRET.encode() + b"\n\xff\xfe" + SECRET.encode() + b"\n")
    bad = cli("decode", "eyJhIjoxfQ.ZZZZZZ.AAAAAAAAAAAAAAAAAAAAAAAAAAA", "--secret-key-file", str(keys))
    _assert_one_error_line(bad, 2)
    assert bad.stderr == f"error: --secret-key-file {keys}: line 2 is not UTF-8 text\n"


def test_a_message_quoting_a_key_file_secret_is_masked(cli, redis_url, redis_client, tmp_path) -> None:
    # A store key that happens to hold the secret, quoted back by a NotFound error.
    keys = tmp_path / "keys"
    keys.write_text(f"{SECRET}\n")
    result = cli("expire", f"x{SECRET}y", "--in", "5", "--store", redis_url, "--secret-key-file", str(keys))
    _assert_one_error_line(result, 1)
    assert SECRET not in result.stderr and "x***y" in result.stderr


# -- terminal injection -------------------------------------------------------------------

HOSTILE_SIDS = [
    "[bold]x[/]",
    "[/]",
    "[link=https://evil.example]click[/link]",
    "osc\x1b]52;c;SGVsbG8=\x07",
    "csi\x1b[2J\x1b[31mred",
    "two\nlines",
    "cr\rreturn",
    "bidi\u202eevil",
    "c1\x9bx",
]


@pytest.fixture
def hostile_keys(redis_client) -> None:
    for sid in HOSTILE_SIDS:
        redis_client.set(f"session:{sid}".encode(), b"\x81\xa1a\x01", ex=100)  # msgpack {"a": 1}


def _run(args: list[str], *, rich: bool) -> tuple[int, str, str]:
    env = Environment(
        stdin=io.StringIO(""),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        stdin_isatty=False,
        stdout_isatty=rich,
        stderr_isatty=False,
        no_color=not rich,
    )
    code = main(args, env)
    return code, t.cast(io.StringIO, env.stdout).getvalue(), t.cast(io.StringIO, env.stderr).getvalue()


def _no_escapes_from_data(text: str) -> None:
    assert "\x1b]52" not in text and "\x07" not in text and "\x1b[2J" not in text and "\x1b[31m" not in text
    assert "\r" not in text and "\u202e" not in text and "\x9b" not in text


@pytest.mark.parametrize("rich", [True, False], ids=["rich-terminal", "plain"])
def test_the_table_escapes_markup_and_control_characters(redis_url, hostile_keys, monkeypatch, rich) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich renders as on a real terminal
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = _run(["list", "--store", redis_url, "--data"], rich=rich)
    assert code == 0, err
    _no_escapes_from_data(out)
    for shown in ("[bold]x[/]", "[link=https://evil.example]click[/link]", "osc\\x1b]52;c;SGVsbG8=\\x07",
                  "two\\nlines", "bidi\\u202eevil"):
        assert shown in out, out
    rows = [line for line in out.splitlines() if "{" in line]  # each session's data cell
    assert len(rows) == len(HOSTILE_SIDS)


def test_csv_and_ndjson_keep_one_record_a_line(cli, redis_url, hostile_keys) -> None:
    csv = cli("list", "--store", redis_url, "--format", "csv")
    assert csv.exit_code == 0
    assert len(csv.stdout.split("\n")) == len(HOSTILE_SIDS) + 2  # header, rows, final newline
    _no_escapes_from_data(csv.stdout)
    ndjson = cli("list", "--store", redis_url, "--format", "ndjson")
    assert sorted(r["sid"] for r in ndjson.ndjson()) == sorted(HOSTILE_SIDS)
    assert len(ndjson.stdout.split("\n")) == len(HOSTILE_SIDS) + 1
    assert "\x1b" not in ndjson.stdout and "\r" not in ndjson.stdout


def test_show_and_error_lines_escape_stored_keys(cli, redis_url, hostile_keys) -> None:
    for sid in HOSTILE_SIDS:
        shown = cli("show", f"session:{sid}", "--store", redis_url)
        assert shown.exit_code == 0, shown.stderr
        _no_escapes_from_data(shown.stdout)
        assert shown.stdout.startswith("key ") and shown.stdout.count("\n") == 9
        missing = cli("expire", f"session:gone{sid}", "--in", "5", "--store", redis_url)
        _assert_one_error_line(missing, 1)
        _no_escapes_from_data(missing.stderr)


def test_warning_lines_escape_control_characters() -> None:
    stream = io.StringIO()
    Environment(stderr=stream, stdin=io.StringIO(), stdout=io.StringIO()).warn("key 'a\nb\x1b]52;c;x\x07'")
    assert stream.getvalue() == "warning: key 'a\\nb\\x1b]52;c;x\\x07'\n"


# -- deadlines ------------------------------------------------------------------------------


class Slowloris:
    """A TCP server that answers every connection one byte at a time, forever."""

    def __init__(self, first: bytes, drip: bytes, interval: float = 0.05) -> None:
        self.first, self.drip, self.interval = first, drip, interval
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(0.2)
                with _ignored(OSError):
                    conn.recv(65536)
                conn.sendall(self.first)
                while not self.stop.wait(self.interval):
                    conn.sendall(self.drip)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listener.close()


class _ignored:
    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: t.Any, *_: t.Any) -> bool:
        return kind is not None and issubclass(kind, self.kinds)


@pytest.fixture
def slowloris() -> t.Iterator[t.Callable[[bytes, bytes], Slowloris]]:
    servers: list[Slowloris] = []

    def start(first: bytes, drip: bytes) -> Slowloris:
        servers.append(Slowloris(first, drip))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize(
    ("args", "first", "drip"),
    [
        (["list", "--store", "redis://127.0.0.1:{port}/0"], b"+", b"a"),  # a reply that never ends
        (["show", "abc", "--store", "redis://127.0.0.1:{port}/0"], b"$999999\r\n", b"a"),
        (["list", "--store", "memcached://127.0.0.1:{port}"], b"", b"x"),
        (["decode", "--url", "http://127.0.0.1:{port}/"], b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"),
    ],
    ids=["redis-list", "redis-show", "memcached-list", "decode-url"],
)
def test_a_server_that_drips_one_byte_at_a_time_is_cut_off(cli, slowloris, args, first, drip) -> None:
    server = slowloris(first, drip)
    started = time.monotonic()
    result = cli(*[a.format(port=server.port) for a in args], "--timeout", "1")
    elapsed = time.monotonic() - started
    _assert_one_error_line(result, 3)
    assert "timed out after 1s" in result.stderr and "--timeout" in result.stderr
    assert elapsed < 8  # the deadline, not the socket timeouts (10 s a read) or forever


def test_the_timeout_comes_from_the_environment_and_is_validated(cli, slowloris, monkeypatch) -> None:
    server = slowloris(b"+", b"a")
    monkeypatch.setenv("SESSTOOL_TIMEOUT", "0.5")
    result = cli("list", "--store", f"redis://127.0.0.1:{server.port}/0")
    _assert_one_error_line(result, 3)
    assert "timed out after 0.5s" in result.stderr
    for bad in ("0", "-1", "nan", "inf", "soon"):
        _assert_one_error_line(cli("list", "--timeout", bad), 2)


def test_a_bad_http_status_line_is_an_error_line(cli, slowloris) -> None:
    server = slowloris(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"")
    result = cli("decode", "--url", f"http://127.0.0.1:{server.port}/", "--timeout", "3")
    _assert_one_error_line(result, 3)
    assert "did not answer with valid HTTP" in result.stderr


# -- tracebacks turned into error lines ---------------------------------------------------


def test_malformed_values_are_one_error_line(cli, redis_url, redis_client) -> None:
    redis_client.set("session:abc", b"\x80", ex=100)
    cases = [
        (["list", "--store", f"redis+cluster://127.0.0.1:{_closed_port()}", "--timeout", "5"], 3),
        (["list", "--store", "redis://[::1"], 2),
        (["list", "--store", "memcached://[::1"], 2),
        (["expire", "abc", "--at", "99999-01-01T00:00:00+00:00", "--store", redis_url], 2),
        (["expire", "abc", "--at", "9999-12-31T23:00:00-05:00", "--store", redis_url], 2),
        (["expire", "abc", "--at", "1" + "0" * 30, "--store", redis_url], 2),
        (["expire", "abc", "--in", "9" * 40 + "d", "--store", redis_url], 2),
        (["expire", "abc", "--in", "36700d", "--store", redis_url], 2),
        (["purge", "--idle", "99999999999d", "--dry-run", "--store", redis_url], 2),
        (["decode", "--url", "http://[::1/"], 2),
    ]
    for args, code in cases:
        _assert_one_error_line(cli(*args), code)
    assert redis_client.ttl("session:abc") > 0  # nothing was changed on the way


def test_expire_at_the_last_second_of_year_9999_works(cli, redis_url, redis_client) -> None:
    redis_client.set("session:abc", b"\x80", ex=100)
    result = cli("expire", "abc", "--at", "9999-12-31T23:59:59+00:00", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["expires_at"] == "9999-12-31T23:59:59+00:00"


# -- files holding session data -------------------------------------------------------------


def test_purge_backup_is_private_and_never_follows_a_symlink(cli, redis_url, redis_client, tmp_path) -> None:
    redis_client.set("session:a", b"\x81\xa1a\x01", ex=100)
    backup = tmp_path / "backup.ndjson"
    old_umask = os.umask(0o022)
    try:
        result = cli("purge", "--all", "--yes", "--backup", str(backup), "--store", redis_url)
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert '"sid":"a"' in backup.read_text()

    redis_client.set("session:b", b"\x81\xa1a\x01", ex=100)
    target = tmp_path / "victim"
    target.write_text("keep me")
    planted = tmp_path / "planted.ndjson"
    planted.symlink_to(target)
    refused = cli("purge", "--all", "--yes", "--backup", str(planted), "--store", redis_url)
    _assert_one_error_line(refused, 2)
    assert target.read_text() == "keep me" and redis_client.exists("session:b") == 1
    dangling = tmp_path / "dangling.ndjson"
    dangling.symlink_to(tmp_path / "nowhere")
    _assert_one_error_line(cli("purge", "--all", "--yes", "--backup", str(dangling), "--store", redis_url), 2)
    assert not (tmp_path / "nowhere").exists()


# -- contract bugs --------------------------------------------------------------------------


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[AppDir]:
    with app_dir(tmp_path, monkeypatch) as directory:
        yield directory


def test_replay_of_an_unsigned_unknown_id_with_the_signer_on_is_a_new_session(cli, apps, redis_url) -> None:
    apps.write("signed", redis_app(redis_url, use_signer=True))
    result = cli("replay", "--app", "signed:app", "--cookie", "unknown-id-without-signature", "--format", "json")
    assert result.exit_code == 0, result.stderr
    record = result.json()
    assert record["new"] is True and record["sid"] != "unknown-id-without-signature"


def test_delete_finds_the_cookie_by_the_apps_cookie_name(cli, apps, redis_url, redis_client) -> None:
    written = write_session(make_app(redis_url=redis_url), {"user_id": 1})
    apps.write("named", redis_app(redis_url, extra="app.config['SESSION_COOKIE_NAME'] = 'sid_cookie'"))
    header = f"Cookie: theme=dark; sid_cookie={written.sid}"
    shown = cli("show", header, "--app", "named:app")
    assert shown.exit_code == 0, shown.stderr
    deleted = cli("delete", header, "--app", "named:app", "--format", "json")
    assert deleted.exit_code == 0, deleted.stderr
    assert redis_client.exists(f"session:{written.sid}") == 0


LEAKY_APP = f"""
import threading

from flask import Flask
from flask.sessions import SecureCookieSessionInterface


class Leaky(SecureCookieSessionInterface):
    def open_session(self, app, request):
        if request.path == "/hang":
            threading.Event().wait()  # a store that never answers
        raise RuntimeError("cannot open the session with key " + app.secret_key)


app = Flask(__name__)
app.secret_key = {SECRET!r}
app.session_interface = Leaky()
"""


def test_replay_masks_the_apps_key_and_is_bounded_by_the_timeout(cli, apps) -> None:
    apps.write("leaky", LEAKY_APP)
    leaked = cli("replay", "--app", "leaky:app", "--cookie", "abc")
    _assert_one_error_line(leaked, 4)
    assert SECRET not in leaked.stderr and "with key ***" in leaked.stderr
    started = time.monotonic()
    hung = cli("replay", "--app", "leaky:app", "--path", "/hang", "--timeout", "0.5")
    _assert_one_error_line(hung, 3)
    assert "timed out after 0.5s" in hung.stderr and time.monotonic() - started < 8
    from flask import has_request_context

    assert not has_request_context()  # the interrupted request left nothing behind
