"""Write commands while the app keeps writing, and when redis-server dies mid-purge.

- edit against the real app writing the same session in a loop: the app loses no
  update to sesstool, and sesstool's edits apply to what the app wrote;
- purge while sessions are refreshed: refreshed sessions survive;
- redis-server killed during a purge: exit 3, the count deleted so far reported,
  nothing else lost, and running the purge again finishes the job.

Threads and processes on loopback, every loop bounded in count and time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import typing as t

import msgspec
import pytest
import redis

from sesstool.ops.edits import edit_session
from sesstool.ops.purge import Criteria, purge
from sesstool.ops.selectors import parse_all
from sesstool.stores.redis import open_redis
from tests.flaskapps import make_app, read_session, write_session
from tests.servers import start_redis
from tests.write_helpers import make_idle

LIFETIME = 31 * 86400


@pytest.fixture(autouse=True)
def editor_buffers_in_tmp_path(tmp_path, monkeypatch):
    """Editor buffers (kept on purpose when an edit fails) go to the test's directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def counting_app(redis_url: str) -> t.Any:
    """The real 0.8 app with a route that increments ``n`` in the session, as apps do."""
    from flask import jsonify, session

    app = make_app(redis_url=redis_url)

    @app.post("/hit")
    def hit() -> t.Any:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    return app


# -- edit vs the app ----------------------------------------------------------------------------


APP_LOOP = """
import sys, time
from tests.test_write_concurrency import counting_app
app = counting_app(sys.argv[1])
client = app.test_client()
client.set_cookie("session", sys.argv[2])
print("ready", flush=True)
hits, deadline = 0, time.monotonic() + float(sys.argv[4])
while hits < int(sys.argv[3]) and time.monotonic() < deadline:
    assert client.post("/hit").status_code == 200
    hits += 1
print(hits, flush=True)
"""


def test_edit_while_the_app_writes_loses_no_update(cli, redis_url) -> None:
    app = counting_app(redis_url)
    written = write_session(app, {"n": 0})
    # The app runs in its own process, so it truly writes while edit reads and writes.
    writer = subprocess.Popen([sys.executable, "-c", APP_LOOP, redis_url, written.cookie, "3000", "8"],
                              stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    seen_n: list[int] = []
    outcomes: list[int] = []
    try:
        for j in range(60):
            result = cli("edit", f"session:{written.sid}", "--store", redis_url, "--set", f"m={j}", "--format", "json")
            outcomes.append(result.exit_code)
            if result.exit_code == 0:
                seen_n.append(result.json()["data"]["n"])
            else:  # only ever the clear "kept changing" failure
                assert result.exit_code == 3 and "kept changing while being edited" in result.stderr
            if writer.poll() is not None:
                break
    finally:
        hits = int(writer.communicate(timeout=30)[0].strip())
    assert outcomes.count(0) >= len(outcomes) - 2 and len(outcomes) >= 20
    # Each edit applied to the app's latest write: n as the edits wrote it never goes back.
    assert seen_n == sorted(seen_n) and seen_n[-1] > 0
    # No increment of the app's was lost to an edit writing an older n over it.
    assert read_session(app, written.cookie)["n"] == hits


def test_a_change_is_reapplied_to_what_the_app_wrote_meanwhile(redis_url, redis_client) -> None:
    app = make_app(redis_url=redis_url)
    written = write_session(app, {"user_id": 1, "cart": []})
    store = open_redis(redis_url)
    calls = 0

    def transform(data: dict) -> dict:
        nonlocal calls
        calls += 1
        if calls == 1:  # the app writes between sesstool's read and its compare-and-set
            client = app.test_client()
            client.set_cookie("session", written.cookie)
            client.post("/set", json={"cart": [5]})
        return {**data, "user_id": 2}

    outcome = edit_session(store, f"session:{written.sid}".encode(), transform)
    store.close()
    assert (outcome.changed, outcome.attempts) == (True, 2)
    assert read_session(app, written.cookie) == {"_permanent": True, "user_id": 2, "cart": [5]}


def test_a_session_that_keeps_changing_fails_clearly_without_writing(cli, redis_url, redis_client) -> None:
    from sesstool.errors import StoreError

    redis_client.set("session:busy", msgspec.msgpack.encode({"n": 0}), ex=100)
    store = open_redis(redis_url)

    def transform(data: dict) -> dict:
        redis_client.set("session:busy", msgspec.msgpack.encode({"n": data["n"] + 1}), ex=100)
        return {**data, "mine": True}

    with pytest.raises(StoreError, match="kept changing while being edited \\(9 attempts\\): nothing was written"):
        edit_session(store, b"session:busy", transform)
    store.close()
    assert msgspec.msgpack.decode(redis_client.get("session:busy")) == {"n": 9}


def _editor(tmp_path, redis_url: str, app_write: dict, user_change: dict) -> str:
    """An $EDITOR that, like a slow human, lets the app write first, then saves the buffer."""
    script = tmp_path / "editor.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        import msgspec, redis
        client = redis.Redis.from_url({redis_url!r})
        current = msgspec.msgpack.decode(client.get("session:shared"))
        current.update({app_write!r})
        client.set("session:shared", msgspec.msgpack.encode(current), ex={LIFETIME})
        doc = json.load(open(sys.argv[1]))
        doc.update({user_change!r})
        json.dump(doc, open(sys.argv[1], "w"))
    """))
    return f"{sys.executable} {script}"


def test_editor_merges_the_app_write_to_other_keys(cli, redis_url, redis_client, tmp_path, monkeypatch) -> None:
    redis_client.set("session:shared", msgspec.msgpack.encode({"a": 1, "b": 1}), ex=LIFETIME)
    monkeypatch.setenv("VISUAL", _editor(tmp_path, redis_url, {"b": 2}, {"a": 10}))
    result = cli("edit", "shared", "--store", redis_url, "--editor", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert msgspec.msgpack.decode(redis_client.get("session:shared")) == {"a": 10, "b": 2}


def test_editor_conflict_on_the_same_key_keeps_the_app_write_and_the_buffer(
        cli, redis_url, redis_client, tmp_path, monkeypatch) -> None:
    redis_client.set("session:shared", msgspec.msgpack.encode({"a": 1, "b": 1}), ex=LIFETIME)
    monkeypatch.setenv("VISUAL", _editor(tmp_path, redis_url, {"a": 2}, {"a": 10}))
    result = cli("edit", "shared", "--store", redis_url, "--editor")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: the app changed a while you were editing it: nothing written")
    kept = result.stderr.rsplit("kept in ", 1)[1].strip()
    assert json.load(open(kept))["a"] == 10
    os.unlink(kept)
    assert msgspec.msgpack.decode(redis_client.get("session:shared")) == {"a": 2, "b": 1}


# -- purge vs refreshes -------------------------------------------------------------------------


def test_sessions_refreshed_after_being_selected_are_kept(redis_url, redis_client) -> None:
    app = make_app(redis_url=redis_url)
    sessions = [write_session(app, {"group": "old", "i": i}) for i in range(40)]
    time.sleep(0.01)  # so a refresh sets a longer TTL than the one read
    refreshed = {s.sid for s in sessions[::3]}
    store = open_redis(redis_url)

    def refresh(selected: list) -> None:
        # The app serves these users between selection and deletion (it re-saves the
        # session with a fresh TTL on every request).
        for decoded in selected:
            sid = decoded.item.key.decode()[len("session:"):]
            if sid in refreshed:
                assert read_session(app, sid)["group"] == "old"

    result = purge(store, "session:", Criteria(where=parse_all(["group=old"])), batch=7, on_selected=refresh)
    store.close()
    assert (result.matched, result.deleted, result.kept) == (40, 40 - len(refreshed), len(refreshed))
    left = {key.decode()[len("session:"):] for key in redis_client.scan_iter("session:*")}
    assert left == refreshed


def test_idle_purge_while_the_app_refreshes_sessions(cli, redis_url, redis_client) -> None:
    app = make_app(redis_url=redis_url)
    sessions = [write_session(app, {"i": i}) for i in range(600)]
    for s in sessions:
        make_idle(redis_client, f"session:{s.sid}", 3 * 86400)
    active = sessions[::5]
    stop, first_round = threading.Event(), threading.Event()
    rounds = 0

    def users() -> None:
        nonlocal rounds
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            for s in active:
                assert read_session(app, s.cookie)["i"] >= 0
            rounds += 1
            first_round.set()

    thread = threading.Thread(target=users)
    thread.start()
    try:
        assert first_round.wait(10)
        result = cli("purge", "--idle", "1d", "--yes", "--store", redis_url, "--batch", "50", "--rate", "1500",
                     "--format", "json")
    finally:
        stop.set()
        thread.join(timeout=20)
    assert result.exit_code == 0, result.stderr
    assert rounds >= 2  # the app kept serving during the purge
    assert result.json() == {"matched": 480, "deleted": 480, "dry_run": False, "undecodable": 0}
    assert {k.decode() for k in redis_client.scan_iter("session:*")} == {f"session:{s.sid}" for s in active}


# -- redis-server killed mid-purge ----------------------------------------------------------------


def _wait_ready(client: redis.Redis, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except (redis.BusyLoadingError, redis.ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_server_killed_mid_purge_exits_3_reports_progress_and_a_rerun_finishes(tmp_path) -> None:
    # appendfsync always: every UNLINK the server acknowledged survives the kill.
    server = start_redis(["--appendonly", "yes", "--appendfsync", "always"])
    url = f"redis://127.0.0.1:{server.port}/0"
    client = redis.Redis(port=server.port)
    try:
        encode = msgspec.msgpack.Encoder().encode
        expected = {}
        pipe = client.pipeline(transaction=False)
        for i in range(20_000):
            value = encode({"_permanent": True, "group": "bots" if i % 10 else "users", "i": i})
            expected[f"session:s{i}".encode()] = value
            pipe.set(f"session:s{i}", value, ex=LIFETIME)
        pipe.execute()
        users = {k: v for k, v in expected.items() if b"users" in v}

        argv = [sys.executable, "-m", "sesstool", "purge", "--store", url, "--where", "group=bots", "--yes",
                "--batch", "200", "--rate", "8000"]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while client.dbsize() > 16_000 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        server.kill()
        _, stderr = child.communicate(timeout=30)
        assert child.returncode == 3, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr  # one error line, no traceback
        match = re.fullmatch(rf"error: cannot connect to {re.escape(url)}: .*; purge stopped after deleting "
                             r"([\d,]+) of ([\d,]+) matched sessions .*; run it again to finish", lines[0])
        assert match, lines[0]
        reported = int(match.group(1).replace(",", ""))
        assert 2_000 <= reported < 18_000

        server.restart()
        _wait_ready(client)
        left = {key: client.get(key) for key in client.scan_iter("session:*", count=1000)}
        # Deleted: what was reported, plus at most the batch in flight when the server died.
        assert 20_000 - reported - 200 <= len(left) <= 20_000 - reported
        assert all(left[key] == expected[key] for key in left)  # every survivor intact
        assert users.items() <= left.items()  # nothing that did not match was touched
        assert all(client.ttl(key) > LIFETIME - 120 for key in list(users)[:50])

        rerun = subprocess.run(argv[:-4] + ["--format", "json"], capture_output=True, text=True, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["deleted"] == len(left) - len(users)
        assert {key: client.get(key) for key in client.scan_iter("session:*", count=1000)} == users
    finally:
        client.close()
        server.stop()
