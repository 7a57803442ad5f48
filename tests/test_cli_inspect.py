"""``list``, ``show`` and ``stats`` on a real redis-server with sessions written by the
real Flask 3.1 + Flask-Session 0.8 (msgpack and json, signer on and off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.flaskapps import SECRET, make_app, write_session
from tests.servers import free_port


@pytest.fixture
def populated(redis_url: str):
    """Sessions from four real app configurations; returns (url, {name: WrittenSession})."""
    written = {}
    msgpack_app = make_app(redis_url=redis_url)
    json_app = make_app(redis_url=redis_url, fmt="json")
    signed_app = make_app(redis_url=redis_url, use_signer=True)
    written["alice"] = write_session(msgpack_app, {"user_id": 42, "name": "alice", "cart": {"items": [1, 2]}})
    written["bob"] = write_session(json_app, {"user_id": 7, "name": "bob"})
    written["carol"] = write_session(signed_app, {"user_id": 42, "name": "carol", "admin": True})
    # What a bot leaves behind with Flask-Session <= 0.5 (0.8 no longer saves it).
    import redis

    redis.Redis.from_url(redis_url).set("session:bot", b"\x81\xaa_permanent\xc3", ex=3600)
    return redis_url, written


def test_list_json_has_the_contract_shape(cli, populated) -> None:
    url, written = populated
    result = cli("list", "--store", url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = result.json()
    by_sid = {r["sid"]: r for r in records}
    alice = by_sid[written["alice"].sid]
    assert list(alice) == ["sid", "key", "ttl", "size", "serializer"]
    assert alice["key"] == "session:" + written["alice"].sid
    assert alice["serializer"] == "msgpack"
    assert 31 * 86400 - 5 <= alice["ttl"] <= 31 * 86400
    assert by_sid[written["bob"].sid]["serializer"] == "json"
    assert len(records) == 4


def test_where_selects_by_data_across_serializers(cli, populated) -> None:
    url, written = populated
    result = cli("list", "--store", url, "--where", "user_id=42", "--format", "ndjson", "--data")
    assert result.exit_code == 0, result.stderr
    names = sorted(r["data"]["name"] for r in result.ndjson())
    assert names == ["alice", "carol"]
    nested = cli("list", "--store", url, "--where", "cart.items.1=2", "--format", "ndjson").ndjson()
    assert [r["sid"] for r in nested] == [written["alice"].sid]
    several = cli("list", "--store", url, "--where", "user_id=42", "--where", "!admin", "--format", "ndjson")
    assert [r["sid"] for r in several.ndjson()] == [written["alice"].sid]
    regex = cli("list", "--store", url, "--where", "name~^b", "--format", "ndjson").ndjson()
    assert [r["sid"] for r in regex] == [written["bob"].sid]
    string_42 = cli("list", "--store", url, "--where", 'user_id="42"', "--format", "ndjson").ndjson()
    assert string_42 == []


def test_limit_sort_and_csv(cli, populated) -> None:
    url, _ = populated
    limited = cli("list", "--store", url, "--limit", "2", "--format", "ndjson").ndjson()
    assert len(limited) == 2
    by_size = cli("list", "--store", url, "--sort", "size", "--format", "json").json()
    sizes = [r["size"] for r in by_size]
    assert sizes == sorted(sizes)
    table = cli("list", "--store", url, "--format", "csv")
    lines = table.stdout.splitlines()
    assert lines[0] == "sid,ttl,size,serializer"
    assert len(lines) == 1 + len(by_size)


def test_plain_table_when_not_a_terminal(cli, populated) -> None:
    url, written = populated
    result = cli("list", "--store", url)
    assert result.stdout.splitlines()[0].split() == ["SID", "TTL", "SIZE", "SERIALIZER"]
    assert written["alice"].sid in result.stdout
    assert "\x1b[" not in result.stdout


def test_show_by_sid_key_and_signed_cookie(cli, populated) -> None:
    url, written = populated
    alice = written["alice"]
    by_sid = cli("show", alice.sid, "--store", url, "--format", "json").json()
    assert by_sid["data"] == {"_permanent": True, "user_id": 42, "name": "alice", "cart": {"items": [1, 2]}}
    by_key = cli("show", "session:" + alice.sid, "--store", url, "--format", "json").json()
    assert by_key == by_sid
    carol = written["carol"]
    assert carol.cookie != carol.sid
    signed = cli("show", carol.cookie, "--store", url, "--secret-key", SECRET, "--format", "json")
    assert signed.exit_code == 0, signed.stderr
    assert signed.json()["data"]["name"] == "carol"
    wrong = cli("show", carol.cookie, "--store", url, "--secret-key", "not-the-key")
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("error: ") and "signature" in wrong.stderr
    no_key = cli("show", carol.cookie, "--store", url)
    assert no_key.exit_code == 1 and "--secret-key" in no_key.stderr


def test_show_human_output_and_raw_bytes(cli, populated, redis_client) -> None:
    url, written = populated
    human = cli("show", written["bob"].sid, "--store", url)
    assert "serializer  json" in human.stdout
    assert '"name": "bob"' in human.stdout
    raw = cli("show", written["bob"].sid, "--store", url, "--raw")
    assert raw.stdout.encode() == redis_client.get("session:" + written["bob"].sid)


def test_show_missing_session_exits_1(cli, redis_url: str) -> None:
    result = cli("show", "nope", "--store", redis_url)
    assert result.exit_code == 1
    assert result.stderr == f"error: no session 'session:nope' in {redis_url}\n"


def test_session_id_starting_with_dash(cli, redis_url: str, redis_client) -> None:
    sid = "-Xy3kq0bH2bQk0lGqQWc7b9Jk3eFzvQ0mYt1ZJz0eXo"
    redis_client.set("session:" + sid, b"\x81\xa1a\x01")
    hinted = cli("show", sid, "--store", redis_url)
    assert hinted.exit_code == 2
    assert "pass it after --" in hinted.stderr
    shown = cli("show", "--store", redis_url, "--format", "json", "--", sid)
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["data"] == {"a": 1}


def test_stats_json(cli, populated, redis_client) -> None:
    url, _ = populated
    redis_client.set("session:forever", b"\x81\xa1a\x01")
    result = cli("stats", "--store", url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    stats = result.json()
    assert stats["count"] == 5
    assert stats["serializers"] == {"msgpack": 4, "json": 1}
    assert stats["no_ttl"] == 1
    assert stats["empty"] == 1
    assert set(stats["size"]) == {"total", "p50", "p95", "max"}
    assert stats["ttl"]["max"] <= 31 * 86400
    assert stats["size"]["total"] == sum(len(redis_client.get(k)) for k in redis_client.scan_iter("session:*"))


def test_bad_values_never_stop_a_listing(cli, populated, redis_client) -> None:
    url, written = populated
    redis_client.set("session:garbage", b"\xc1\xc1not a session")
    redis_client.set("session:empty", b"")
    redis_client.set("session:list-json", b"[1, 2]")
    redis_client.hset("session:ahash", "a", "b")
    redis_client.rpush("session:alist", "a")
    redis_client.set(b"session:\xff\xfe-binary-key", b"\x81\xa1a\x01")
    redis_client.set(
        "session:big", b"\x81\xa1a\xc6" + (10 * 1024 * 1024).to_bytes(4, "big") + b"x" * (10 * 1024 * 1024)
    )
    result = cli("list", "--store", url, "--format", "ndjson")
    assert result.exit_code == 0, result.stderr
    by_sid = {r["sid"]: r for r in result.ndjson()}
    assert by_sid["garbage"]["serializer"] == "unknown"
    assert by_sid["empty"]["serializer"] == "unknown" and by_sid["empty"]["size"] == 0
    assert by_sid["list-json"]["serializer"] == "unknown"
    assert by_sid["big"]["serializer"] == "msgpack" and by_sid["big"]["size"] > 10 * 1024 * 1024
    assert by_sid["\\xff\\xfe-binary-key"]["serializer"] == "msgpack"
    assert written["alice"].sid in by_sid
    assert "ahash" not in by_sid and "alist" not in by_sid
    assert "warning: skipped keys under 'session:' that are not session values: 1 hash, 1 list" in result.stderr
    shown = cli("show", "garbage", "--store", url, "--format", "json")
    assert shown.exit_code == 4
    assert shown.json()["serializer"] == "unknown"
    wrong_type = cli("show", "ahash", "--store", url)
    assert wrong_type.exit_code == 4 and "holds a Redis hash" in wrong_type.stderr


def test_malicious_pickle_is_shown_not_run(cli, redis_url: str, redis_client, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    redis_client.set("session:evil", pickle.dumps({"user_id": 1, "x": Evil()}))
    listed = cli("list", "--store", redis_url, "--data", "--format", "json")
    shown = cli("show", "evil", "--store", redis_url, "--format", "json")
    assert listed.exit_code == 0 and shown.exit_code == 0
    assert not marker.exists()
    assert shown.json()["data"]["x"] == {"$object": {"class": "posix.system", "args": [f"touch {marker}"]}}


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--where", "=42"], 2, "invalid --where '=42'"),
        (["--where", "a~("], 2, "bad regular expression"),
        (["--where", "a..b=1"], 2, "empty part between dots"),
        (["--format", "xml"], 2, "'xml' is not one of"),
        (["--serializer", "yaml"], 2, "'yaml' is not one of"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, redis_url: str, args, code, message) -> None:
    result = cli("list", "--store", redis_url, *args)
    assert result.exit_code == code
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_store_exits_3(cli) -> None:
    port = free_port()
    for command in (["list"], ["show", "abc"], ["stats"]):
        result = cli(*command, "--store", f"redis://:hunter2@127.0.0.1:{port}/0")
        assert result.exit_code == 3
        assert result.stderr.startswith(f"error: cannot connect to redis://:***@127.0.0.1:{port}/0")
        assert "hunter2" not in result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_store_and_prefix_from_environment(cli, redis_url: str, redis_client, monkeypatch) -> None:
    redis_client.set("app1:abc", b"\x81\xa1a\x01")
    monkeypatch.setenv("SESSTOOL_STORE", redis_url)
    monkeypatch.setenv("SESSTOOL_PREFIX", "app1:")
    result = cli("list", "--format", "ndjson")
    assert [r["sid"] for r in result.ndjson()] == ["abc"]
    explicit = cli("list", "--prefix", "session:", "--format", "ndjson")
    assert explicit.ndjson() == []


def test_timeout_is_a_store_error(cli) -> None:
    """A server that accepts but never answers: exit 3 with 'timed out', not a hang."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    code = (
        "import sesstool.stores.redis_urls as r; r.SOCKET_TIMEOUT = 0.5; "
        "from sesstool.cli.main import run; "
        f"run(['list', '--store', 'redis://127.0.0.1:{port}/0'])"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "timed out" in proc.stderr
    assert time.monotonic() - started < 20
    listener.close()


def test_python_dash_m_and_console_script(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sesstool", "list", "--store", redis_url, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_session_ids_complete_from_the_store(populated) -> None:
    from click.shell_completion import ShellComplete

    from sesstool.cli.main import cli as root

    url, written = populated
    completer = ShellComplete(root, {}, "sesstool", "_SESSTOOL_COMPLETE")
    values = [item.value for item in completer.get_completions(["show", "--store", url], "")]
    assert written["alice"].sid in values and written["bob"].sid in values
    narrowed = [item.value for item in completer.get_completions(["show", "--store", url], written["bob"].sid[:6])]
    assert narrowed == [written["bob"].sid]
    unreachable = completer.get_completions(["show", "--store", f"redis://127.0.0.1:{free_port()}/0"], "")
    assert list(unreachable) == []


def test_serializer_choices_match_the_codecs() -> None:
    from sesstool.cli.options import SERIALIZER_CHOICES
    from sesstool.codecs.serializers import CHOICES

    assert SERIALIZER_CHOICES == CHOICES


def test_no_command_prints_the_help(cli) -> None:
    result = cli()
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: sesstool") and "Commands:" in result.stderr
    assert "purge" in result.stderr and "decode" in result.stderr


def test_a_reader_that_stops_early_is_not_an_error(redis_url: str, redis_client) -> None:
    """`sesstool list | head -1`: exit 0 and nothing on stderr, once the pipe closes."""
    pipe = redis_client.pipeline()
    for i in range(20000):
        pipe.set(f"session:{i:06d}-padding-to-make-the-output-long", b"\x81\xa1a\x01")
    pipe.execute()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sesstool", "list", "--store", redis_url, "--format", "ndjson"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["serializer"] == "msgpack"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
