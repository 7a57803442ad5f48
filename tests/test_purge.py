"""``purge`` on a real redis-server: selectors, confirmation, backup, pacing, idle time.

Sessions come from the real Flask-Session 0.8 app, plus what older versions and bots
leave behind; the app reads back what survives."""

from __future__ import annotations

import json
import pickle

import msgspec
import pytest

from sesstool.ops.pacing import Pacer
from tests.flaskapps import make_app, read_session, write_session
from tests.write_helpers import app_has_no_session, make_idle

LIFETIME = 31 * 86400


@pytest.fixture
def mixed(redis_url: str, redis_client):
    """Four real sessions and four empty ones in every format bots left them in."""
    app = make_app(redis_url=redis_url)
    json_app = make_app(redis_url=redis_url, fmt="json")
    real = {
        "alice": write_session(app, {"user_id": 42, "name": "alice"}),
        "bob": write_session(app, {"user_id": 7, "name": "bob"}),
        "carol": write_session(json_app, {"user_id": 42, "name": "carol"}),
        "dave": write_session(app, {"cart": {"items": [1]}}),
    }
    redis_client.set("session:bot-msgpack", msgspec.msgpack.encode({"_permanent": True}), ex=LIFETIME)
    redis_client.set("session:bot-json", b"{}", ex=LIFETIME)
    redis_client.set("session:bot-pickle", pickle.dumps({"_permanent": True}), ex=LIFETIME)
    redis_client.set("session:bot-empty", b"\x80", ex=LIFETIME)
    redis_client.set("other:bot", b"\x80")  # not under the prefix
    return app, real


def test_purge_needs_a_selector(cli, redis_url, mixed) -> None:
    result = cli("purge", "--store", redis_url, "--yes")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: purge needs at least one selector: --expired, --empty, --idle, --where or --all")


def test_without_a_terminal_purge_refuses_unless_yes_or_dry_run(cli, redis_url, redis_client, mixed) -> None:
    refused = cli("purge", "--empty", "--store", redis_url)
    assert refused.exit_code == 2
    assert refused.stderr == ("error: purge deletes sessions: pass --yes to confirm (there is no terminal to "
                              "ask on), or --dry-run to preview\n")
    assert redis_client.dbsize() == 9
    preview = cli("purge", "--empty", "--store", redis_url, "--dry-run", "--format", "json")
    assert preview.exit_code == 0, preview.stderr
    assert preview.stdout == '{"matched":4,"deleted":0,"dry_run":true,"undecodable":0}\n'
    assert redis_client.dbsize() == 9


def test_on_a_terminal_purge_counts_and_asks(cli, redis_url, redis_client, mixed) -> None:
    declined = cli("purge", "--empty", "--store", redis_url, input="n\n", stdin_isatty=True)
    assert declined.exit_code == 0
    assert f"Delete 4 sessions under 'session:' (empty) from {redis_url}? [y/N]" in declined.stderr
    assert "aborted: nothing deleted" in declined.stderr
    assert redis_client.dbsize() == 9
    accepted = cli("purge", "--empty", "--store", redis_url, "--format", "json", input="y\n", stdin_isatty=True)
    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.json() == {"matched": 4, "deleted": 4, "dry_run": False, "undecodable": 0}


def test_empty_removes_bookkeeping_only_sessions_and_the_app_keeps_the_rest(
        cli, redis_url, redis_client, mixed) -> None:
    app, real = mixed
    result = cli("purge", "--empty", "--yes", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == '{"matched":4,"deleted":4,"dry_run":false,"undecodable":0}\n'
    assert not redis_client.keys("session:bot*")
    assert redis_client.exists("other:bot") == 1
    assert read_session(app, real["alice"].cookie)["name"] == "alice"
    assert read_session(app, real["dave"].cookie)["cart"] == {"items": [1]}


def test_where_selects_by_data_and_all_selectors_must_match(cli, redis_url, redis_client, mixed) -> None:
    app, real = mixed
    both = cli("purge", "--where", "user_id=42", "--empty", "--yes", "--store", redis_url, "--format", "json")
    assert both.json() == {"matched": 0, "deleted": 0, "dry_run": False, "undecodable": 0}
    result = cli("purge", "--where", "user_id=42", "--where", "name~^c", "--yes", "--store", redis_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "deleted 1 of 1 matched sessions (8 keys scanned)\n"
    assert app_has_no_session(app, real["carol"].cookie)
    assert read_session(app, real["alice"].cookie)["name"] == "alice"


def test_all_deletes_every_session_under_the_prefix(cli, redis_url, redis_client, mixed) -> None:
    for i in range(2500):
        redis_client.set(f"session:x{i}", b"\x80")
    dry = cli("purge", "--all", "--dry-run", "--store", redis_url, "--format", "json")
    assert dry.json() == {"matched": 2508, "deleted": 0, "dry_run": True, "undecodable": 0}
    result = cli("purge", "--all", "--yes", "--store", redis_url, "--batch", "700", "--format", "json")
    assert result.json() == {"matched": 2508, "deleted": 2508, "dry_run": False, "undecodable": 0}
    assert redis_client.keys("*") == [b"other:bot"]


def test_other_types_under_the_prefix_are_skipped_with_a_warning(cli, redis_url, redis_client, mixed) -> None:
    redis_client.hset("session:a-hash", "k", "v")
    result = cli("purge", "--where", "!user_id", "--yes", "--store", redis_url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["deleted"] == 5  # dave and the four bots
    assert "warning: skipped keys under 'session:' that are not session values: 1 hash" in result.stderr
    assert redis_client.exists("session:a-hash") == 1


def test_expired_means_no_ttl_and_idle_beyond_the_lifetime(cli, redis_url, redis_client) -> None:
    stale, fresh, ttl_stale = "session:stale", "session:fresh", "session:ttl-stale"
    for key in (stale, fresh):
        redis_client.set(key, msgspec.msgpack.encode({"user_id": 1}))
    redis_client.set(ttl_stale, msgspec.msgpack.encode({"user_id": 1}), ex=3600)
    redis_client.hset("session:hash", "k", "v")
    for key in (stale, ttl_stale, "session:hash"):
        make_idle(redis_client, key, 40 * 86400)

    dry = cli("purge", "--expired", "--dry-run", "--store", redis_url, "--format", "json")
    assert dry.json() == {"matched": 1, "deleted": 0, "dry_run": True, "undecodable": 0}
    # Counting read no value: the idle time is as it was.
    assert redis_client.object("idletime", stale) >= 40 * 86400
    short = cli("purge", "--expired", "--lifetime", "1h", "--dry-run", "--store", redis_url, "--format", "json")
    assert short.json()["matched"] == 1  # 'fresh' is idle 0s < 1h; the TTL'd key never counts

    result = cli("purge", "--expired", "--yes", "--store", redis_url, "--format", "json")
    assert result.json() == {"matched": 1, "deleted": 1, "dry_run": False, "undecodable": 0}
    assert "1 hash" in result.stderr
    assert redis_client.exists(stale) == 0
    assert redis_client.exists(fresh, ttl_stale, "session:hash") == 3


def test_idle_with_where_reads_values_only_of_idle_sessions(cli, redis_url, redis_client) -> None:
    for i in range(6):
        redis_client.set(f"session:s{i}", msgspec.msgpack.encode({"user_id": i % 2}), ex=LIFETIME)
    for i in (0, 1, 2):
        make_idle(redis_client, f"session:s{i}", 3 * 86400)
    result = cli("purge", "--idle", "2d", "--where", "user_id=0", "--yes", "--store", redis_url, "--format", "json")
    assert result.json() == {"matched": 2, "deleted": 2, "dry_run": False, "undecodable": 0}
    assert sorted(redis_client.keys("*")) == [b"session:s1", b"session:s3", b"session:s4", b"session:s5"]
    # s1 was idle but did not match: its value was read (idle time reset) ...
    assert redis_client.object("idletime", "session:s1") < 60
    # ... and with a dry run of such a purge, sesstool says so.
    dry = cli("purge", "--idle", "2d", "--empty", "--dry-run", "--store", redis_url)
    assert "resets their idle time" in dry.stderr


def test_idle_alone_on_a_terminal_counts_without_touching(cli, redis_url, redis_client) -> None:
    redis_client.set("session:old", b"\x80", ex=LIFETIME)
    make_idle(redis_client, "session:old", 5 * 86400)
    result = cli("purge", "--idle", "1d", "--store", redis_url, "--format", "json", input="y\n", stdin_isatty=True)
    assert "Delete 1 sessions" in result.stderr
    assert result.json() == {"matched": 1, "deleted": 1, "dry_run": False, "undecodable": 0}


def test_lfu_policy_is_a_clear_store_error(cli, redis_url, redis_client) -> None:
    redis_client.set("session:a", b"\x80")
    redis_client.config_set("maxmemory-policy", "allkeys-lfu")
    try:
        result = cli("purge", "--idle", "1d", "--yes", "--store", redis_url)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"error: {redis_url} cannot report idle time: its maxmemory-policy is an LFU policy "
        "(idle time needs an LRU or noeviction policy); purge stopped after deleting 0 of 0")
    assert redis_client.exists("session:a") == 1


@pytest.mark.parametrize("args", [["--idle", "3 days"], ["--lifetime", "x", "--expired"], ["--where", "=1"]])
def test_bad_selector_values_are_usage_errors(cli, redis_url, args) -> None:
    result = cli("purge", *args, "--yes", "--store", redis_url)
    assert result.exit_code == 2 and result.stderr.startswith("error: invalid")


def test_backup_holds_every_deleted_session_and_imports_back(cli, redis_url, redis_client, mixed, tmp_path) -> None:
    app, real = mixed
    backup = tmp_path / "backup.ndjson"
    result = cli("purge", "--where", "user_id=42", "--yes", "--backup", str(backup), "--store", redis_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith(f"; backup in {backup}\n")
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert sorted(line["data"]["name"] for line in lines) == ["alice", "carol"]
    assert app_has_no_session(app, real["alice"].cookie)

    again = cli("purge", "--empty", "--yes", "--backup", str(backup), "--store", redis_url)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert redis_client.exists("session:bot-json") == 1

    restored = cli("import", str(backup), "--store", redis_url)
    assert restored.exit_code == 0, restored.stderr
    assert read_session(app, real["alice"].cookie)["name"] == "alice"
    assert read_session(app, real["carol"].cookie)["name"] == "carol"


def test_progress_goes_to_stderr_on_a_terminal(cli, redis_url, redis_client) -> None:
    for i in range(50):
        redis_client.set(f"session:s{i}", b"\x80")
    result = cli("purge", "--empty", "--yes", "--store", redis_url, "--batch", "10", stderr_isatty=True)
    assert result.exit_code == 0
    assert "purging: " in result.stderr and "\r\x1b[2K" in result.stderr
    assert result.stdout == "deleted 50 of 50 matched sessions (50 keys scanned)\n"


@pytest.mark.parametrize(
    "args",
    [
        ["purge", "--all", "--yes"],
        ["purge", "--where", "a=1", "--yes"],
        ["list", "--format", "ndjson"],
        ["stats", "--format", "json"],
        ["export"],
    ],
)
def test_rate_paces_every_bulk_command(cli, redis_url, redis_client, monkeypatch, args) -> None:
    # The pacer's arithmetic is tested on a fake clock below; here, that each command
    # hands it every session it handles, at the rate asked (no timing: no flaky test).
    from sesstool.ops import pacing

    paced: list[tuple[int | None, int]] = []
    real_pace = pacing.Pacer.pace

    def pace(self: pacing.Pacer, count: int) -> None:
        paced.append((self.rate, count))
        real_pace(self, count)

    monkeypatch.setattr(pacing.Pacer, "pace", pace)
    for i in range(600):
        redis_client.set(f"session:s{i}", b"\x81\xa1a\x01")
    result = cli(*args, "--store", redis_url, "--batch", "100", "--rate", "100000")
    assert result.exit_code == 0, result.stderr
    assert {rate for rate, _ in paced} == {100000}
    assert sum(count for _, count in paced) == 600
    assert len(paced) >= 6  # a pause possible after every batch, not once at the end


def test_pacer_keeps_the_running_rate() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(100, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.pace(50)  # work itself takes no time here
    assert slept == pytest.approx([0.5] * 5)
    assert now[0] == pytest.approx(102.5)
    Pacer(None).pace(10**9)  # no rate: never sleeps


def test_a_paced_command_takes_small_steps_unless_told_otherwise(cli, redis_url, redis_client, monkeypatch) -> None:
    # A long step of a single-threaded server delays every other client: with --rate
    # and no --batch, each round trip carries about 5 ms of the rate.
    from sesstool.ops import pacing

    counts: list[int] = []
    monkeypatch.setattr(pacing.Pacer, "pace", lambda self, count: counts.append(count))
    for i in range(600):
        redis_client.set(f"session:s{i}", b"\x81\xa1a\x01")
    assert cli("list", "--store", redis_url, "--rate", "4000").exit_code == 0  # steps of 20
    assert sum(counts) == 600 and max(counts) < 100
    counts.clear()
    assert cli("list", "--store", redis_url, "--batch", "1000", "--rate", "4000").exit_code == 0
    assert sum(counts) == 600 and max(counts) > 100


def test_rate_alone_takes_small_steps(cli, redis_url, redis_client, monkeypatch) -> None:
    # What keeps a busy server answering its app: a paced command asks for a few
    # keys a round trip (rate / 500), not the unpaced 1,000 (bench_gentle.py).
    from sesstool.ops import pacing

    counts: list[int] = []
    monkeypatch.setattr(pacing.Pacer, "pace", lambda self, count: counts.append(count))
    for i in range(300):
        redis_client.set(f"session:s{i}", b"\x81\xa1a\x01")
    assert cli("list", "--store", redis_url, "--rate", "20000", "--format", "ndjson").exit_code == 0
    # SCAN's COUNT is a hint (Redis may return a key or two more): about 40, never 1,000.
    assert sum(counts) == 300 and max(counts) <= 50 and len(counts) >= 300 // 50
    counts.clear()
    assert cli("list", "--store", redis_url, "--format", "ndjson", "--rate", "1").exit_code == 0
    assert 5 <= max(counts) <= 15  # ten keys a step at the least, however slow the rate
