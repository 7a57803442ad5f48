"""``watch`` on real servers, driven by a real Flask-Session app.

Nothing races the clock: each watcher is subscribed before anything is written
(the CLI says so on stderr, the library feed yields ``FeedState.READY``), and the
expired event comes from a key given a 1 ms TTL and then read until Redis has
removed it (the read is what makes Redis expire it, and notify).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing as t
import uuid
import warnings

import pytest

from sesstool.stores import open_store
from sesstool.stores.changes import Change, FeedState
from tests.flaskapps import make_app
from tests.servers import ServerProcess
from tests.test_store_contract import minimal_url as minimal_url  # the fixture: a store without a feed


@pytest.fixture
def notifications_off(redis_server: ServerProcess, redis_url: str) -> t.Iterator[t.Any]:
    """The shared server with keyspace notifications off before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.config_set("notify-keyspace-events", "")
    yield client
    client.config_set("notify-keyspace-events", "")
    client.close()


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class Watcher:
    """``sesstool watch`` in its own process, returned once it is subscribed."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSTOOL_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sesstool", "watch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            # As from a terminal: Ctrl-C on. A child inherits an ignored SIGINT (and
            # Python then keeps ignoring it), so the test must not depend on the runner's.
            preexec_fn=_sigint_default,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.stderr: list[str] = []
        while True:  # warnings may come first; EOF means it exited instead
            line = self.proc.stderr.readline()
            self.stderr.append(line)
            if not line or line.startswith("watching "):
                break

        self._read = b""  # stdout read so far by wait_for_records, raw: finish reads the rest

    @property
    def ready(self) -> bool:
        return self.stderr[-1].startswith("watching ")

    def wait_for_records(self, count: int, timeout: float = 60) -> None:
        """Return once it has written ``count`` records (each as its event happens):
        a test acts next only on what the watch has already seen."""
        import select

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()  # read below Python's buffer, which communicate() would not see
        deadline = time.monotonic() + timeout
        while self._read.count(b"\n") < count:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            chunk = os.read(fd, 65536) if ready else b""
            assert chunk, f"watch wrote {self._read!r} and then nothing for {timeout}s, or exited"
            self._read += chunk

    def finish(self) -> tuple[int, list[dict[str, t.Any]], str]:
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = (self._read.decode() + out).splitlines()
        return self.proc.returncode, [json.loads(line) for line in lines], "".join(self.stderr) + err


def save(app: t.Any, client: t.Any, body: dict[str, t.Any]) -> None:
    assert client.post("/set", json=body).status_code == 200


def sid_of(app: t.Any, client: t.Any) -> str:
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None
    return str(cookie.value)


def test_redis_without_notifications_exits_2_saying_how_to_turn_them_on(cli: t.Any, notifications_off: t.Any,
                                                                        redis_url: str) -> None:  # fmt: skip
    result = cli("watch", "--store", redis_url, "--limit", "1")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "CONFIG SET notify-keyspace-events 'Kg$xn'" in lines[0] and "--enable" in lines[0]
    assert notifications_off.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""


def test_enable_adds_the_flags_and_keeps_the_ones_set(notifications_off: t.Any, redis_url: str) -> None:
    notifications_off.config_set("notify-keyspace-events", "Elt")
    watcher = Watcher("--store", redis_url, "--enable", "--limit", "1", "--format", "ndjson")
    assert watcher.ready, watcher.finish()
    flags = notifications_off.config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert set(flags) >= set("EltKg$xn")
    notifications_off.set("session:x", b"\x80")
    code, records, err = watcher.finish()
    assert code == 0, err
    assert [r["event"] for r in records] == ["created"]


def test_redis_events_of_a_real_app(notifications_off: t.Any, redis_url: str) -> None:
    prefix = f"w{uuid.uuid4().hex[:6]}*[x]:"  # glob characters are literal in the subscription
    notifications_off.set(prefix.replace("*", "a") + "decoy", b"x")  # matched by an unescaped glob
    app = make_app(redis_url=redis_url, prefix=prefix)
    watcher = Watcher("--store", redis_url, "--prefix", prefix, "--enable", "--limit", "5", "--format", "ndjson")
    assert watcher.ready, watcher.finish()
    client = app.test_client()
    save(app, client, {"user_id": 42})
    sid = sid_of(app, client)
    save(app, client, {"cart": [1, 2]})
    assert client.post("/clear").status_code == 200
    notifications_off.set(prefix.replace("*", "a") + "decoy", b"y")
    other = app.test_client()
    save(app, other, {"user_id": 7})
    key = prefix + sid_of(app, other)
    notifications_off.pexpire(key, 1)
    while notifications_off.exists(key):  # each read expires it once its TTL has passed
        pass
    code, records, err = watcher.finish()
    assert code == 0, err
    assert [(r["event"], r["sid"]) for r in records] == [
        ("created", sid), ("changed", sid), ("deleted", sid),
        ("created", sid_of(app, other)), ("expired", sid_of(app, other)),
    ]  # fmt: skip
    assert all(r["key"] == prefix + r["sid"] and r["at"].endswith("+00:00") for r in records)


def test_where_selects_by_data_and_follows_matched_sessions(notifications_off: t.Any, redis_url: str) -> None:
    app = make_app(redis_url=redis_url)
    watcher = Watcher("--store", redis_url, "--enable", "--where", "user_id=42", "--limit", "3", "--format", "ndjson")
    assert watcher.ready, watcher.finish()
    alice, bob = app.test_client(), app.test_client()
    save(app, bob, {"user_id": 7})
    save(app, alice, {"user_id": 42})
    assert bob.post("/clear").status_code == 200  # bob never matched: his deletion is not reported
    save(app, alice, {"user_id": 42, "cart": 1})
    notifications_off.set("session:garbage", b"\xc1\xff not a session")
    sid = sid_of(app, alice)
    # The watch reads a changed session's value when the event arrives: one already
    # deleted by then matches nothing. Clear it only once the change is reported.
    watcher.wait_for_records(2)
    assert alice.post("/clear").status_code == 200
    code, records, err = watcher.finish()
    assert code == 0, err
    assert [(r["event"], r["sid"]) for r in records] == [("created", sid), ("changed", sid), ("deleted", sid)]


def test_the_library_feed_merges_every_cluster_primary(cluster: list[ServerProcess]) -> None:
    store = open_store(f"redis+cluster://127.0.0.1:{cluster[0].port}")
    prefix = f"w{uuid.uuid4().hex[:6]}:"
    keys = [f"{prefix}{{{tag}}}".encode() for tag in ("a", "b", "c", "d", "e", "f")]
    nodes = {store.client.get_node_from_key(key).name for key in keys}
    assert len(nodes) == 3  # the keys span every primary
    seen: list[Change] = []
    feed = store.watch(prefix.encode(), idle=0.2, enable=True)
    try:
        for step in feed:
            if step is FeedState.READY:
                for key in keys:
                    store.set(key, b"v1", 60)
                for key in keys:
                    store.delete([key])
            elif isinstance(step, Change):
                seen.append(step)
                if len(seen) == 2 * len(keys):
                    break
    finally:
        feed.close()
        store.close()
    assert sorted((c.key, c.kind) for c in seen) == sorted(
        [(key, "created") for key in keys] + [(key, "deleted") for key in keys]
    )


def test_memcached_events_of_a_real_app(memcached_server: ServerProcess) -> None:
    url = f"memcached://127.0.0.1:{memcached_server.port}"
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    app = make_app(memcached_servers=[("127.0.0.1", memcached_server.port)], prefix=prefix)
    existing = app.test_client()
    save(app, existing, {"user_id": 1})  # stored before the watch: its next save is a change
    watcher = Watcher("--store", url, "--prefix", prefix, "--limit", "4", "--format", "ndjson")
    assert watcher.ready, watcher.finish()
    client = app.test_client()
    save(app, client, {"user_id": 42})
    save(app, client, {"cart": [1]})
    save(app, existing, {"user_id": 2})
    sid = sid_of(app, client)
    assert client.post("/clear").status_code == 200  # 1.6.18 logs no deletions
    save(app, app.test_client(), {"user_id": 3})
    code, records, err = watcher.finish()
    assert code == 0, err
    assert [(r["event"], r["sid"]) for r in records][:3] == [
        ("created", sid), ("changed", sid), ("changed", sid_of(app, existing)),
    ]
    assert records[3]["event"] in ("created", "deleted")  # created before 1.6.20, else the deletion
    if records[3]["event"] == "created":
        assert "logs no deletions" in err


def test_a_store_without_a_change_feed_exits_2(cli: t.Any, minimal_url: str) -> None:  # noqa: F811
    result = cli("watch", "--store", minimal_url, "--limit", "1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "report changes as they happen, which watch needs" in result.stderr


def test_ctrl_c_ends_cleanly(notifications_off: t.Any, redis_url: str) -> None:
    import signal

    # A prefix of its own: keys other tests left on the shared server never feed it.
    prefix = f"ctrl-c-{uuid.uuid4().hex[:8]}:"
    watcher = Watcher("--store", redis_url, "--prefix", prefix, "--enable", "--format", "ndjson")
    assert watcher.ready, watcher.finish()
    notifications_off.set(prefix + "one", b"x")
    assert watcher.proc.stdout is not None
    assert json.loads(watcher.proc.stdout.readline())["event"] == "created"
    watcher.proc.send_signal(signal.SIGINT)
    code, _, err = watcher.finish()
    assert code == 0 and "Traceback" not in err and "error:" not in err, err


def test_the_live_view_on_a_terminal_escapes_hostile_keys(notifications_off: t.Any, redis_url: str) -> None:
    import pty

    main, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSTOOL_")}
    env.update(TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sesstool", "watch", "--store", redis_url, "--enable", "--limit", "2"],
        stdout=follower, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    os.close(follower)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("watching "), proc.stderr.read()
    notifications_off.set(b"session:\x1b]52;c;ZXZpbA==\x07", b"x")
    notifications_off.set("session:plain", b"x")
    proc.wait(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    assert proc.returncode == 0, proc.stderr.read()
    text = shown.decode("utf-8", "replace")
    assert "\x1b]52" not in text and "\\x1b]52;c;ZXZpbA==\\x07" in text
    assert "plain" in text and "created 2" in text


@pytest.mark.parametrize("topology", ["redis", "memcached"])
def test_an_idle_feed_is_no_stalled_round_trip(topology: str, notifications_off: t.Any, redis_url: str,
                                               memcached_server: ServerProcess) -> None:  # fmt: skip
    """Each step of the feed waits at most ``idle``, so the per-step deadline that bounds
    every store call (here 1 s) never fires however long nothing happens."""
    from sesstool.deadline import DeadlineStore

    url = redis_url if topology == "redis" else f"memcached://127.0.0.1:{memcached_server.port}"
    store = t.cast(t.Any, DeadlineStore(open_store(url), 1.0))
    idle_steps = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # memcached < 1.6.20: no deletions
        feed = store.watch(f"w{uuid.uuid4().hex[:6]}:".encode(), idle=0.05, enable=True)
        try:
            for step in feed:
                idle_steps += step is FeedState.IDLE
                if idle_steps == 30:  # 1.5 s of nothing, in steps of 0.05 s
                    break
        finally:
            feed.close()
            store.close()
