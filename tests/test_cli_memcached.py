"""Every store command with ``--store memcached://...``, against real memcached and the
real Flask-Session 0.8 app, which reads back what sesstool changed."""

from __future__ import annotations

import json
import socket
import time
import typing as t

import pytest

from sesstool.codecs import serializers
from sesstool.stores.memcached import MemcachedStore, open_memcached
from tests.conftest import CliRunner
from tests.flaskapps import make_app, read_session, settle, write_session
from tests.servers import ServerProcess, free_port, start_memcached, wait_for_memcached_clock

pytestmark = pytest.mark.network

DAY = 24 * 60 * 60


def flush(*servers: ServerProcess) -> None:
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"flush_all\r\n")
            assert sock.recv(100) == b"OK\r\n"


# About one Flask-Session id in 64 starts with "-": ids always go after "--".


class Deployment:
    """A Flask-Session 0.8 app on one or two memcached servers, and the store URL for it."""

    def __init__(self, servers: t.Sequence[ServerProcess]) -> None:
        flush(*servers)
        self.servers = servers
        self.url = "memcached://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
        self.app = make_app(memcached_servers=[("127.0.0.1", s.port) for s in servers])

    def write(self, data: dict[str, t.Any]) -> str:
        """A new session holding ``data``; its sid (the cookie: no signer)."""
        sid = write_session(self.app, data).sid
        settle(self.app)
        return sid

    def read(self, sid: str) -> dict[str, t.Any]:
        return read_session(self.app, sid)

    def store(self) -> MemcachedStore:
        return open_memcached(self.url)


@pytest.fixture
def one(memcached_server: ServerProcess) -> Deployment:
    return Deployment([memcached_server])


@pytest.fixture(params=["one server", "two servers"])
def deployment(request: pytest.FixtureRequest, memcached_server: ServerProcess,
               memcached_pair: tuple[ServerProcess, ServerProcess]) -> Deployment:  # fmt: skip
    return Deployment([memcached_server] if request.param == "one server" else list(memcached_pair))


def test_list_show_and_stats(cli: CliRunner, deployment: Deployment) -> None:
    sids = [deployment.write({"user_id": i % 3, "name": f"n{i}"}) for i in range(9)]
    empty = "emptysession"  # what bots leave: Flask's bookkeeping only
    deployment.store().set(b"session:" + empty.encode(), serializers.encode({"_permanent": True}, "msgpack"), 3600)
    listed = cli("list", "--store", deployment.url, "--format", "ndjson")
    assert listed.exit_code == 0, listed.stderr
    records = {r["sid"]: r for r in listed.ndjson()}
    assert sorted(records) == sorted([*sids, empty])
    record = records[sids[4]]
    assert set(record) == {"sid", "key", "ttl", "size", "serializer"}
    assert record["key"] == f"session:{sids[4]}" and record["serializer"] == "msgpack"
    assert 31 * DAY - 10 <= record["ttl"] <= 31 * DAY + 3
    assert records[empty]["ttl"] <= 3600
    assert record["size"] == len(serializers.encode({"user_id": 1, "name": "n4", "_permanent": True}, "msgpack"))

    where = cli("list", "--store", deployment.url, "--where", "user_id=1", "--format", "ndjson", "--data")
    assert sorted(r["sid"] for r in where.ndjson()) == sorted(sids[i] for i in (1, 4, 7))
    assert all(r["data"]["user_id"] == 1 for r in where.ndjson())

    shown = cli("show", "--store", deployment.url, "--format", "json", "--", sids[2])
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["data"] == {"user_id": 2, "name": "n2", "_permanent": True}
    assert cli("show", "nosuchsession", "--store", deployment.url).exit_code == 1

    stats = cli("stats", "--store", deployment.url, "--format", "json").json()
    assert stats["count"] == 10 and stats["serializers"] == {"msgpack": 10}
    assert stats["no_ttl"] == 0 and stats["empty"] == 1


def test_edit_keeps_the_expiry_and_the_app_reads_the_change(cli: CliRunner, deployment: Deployment) -> None:
    sid = deployment.write({"user_id": 1, "role": "user"})
    key = f"session:{sid}".encode()
    result = cli("edit", "--store", deployment.url, "--set", "role=admin", "--set", "user_id=2", "--", sid)
    assert result.exit_code == 0, result.stderr
    # Checked before the app reads it: the app renews a permanent session on each request.
    item = deployment.store().get(key)
    assert item is not None and 31 * DAY - 10 <= t.cast(int, item.ttl) <= 31 * DAY + 3  # absolute, kept
    assert deployment.store().expire(key, 5 * DAY)
    assert cli("edit", "--store", deployment.url, "--unset", "role", "--", sid).exit_code == 0
    item = deployment.store().get(key)
    assert item is not None and 5 * DAY - 10 <= t.cast(int, item.ttl) <= 5 * DAY + 3
    assert deployment.read(sid) == {"user_id": 2, "_permanent": True}


def test_expire_persist_and_delete(cli: CliRunner, deployment: Deployment) -> None:
    sids = [deployment.write({"user_id": i}) for i in range(4)]
    url = deployment.url
    key = f"session:{sids[0]}".encode()

    assert cli("expire", "--in", "2h", "--store", url, "--", sids[0]).exit_code == 0
    assert 7190 <= t.cast(int, t.cast(t.Any, deployment.store().get(key)).ttl) <= 7203
    assert cli("expire", "--in", "40d", "--store", url, "--", sids[0]).exit_code == 0  # past 30 days
    assert 40 * DAY - 10 <= t.cast(int, t.cast(t.Any, deployment.store().get(key)).ttl) <= 40 * DAY + 3
    at = int(time.time()) + 3 * DAY
    assert cli("expire", "--at", str(at), "--store", url, "--", sids[0]).exit_code == 0
    assert 3 * DAY - 10 <= t.cast(int, t.cast(t.Any, deployment.store().get(key)).ttl) <= 3 * DAY + 3
    assert cli("persist", "--store", url, "--", sids[0]).exit_code == 0
    assert cli("show", "--store", url, "--format", "json", "--", sids[0]).json()["ttl"] is None
    assert deployment.read(sids[0])["user_id"] == 0

    assert cli("expire", "--now", "--store", url, "--", sids[1]).exit_code == 0
    assert "user_id" not in deployment.read(sids[1])
    assert cli("expire", "nosuchsession", "--in", "1h", "--store", url).exit_code == 1

    assert cli("delete", "--store", url, "--", sids[2]).exit_code == 0
    assert cli("delete", "-", "--store", url, input=f"{sids[3]}\n").exit_code == 0
    assert "user_id" not in deployment.read(sids[2]) and "user_id" not in deployment.read(sids[3])
    assert deployment.read(sids[0])["user_id"] == 0


def test_purge(cli: CliRunner, deployment: Deployment) -> None:
    sids = [deployment.write({"user_id": i % 2}) for i in range(10)]
    url = deployment.url
    dry = cli("purge", "--where", "user_id=1", "--dry-run", "--store", url, "--format", "json")
    assert dry.json() == {"matched": 5, "deleted": 0, "dry_run": True, "undecodable": 0}
    result = cli("purge", "--where", "user_id=1", "--yes", "--store", url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"matched": 5, "deleted": 5, "dry_run": False, "undecodable": 0}
    assert all(("user_id" in deployment.read(sid)) == (i % 2 == 0) for i, sid in enumerate(sids))
    assert cli("purge", "--all", "--store", url).exit_code == 2  # no terminal, no --yes
    assert cli("purge", "--all", "--yes", "--store", url, "--format", "json").json()["deleted"] == 5
    assert cli("list", "--store", url, "--format", "ndjson").stdout == ""


def test_purge_idle_sessions(cli: CliRunner, one: Deployment) -> None:
    sids = [one.write({"user_id": i}) for i in range(4)]
    wait_for_memcached_clock(one.servers[0].port, 2)  # idle is now at least 2
    client = one.app.test_client()
    client.set_cookie("session", sids[0])
    client.post("/set", json={"seen": True})  # a request: the app rewrites the session
    settle(one.app)
    listed = cli("list", "--store", one.url, "--format", "ndjson")  # reading is not use
    assert len(listed.ndjson()) == 4
    dry = cli("purge", "--idle", "1", "--dry-run", "--store", one.url, "--format", "json")
    assert dry.json() == {"matched": 3, "deleted": 0, "dry_run": True, "undecodable": 0}
    result = cli("purge", "--idle", "1", "--yes", "--store", one.url, "--format", "json")
    assert result.json() == {"matched": 3, "deleted": 3, "dry_run": False, "undecodable": 0}, result.stderr
    assert [("user_id" in one.read(sid)) for sid in sids] == [True, False, False, False]


def test_export_and_import_restore_sessions_with_their_expiry(cli: CliRunner, deployment: Deployment, tmp_path) -> None:
    sids = [deployment.write({"user_id": i, "tags": ["a", "b"]}) for i in range(6)]
    exported = cli("export", "--store", deployment.url)
    assert exported.exit_code == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 6
    backup = tmp_path / "sessions.ndjson"
    backup.write_text(exported.stdout)
    flush(*deployment.servers)
    assert all("user_id" not in deployment.read(sid) for sid in sids)

    imported = cli("import", str(backup), "--store", deployment.url, "--format", "json")
    assert imported.exit_code == 0, imported.stderr
    assert [deployment.read(sid)["user_id"] for sid in sids] == list(range(6))
    records = cli("list", "--store", deployment.url, "--format", "ndjson").ndjson()
    assert all(31 * DAY - 20 <= r["ttl"] <= 31 * DAY + 3 for r in records)  # not expired at once


def test_migrate_pickled_sessions_to_msgpack_for_the_new_app(cli: CliRunner, one: Deployment) -> None:
    store = one.store()
    # As Flask-Session 0.5 left them: pickle.dumps(dict(session), 0), client flags 0.
    import pickle

    for i in range(5):
        store.set(b"session:old%d" % i, pickle.dumps({"user_id": i, "_permanent": True}, 0), 20 * DAY)
    result = cli("migrate", "--to", "msgpack", "--store", one.url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    item = t.cast(t.Any, store.get(b"session:old3"))
    assert serializers.decode(item.value)[0] == "msgpack"
    assert 20 * DAY - 10 <= item.ttl <= 20 * DAY + 3  # kept (before the app renews it on read)
    assert [one.read(f"old{i}")["user_id"] for i in range(5)] == list(range(5))


def test_an_unreachable_server_exits_3_with_one_line(cli: CliRunner) -> None:
    port = free_port()
    for args in (["list"], ["show", "abc"], ["stats"], ["purge", "--all", "--yes"]):
        result = cli(*args, "--store", f"memcached://127.0.0.1:{port}")
        assert result.exit_code == 3, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_server_without_metadump_is_named_in_the_error(cli: CliRunner) -> None:
    server = start_memcached(["-o", "no_lru_crawler"])
    try:
        result = cli("list", "--store", f"memcached://127.0.0.1:{server.port}")
        assert result.exit_code == 3
        assert "lru_crawler metadump" in result.stderr and "1.4.31" in result.stderr
    finally:
        server.stop()


def test_json_output_of_list_is_one_array(cli: CliRunner, one: Deployment) -> None:
    sids = [one.write({"user_id": i}) for i in range(3)]
    result = cli("list", "--store", one.url, "--format", "json")
    assert sorted(r["sid"] for r in json.loads(result.stdout)) == sorted(sids)


def test_purge_expired_frees_items_past_their_expiry(cli: CliRunner) -> None:
    """memcached still holds an expired item until its LRU crawler or a read frees it;
    purge --expired has the servers free them now (and nothing else goes)."""
    server = start_memcached(["-o", "no_lru_maintainer"])  # no background crawler to race us
    try:
        url = f"memcached://127.0.0.1:{server.port}"
        store = open_memcached(url)
        store.set(b"session:short", serializers.encode({"user_id": 1}, "msgpack"), 1)
        store.set(b"session:long", serializers.encode({"user_id": 2}, "msgpack"), 3600)
        wait_for_memcached_clock(server.port, 2)  # past the 1 s expiry on the server's clock
        preview = cli("purge", "--expired", "--dry-run", "--store", url, "--format", "json")
        assert preview.exit_code == 0
        assert preview.json() == {"matched": 0, "deleted": 0, "dry_run": True, "undecodable": 0}
        assert "cannot count items past their expiry" in preview.stderr
        combined = cli("purge", "--expired", "--where", "user_id=1", "--yes", "--store", url)
        assert combined.exit_code == 2 and "cannot be combined" in combined.stderr
        result = cli("purge", "--expired", "--yes", "--store", url, "--format", "json")
        assert result.exit_code == 0, result.stderr
        assert result.json() == {"matched": 1, "deleted": 1, "dry_run": False, "undecodable": 0}
        listed = cli("list", "--store", url, "--format", "ndjson").ndjson()
        assert [r["sid"] for r in listed] == ["long"]
    finally:
        server.stop()


def test_purge_expired_on_a_terminal_asks_before_freeing_anything(cli: CliRunner) -> None:
    """memcached cannot count items past their expiry without freeing them, so the
    prompt cannot show a count; it must still ask, and "no" must free nothing."""
    server = start_memcached(["-o", "no_lru_maintainer"])  # no background crawler to race us
    try:
        url = f"memcached://127.0.0.1:{server.port}"
        store = open_memcached(url)
        store.set(b"session:short", serializers.encode({"user_id": 1}, "msgpack"), 1)
        wait_for_memcached_clock(server.port, 2)  # past the 1 s expiry on the server's clock
        refused = cli("purge", "--expired", "--store", url, "--format", "json", input="n\n", stdin_isatty=True)
        assert refused.exit_code == 0, refused.stderr
        assert "past its expiry" in refused.stderr and "[y/N]" in refused.stderr
        assert "nothing deleted" in refused.stderr and refused.stdout == ""
        assert store._stat(store.servers[0], b"crawler_reclaimed") == 0
        accepted = cli("purge", "--expired", "--store", url, "--format", "json", input="y\n", stdin_isatty=True)
        assert accepted.exit_code == 0, accepted.stderr
        assert accepted.json() == {"matched": 1, "deleted": 1, "dry_run": False, "undecodable": 0}
        store.close()
    finally:
        server.stop()
