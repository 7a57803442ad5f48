"""``edit``, ``expire``, ``persist`` and ``delete`` on a real redis-server; every change is
read back by the real Flask-Session 0.8 app (and the 0.5 pickle app where it applies)."""

from __future__ import annotations

import json
import pickle
import re
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone

import pytest

from sesstool.codecs.tagged import to_tagged
from tests.flaskapps import SECRET, make_app, read_session, write_session
from tests.oldapps import PICKLE_ONLY, VERSIONS, read_old_session, write_old_sessions
from tests.write_helpers import app_has_no_session, read_types, typed_app

LIFETIME_MS = 31 * 86400 * 1000


@pytest.fixture(autouse=True)
def editor_buffers_in_tmp_path(tmp_path, monkeypatch):
    """Editor buffers (kept on purpose when an edit fails) go to the test's directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


class Thing:
    """An app class: sesstool reads its pickles without importing it."""

    def __init__(self, n: int) -> None:
        self.n = n


@pytest.fixture
def alice(redis_url: str):
    app = typed_app(redis_url)
    written = write_session(app, {"user_id": 42, "name": "alice", "cart": {"items": [1, 2]}})
    return app, written


# -- edit --set / --unset --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_set_and_unset_reach_the_app_keeping_ttl_and_serializer(cli, redis_url, redis_client, fmt) -> None:
    app = make_app(redis_url=redis_url, fmt=fmt)
    written = write_session(app, {"user_id": 42, "name": "alice", "cart": {"items": [1, 2]}})
    key = f"session:{written.sid}"
    redis_client.pexpire(key, 5_000_000)  # a TTL the app would not set, to see it kept

    result = cli("edit", key, "--store", redis_url, "--set", "user_id=43", "--set", "cart.total=9.5",
                 "--set", 'flags={"beta": true}', "--set", "cart.items.0=7", "--unset", "name",
                 "--format", "json")

    assert result.exit_code == 0, result.stderr
    record = result.json()
    assert record["changed"] is True and record["serializer"] == fmt
    expected = {"_permanent": True, "user_id": 43, "cart": {"items": [7, 2], "total": 9.5}, "flags": {"beta": True}}
    assert record["data"] == expected
    assert 4_990_000 <= redis_client.pttl(key) <= 5_000_000
    assert redis_client.get(key).startswith(b"{") == (fmt == "json")
    assert read_session(app, written.cookie) == expected  # (the app's read refreshes the TTL)


def test_value_is_json_when_valid_json_else_a_string(cli, redis_url, alice) -> None:
    app, written = alice
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--set", "a=42", "--set", "b=hello",
                 "--set", 'c="42"', "--set", "d=true", "--set", "e=[1, 2]", "--set", "f={not json")
    assert result.exit_code == 0, result.stderr
    seen = read_session(app, written.cookie)
    assert [seen[k] for k in "abcdef"] == [42, "hello", "42", True, [1, 2], "{not json"]


def test_human_output_and_unset_of_a_missing_key_warns(cli, redis_url, alice) -> None:
    app, written = alice
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--unset", "nickname", "--set", "user_id=1")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"session:{written.sid}: updated \(msgpack, TTL (30d 23h|31d 0h) kept\)\n", result.stdout)
    assert "warning: --unset nickname: not in the session" in result.stderr


def test_no_change_writes_nothing(cli, redis_url, redis_client, alice) -> None:
    _, written = alice
    key = f"session:{written.sid}"
    redis_client.pexpire(key, 100_000_000)
    before = redis_client.get(key)
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--set", "user_id=42", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["changed"] is False
    assert redis_client.get(key) == before
    assert redis_client.pttl(key) > 99_000_000


def test_signed_session_id_names_the_session(cli, redis_url) -> None:
    app = make_app(redis_url=redis_url, use_signer=True)
    written = write_session(app, {"user_id": 1})
    # ("--": one id in 64 starts with "-")
    result = cli("edit", "--store", redis_url, "--secret-key", SECRET, "--set", "user_id=2", "--", written.cookie)
    assert result.exit_code == 0, result.stderr
    assert read_session(app, written.cookie)["user_id"] == 2


def test_tagged_value_the_format_cannot_hold_is_refused(cli, redis_url, redis_client, alice) -> None:
    _, written = alice
    key = f"session:{written.sid}"
    before = redis_client.get(key)
    when = cli("edit", key, "--store", redis_url, "--set", 'when={"$datetime": "2024-05-01T10:00:00"}')
    pair = cli("edit", key, "--store", redis_url, "--set", 'pair={"$tuple": [1, 2]}')
    assert (when.exit_code, pair.exit_code) == (4, 4)
    assert when.stderr == "error: msgpack cannot hold this session exactly: when (datetime)\n"
    assert "pair (tuple)" in pair.stderr
    assert redis_client.get(f"session:{written.sid}") == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "user_id"], "invalid --set 'user_id': use KEY=VALUE"),
        (["--set", "name.first=x"], "cannot set name.first: name holds str, not an object"),
        (["--set", "cart.items.9=1"], "cannot set cart.items.9: '9' is not an index of the list"),
        (["--set", "a..b=1"], "invalid field path"),
        (["--set", 'x={"$datetime": "yesterday"}'], "malformed $datetime"),
        ([], "nothing to change"),
        (["--editor", "--set", "a=1"], "either --editor or --set/--unset"),
    ],
)
def test_bad_changes_are_usage_errors(cli, redis_url, redis_client, alice, args, message) -> None:
    _, written = alice
    before = redis_client.get(f"session:{written.sid}")
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert redis_client.get(f"session:{written.sid}") == before


def test_missing_session_exits_1(cli, redis_url) -> None:
    result = cli("edit", "nope", "--store", redis_url, "--set", "a=1")
    assert result.exit_code == 1
    assert result.stderr == f"error: no session 'session:nope' in {redis_url}\n"


def test_unreachable_store_exits_3(cli) -> None:
    from tests.servers import free_port

    result = cli("edit", "abc", "--store", f"redis://127.0.0.1:{free_port()}/0", "--set", "a=1")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: cannot connect to redis://127.0.0.1:")


# -- pickle-era sessions --------------------------------------------------------------------


def _pickle_era(redis_client, sid: str, data: dict, protocol: int = 4) -> None:
    redis_client.set(f"session:{sid}", pickle.dumps(data, protocol), ex=3600)


def test_pickle_session_stays_pickle_and_markup_comes_back_as_markup(cli, redis_url, redis_client) -> None:
    from markupsafe import Markup

    _pickle_era(redis_client, "old1", {"_permanent": True, "user_id": 7, "motd": Markup("<b>hi</b>"),
                                        "when": datetime(2024, 5, 1, 10, 0), "pair": (1, 2)}, protocol=2)
    result = cli("edit", "old1", "--store", redis_url, "--set", "user_id=8",
                 "--set", 'seen={"$datetime": "2024-06-01T08:00:00+00:00"}', "--format", "json")
    assert result.exit_code == 0, result.stderr
    raw = redis_client.get("session:old1")
    assert raw[:2] == b"\x80\x02"  # the original's protocol
    assert 3590 <= redis_client.ttl("session:old1") <= 3600
    types = read_types(typed_app(redis_url), "old1")  # Flask-Session 0.8 reads it through its pickle fallback
    assert types["motd"] == ["markupsafe.Markup", "Markup('<b>hi</b>')"]
    assert types["when"][0] == "datetime.datetime" and types["pair"] == ["builtins.tuple", "(1, 2)"]
    assert types["user_id"] == ["builtins.int", "8"]
    assert types["seen"][1] == "datetime.datetime(2024, 6, 1, 8, 0, tzinfo=datetime.timezone.utc)"


def test_opaque_pickled_object_is_refused_and_left_alone(cli, redis_url, redis_client) -> None:
    _pickle_era(redis_client, "old2", {"user_id": 7, "thing": Thing(3)})
    before = redis_client.get("session:old2")
    result = cli("edit", "old2", "--store", redis_url, "--set", "user_id=8")
    assert result.exit_code == 4
    assert result.stderr == (
        "error: cannot write back the value at 'thing': it holds a pickled tests.test_edit.Thing object, "
        "which sesstool reads without importing the app and cannot re-create\n"
    )
    assert redis_client.get("session:old2") == before


@pytest.mark.interop
@pytest.mark.parametrize("version", VERSIONS)
def test_flask_session_04_and_05_read_an_edited_session(cli, redis_url, redis_client, version) -> None:
    (written,) = write_old_sessions(version, redis_url, [{"user_id": 7}], pickle_only=True)
    key = f"session:{written['sid']}"
    protocol = redis_client.get(key)[:2]
    refused = cli("edit", written["sid"], "--store", redis_url, "--set", "html.x=1")
    assert refused.exit_code == 2  # html is Markup text, not an object
    result = cli("edit", written["sid"], "--store", redis_url, "--set", "user_id=8", "--unset", "pair",
                 "--set", 'seen={"$date": "2024-02-29"}')
    assert result.exit_code == 0, result.stderr
    assert redis_client.get(key)[:2] == protocol
    seen = read_old_session(version, redis_url, written["cookie"])
    assert seen["new"] is False
    expected = {k: v for k, v in to_tagged(PICKLE_ONLY).items() if k != "pair"}
    assert seen["data"] == {**expected, "_permanent": True, "user_id": 8, "seen": {"$date": "2024-02-29"}}


# -- edit --editor -----------------------------------------------------------------------------


def _editor(tmp_path, body: str) -> str:
    """An $EDITOR: a Python script that rewrites the file it is given."""
    script = tmp_path / "editor.py"
    script.write_text("import json, sys\npath = sys.argv[1]\n" + textwrap.dedent(body))
    return f"{sys.executable} {script}"


def test_editor_changes_the_session(cli, redis_url, alice, tmp_path, monkeypatch) -> None:
    app, written = alice
    monkeypatch.setenv("EDITOR", _editor(tmp_path, """
        doc = json.load(open(path))
        doc["user_id"] = 99
        del doc["name"]
        doc["since"] = {"$bytes": "AAE="}
        json.dump(doc, open(path, "w"))
    """))
    monkeypatch.delenv("VISUAL", raising=False)
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--editor", "--format", "json")
    assert result.exit_code == 0, result.stderr
    types = read_types(app, written.cookie)
    assert types["since"] == ["builtins.bytes", "b'\\x00\\x01'"]
    assert types["user_id"] == ["builtins.int", "99"] and "name" not in types
    assert not list(tmp_path.glob("sesstool-*.json"))


def test_editor_shows_the_lossless_form_and_an_unchanged_buffer_writes_nothing(
        cli, redis_url, redis_client, alice, tmp_path, monkeypatch) -> None:
    _, written = alice
    seen = tmp_path / "seen.json"
    monkeypatch.setenv("VISUAL", _editor(tmp_path, f"open({str(seen)!r}, 'w').write(open(path).read())\n"))
    before = redis_client.get(f"session:{written.sid}")
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--editor")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "unchanged, nothing written" in result.stderr
    shown = {"_permanent": True, "cart": {"items": [1, 2]}, "name": "alice", "user_id": 42}
    assert json.loads(seen.read_text()) == shown
    assert redis_client.get(f"session:{written.sid}") == before


def test_invalid_json_without_a_terminal_aborts_and_keeps_the_buffer(
        cli, redis_url, redis_client, alice, tmp_path, monkeypatch) -> None:
    _, written = alice
    monkeypatch.setenv("VISUAL", _editor(tmp_path, "open(path, 'w').write('{\"user_id\": 1,')\n"))
    before = redis_client.get(f"session:{written.sid}")
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--editor")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid JSON at line 1, column 15")
    kept = result.stderr.rsplit("kept in ", 1)[1].strip()
    with open(kept) as handle:
        assert handle.read() == '{"user_id": 1,'
    assert redis_client.get(f"session:{written.sid}") == before


def test_invalid_json_on_a_terminal_reopens_the_editor(cli, redis_url, alice, tmp_path, monkeypatch) -> None:
    app, written = alice
    count = tmp_path / "count"
    monkeypatch.setenv("VISUAL", _editor(tmp_path, f"""
        import os
        first = not os.path.exists({str(count)!r})
        open({str(count)!r}, "a").write("x")
        if first:
            open(path, "w").write("[1, 2")
        else:
            open(path, "w").write('{{"user_id": 5}}')
    """))
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--editor", input="\n", stdin_isatty=True)
    assert result.exit_code == 0, result.stderr
    assert "Edit again? [Y/n]" in result.stderr
    assert count.read_text() == "xx"
    assert read_session(app, written.cookie) == {"user_id": 5}


def test_failing_editor_writes_nothing(cli, redis_url, alice, monkeypatch) -> None:
    _, written = alice
    monkeypatch.setenv("VISUAL", "false")
    result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--editor")
    assert result.exit_code == 2
    assert "exited with status 1; nothing written" in result.stderr


# -- expire / persist ----------------------------------------------------------------------------


def test_expire_in_at_and_now(cli, redis_url, redis_client, alice) -> None:
    app, written = alice
    key = f"session:{written.sid}"
    result = cli("expire", f"session:{written.sid}", "--store", redis_url, "--in", "15m", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["ttl"] == 900 and result.json()["deleted"] is False
    assert 895 <= redis_client.ttl(key) <= 900
    assert read_session(app, written.cookie)["user_id"] == 42

    at = int(time.time()) + 7200
    iso = datetime.fromtimestamp(at, tz=timezone.utc).isoformat()
    assert cli("expire", f"session:{written.sid}", "--store", redis_url, "--at", iso).exit_code == 0
    assert redis_client.expiretime(key) == at
    assert cli("expire", f"session:{written.sid}", "--store", redis_url, "--at", str(at + 60)).exit_code == 0
    assert redis_client.expiretime(key) == at + 60

    now = cli("expire", f"session:{written.sid}", "--store", redis_url, "--now")
    assert now.exit_code == 0 and now.stdout == f"{key}: ended now (deleted)\n"
    assert redis_client.exists(key) == 0
    assert app_has_no_session(app, written.cookie)


def test_expire_in_zero_or_a_past_time_ends_the_session(cli, redis_url, redis_client) -> None:
    redis_client.set("session:a", b"\x80", ex=100)
    redis_client.set("session:b", b"\x80", ex=100)
    assert cli("expire", "a", "--store", redis_url, "--in", "0").exit_code == 0
    assert cli("expire", "b", "--store", redis_url, "--at", "2001-01-01T00:00:00+00:00").exit_code == 0
    assert redis_client.exists("session:a", "session:b") == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--in", "5x"], 2, "invalid duration '5x'"),
        (["--at", "2026-12-01T09:00:00"], 2, "has no UTC offset"),
        (["--at", "next week"], 2, "invalid time 'next week'"),
        (["--in", "5m", "--now"], 2, "exactly one of --in DURATION, --at TIME or --now"),
        ([], 2, "exactly one of"),
    ],
)
def test_expire_bad_input(cli, redis_url, redis_client, args, code, message) -> None:
    redis_client.set("session:a", b"\x80", ex=100)
    result = cli("expire", "a", "--store", redis_url, *args)
    assert result.exit_code == code and message in result.stderr
    assert 95 <= redis_client.ttl("session:a") <= 100


def test_expire_and_persist_of_a_missing_session_exit_1(cli, redis_url) -> None:
    assert cli("expire", "nope", "--store", redis_url, "--in", "5m").exit_code == 1
    assert cli("expire", "nope", "--store", redis_url, "--now").exit_code == 1
    result = cli("persist", "nope", "--store", redis_url)
    assert result.exit_code == 1 and result.stderr == f"error: no session 'session:nope' in {redis_url}\n"


def test_persist_removes_the_expiry(cli, redis_url, redis_client, alice) -> None:
    app, written = alice
    result = cli("persist", f"session:{written.sid}", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"sid": written.sid, "key": f"session:{written.sid}", "ttl": None,
                             "expires_at": None, "deleted": False}
    assert redis_client.ttl(f"session:{written.sid}") == -1
    assert read_session(app, written.cookie)["user_id"] == 42


# -- delete --------------------------------------------------------------------------------------


def test_delete_ids_and_report_missing_ones(cli, redis_url, redis_client) -> None:
    app = make_app(redis_url=redis_url)
    one, two, three = (write_session(app, {"n": i}) for i in range(3))
    keys = [f"session:{one.sid}", f"session:{two.sid}", "missing1", f"session:{one.sid}"]
    result = cli("delete", *keys, "--store", redis_url, "--format", "json")
    assert result.exit_code == 1
    assert result.json() == {"deleted": 2, "missing": ["missing1"]}
    assert result.stderr == f"error: no session missing1 in {redis_url} (2 deleted)\n"
    assert app_has_no_session(app, one.cookie) and app_has_no_session(app, two.cookie)
    assert read_session(app, three.cookie) == {"_permanent": True, "n": 2}


def test_delete_reads_ids_from_stdin(cli, redis_url, redis_client) -> None:
    for i in range(2500):
        redis_client.set(f"session:s{i}", b"\x80")
    ids = "\n".join(f"s{i}" for i in range(0, 2500, 2)) + "\n\n"
    result = cli("delete", "-", "--store", redis_url, "--batch", "300", input=ids)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "deleted 1,250 sessions\n"
    assert redis_client.dbsize() == 1250 and redis_client.exists("session:s1") == 1


def test_delete_dash_cannot_be_mixed_with_ids(cli, redis_url) -> None:
    result = cli("delete", "-", "abc", "--store", redis_url)
    assert result.exit_code == 2 and "cannot be mixed" in result.stderr


def test_editor_is_not_opened_on_a_session_that_cannot_be_written_back(
        cli, redis_url, redis_client, tmp_path, monkeypatch) -> None:
    _pickle_era(redis_client, "old3", {"thing": Thing(1)})
    opened = tmp_path / "opened"
    monkeypatch.setenv("VISUAL", _editor(tmp_path, f"open({str(opened)!r}, 'w').write('yes')\n"))
    result = cli("edit", "old3", "--store", redis_url, "--editor")
    assert result.exit_code == 4 and "pickled tests.test_edit.Thing object" in result.stderr
    assert not opened.exists()


def test_a_top_level_key_with_dots_is_changed_as_it_is() -> None:
    from sesstool.ops.edits import apply_change, parse_change

    data = {"flask.flash": ["hi"], "cart": {"items": [1]}}
    changed, notes = apply_change(data, parse_change(["flask.flash=[]", "cart.items.0=7"], []))
    assert changed == {"flask.flash": [], "cart": {"items": [7]}} and notes == []
    removed, _ = apply_change(data, parse_change([], ["flask.flash"]))
    assert removed == {"cart": {"items": [1]}}


# An undecodable session: edit --set never "succeeds" while changing nothing (issue #10,
# item 5). Values a decoder gives up on, and values it decodes but sesstool cannot
# represent (an integer past the decoding budget, a lone surrogate) must all exit 4
# with one error line and leave the value.
UNEDITABLE = {
    "garbage": b"\xc1\xc1 not a session",
    "bigint": pickle.dumps({"n": 10**5000, "user_id": 1}, protocol=2),
    "surrogate": pickle.dumps({"u": "\ud800"}, protocol=2),
}


def test_edit_keeps_a_set_holding_decimal_nan(cli, redis_url, redis_client) -> None:
    """Decimal('NaN') cannot be ordered, yet a set holding it is shown and written back whole."""
    from decimal import Decimal

    redis_client.set("session:nan-set", pickle.dumps({"s": {Decimal("NaN"), 1}}, protocol=2), ex=600)
    result = cli("edit", "nan-set", "--set", "user_id=2", "--store", redis_url)
    assert result.exit_code == 0, result.stderr
    data = pickle.loads(redis_client.get("session:nan-set"))
    assert data["user_id"] == 2 and len(data["s"]) == 2 and 1 in data["s"]
    assert any(isinstance(v, Decimal) and v.is_nan() for v in data["s"])


def _assert_refused(result, key: str) -> None:
    assert result.exit_code == 4, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot edit "), result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("name", sorted(UNEDITABLE))
@pytest.mark.parametrize("args", [["--set", "user_id=2"], ["--unset", "user_id"]])
def test_edit_of_an_undecodable_session_exits_4_and_changes_nothing(cli, redis_url, redis_client, name, args) -> None:
    value = UNEDITABLE[name]
    redis_client.set(f"session:{name}", value, ex=600)
    result = cli("edit", name, *args, "--store", redis_url)
    _assert_refused(result, f"session:{name}")
    assert redis_client.get(f"session:{name}") == value


@pytest.mark.network
@pytest.mark.parametrize("name", sorted(UNEDITABLE))
def test_edit_of_an_undecodable_session_on_memcached_exits_4(cli, memcached_server, name) -> None:
    from sesstool.stores.memcached import open_memcached

    url = f"memcached://127.0.0.1:{memcached_server.port}"
    store = open_memcached(url)
    try:
        store.set(f"session:{name}".encode(), UNEDITABLE[name], 600)
        result = cli("edit", name, "--set", "user_id=2", "--store", url)
        _assert_refused(result, f"session:{name}")
        item = store.get(f"session:{name}".encode())
        assert item is not None and item.value == UNEDITABLE[name]
    finally:
        store.close()
