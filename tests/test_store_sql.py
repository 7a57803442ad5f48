"""The SQL store against the real Flask-Session 0.8 SQLAlchemy interface, in SQLite and PostgreSQL.

Sessions are written by the app (through its test client); sesstool lists, shows,
edits, expires, deletes, purges, exports, imports and migrates them; the app then
reads back what sesstool changed. What the contract suite checks for every store
(tests/test_store_contract.py) is not repeated here.
"""

from __future__ import annotations

import json
import pickle
import typing as t
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sesstool.ops.purge import Criteria, purge
from sesstool.stores import open_store
from tests.apps import app_dir, sqlalchemy_app
from tests.flaskapps import read_session, write_session
from tests.servers import PG_PASSWORD, PostgresServer
from tests.sqlstores import postgres_database, sqlite_database, sqlite_url

__all__ = ["sqlite_url"]  # a fixture


@dataclass
class Database:
    kind: str
    url: str  # what sesstool is given
    app: t.Any  # the Flask-Session app that created the table and writes sessions
    table: str = "sessions"

    def engine(self) -> t.Any:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        url = self.url.replace("postgresql://", "postgresql+psycopg://", 1)
        return sa.create_engine(url, poolclass=NullPool)

    def execute(self, sql: str, **params: t.Any) -> t.Any:
        """Raw SQL, as another writer (or a hostile one) would run it."""
        import sqlalchemy as sa

        engine = self.engine()
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(sql.replace("TABLE", self.table)), params)
                return result.all() if result.returns_rows else result.rowcount
        finally:
            engine.dispose()


def _database(kind: str, request: pytest.FixtureRequest, tmp_path: Path, table: str = "sessions") -> Database:
    if kind == "sqlite":
        url, app = sqlite_database(tmp_path, table)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url, app = postgres_database(server, "t" + uuid.uuid4().hex[:12], table)
    return Database(kind, url, app, table)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    return _database(request.param, request, tmp_path)


def _gone(app: t.Any, cookie: str) -> bool:
    """The app no longer finds that session (it starts a new, empty one)."""
    return read_session(app, cookie) in ({}, {"_permanent": True})


def _utc_naive(offset: timedelta) -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None) + offset


def test_what_the_app_wrote_is_listed_shown_edited_and_read_back(cli: t.Any, db: Database) -> None:
    one = write_session(db.app, {"user_id": 42, "cart": [1, 2]})
    two = write_session(db.app, {"user_id": 7})
    listed = cli("list", "--store", db.url, "--format", "json", "--data").json()
    by_sid = {record["sid"]: record for record in listed}
    assert set(by_sid) == {one.sid, two.sid}
    assert by_sid[one.sid]["serializer"] == "msgpack" and by_sid[one.sid]["data"]["cart"] == [1, 2]
    assert 31 * 86400 - 10 <= by_sid[one.sid]["ttl"] <= 31 * 86400  # PERMANENT_SESSION_LIFETIME
    assert cli("show", one.sid, "--store", db.url, "--format", "json").json()["data"]["user_id"] == 42

    edited = cli("edit", one.sid, "--set", "user_id=43", "--unset", "cart", "--store", db.url)
    assert edited.exit_code == 0, edited.stderr
    assert read_session(db.app, one.cookie) == {"_permanent": True, "user_id": 43}
    after = cli("show", one.sid, "--store", db.url, "--format", "json").json()
    assert abs(after["ttl"] - by_sid[one.sid]["ttl"]) <= 5  # the edit kept the expiry

    assert cli("expire", two.sid, "--in", "1h", "--store", db.url).exit_code == 0
    assert 3590 <= cli("show", two.sid, "--store", db.url, "--format", "json").json()["ttl"] <= 3600
    assert read_session(db.app, two.cookie) == {"_permanent": True, "user_id": 7}
    deleted = cli("delete", two.sid, "nonexistent", "--store", db.url, "--format", "json")
    assert deleted.exit_code == 1 and json.loads(deleted.stdout)["deleted"] == 1
    assert _gone(db.app, two.cookie)


def test_expire_in_the_past_is_seen_as_expired_by_the_app(cli: t.Any, db: Database) -> None:
    written = write_session(db.app, {"user_id": 1})
    assert cli("expire", written.sid, "--at", "2001-01-01T00:00:00+00:00", "--store", db.url).exit_code == 0
    assert _gone(db.app, written.cookie)


def test_purge_expired_deletes_expired_rows_only_as_session_cleanup_would(cli: t.Any, db: Database) -> None:
    fresh = write_session(db.app, {"user_id": 1})
    stale = [write_session(db.app, {"user_id": n}) for n in (2, 3)]
    for session in stale:
        db.execute("UPDATE TABLE SET expiry = :when WHERE session_id = :sid",
                   when=_utc_naive(-timedelta(hours=1)), sid="session:" + session.sid)
    listed = {r["sid"]: r["ttl"] for r in cli("list", "--store", db.url, "--format", "json").json()}
    assert listed[stale[0].sid] == 0 and listed[fresh.sid] > 0
    assert cli("purge", "--expired", "--dry-run", "--store", db.url, "--format", "json").json()["matched"] == 2
    result = cli("purge", "--expired", "--yes", "--store", db.url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["deleted"] == 2
    assert [row[0] for row in db.execute("SELECT session_id FROM TABLE")] == ["session:" + fresh.sid]
    assert read_session(db.app, fresh.cookie) == {"_permanent": True, "user_id": 1}


def test_purge_keeps_a_row_changed_after_it_was_selected(db: Database) -> None:
    stale = [write_session(db.app, {"user_id": n}) for n in (1, 2)]
    db.execute("UPDATE TABLE SET expiry = :when", when=_utc_naive(-timedelta(minutes=5)))
    changed = "session:" + stale[1].sid

    def another_writer(selected: list[t.Any]) -> int:
        assert len(selected) == 2
        db.execute("UPDATE TABLE SET data = :data WHERE session_id = :sid", data=b"\x81\xa1a\x01", sid=changed)
        return 0

    store = open_store(db.url)
    try:
        result = purge(store, "session:", Criteria(expired=True), on_selected=another_writer)
    finally:
        store.close()
    assert (result.matched, result.deleted, result.kept) == (2, 1, 1)
    assert [row[0] for row in db.execute("SELECT session_id FROM TABLE")] == [changed]


def test_purge_expired_alone_keeps_a_row_the_app_saved_after_it_was_selected(db: Database) -> None:
    # purge --expired alone reads no data: a row goes only while its expiry is the
    # passed one read. The other writer saves one session after the rows were
    # selected and before they are deleted.
    stale = [write_session(db.app, {"user_id": n}) for n in (1, 2, 3)]
    db.execute("UPDATE TABLE SET expiry = :when", when=_utc_naive(-timedelta(minutes=5)))
    saved = stale[1]
    store: t.Any = open_store(db.url)
    delete_passed = store._delete_passed

    def another_writer_first(rows: list[t.Any]) -> int:
        db.execute("UPDATE TABLE SET expiry = :when WHERE session_id = :sid",
                   when=_utc_naive(timedelta(days=31)), sid="session:" + saved.sid)
        return t.cast(int, delete_passed(rows))

    store._delete_passed = another_writer_first
    try:
        result = purge(store, "session:", Criteria(expired=True), batch=2)
    finally:
        store.close()
    assert (result.matched, result.deleted, result.kept) == (3, 2, 1)
    assert [row[0] for row in db.execute("SELECT session_id FROM TABLE")] == ["session:" + saved.sid]
    assert read_session(db.app, saved.cookie) == {"_permanent": True, "user_id": 2}


def test_persist_is_refused_with_the_reason(cli: t.Any, db: Database) -> None:
    written = write_session(db.app, {"user_id": 1})
    result = cli("persist", written.sid, "--store", db.url)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Flask-Session treats a row without expiry as expired" in result.stderr


def test_export_import_and_migrate_round_trip_through_the_app(cli: t.Any, db: Database, tmp_path: Path) -> None:
    kept = write_session(db.app, {"user_id": 5, "when": "now"})
    # Flask-Session before 0.7 pickled the session dict: migrate makes it msgpack.
    legacy = "legacy" + uuid.uuid4().hex
    db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES (:sid, :data, :expiry)",
               sid="session:" + legacy, data=pickle.dumps({"user_id": 9, "_permanent": True}),
               expiry=_utc_naive(timedelta(days=1)))
    migrated = cli("migrate", "--to", "msgpack", "--store", db.url, "--format", "json")
    assert migrated.exit_code == 0, migrated.stderr
    assert read_session(db.app, legacy) == {"_permanent": True, "user_id": 9}

    exported = cli("export", "--store", db.url)
    assert exported.exit_code == 0 and len(exported.ndjson()) == 2
    exported_ttl = next(r["ttl"] for r in exported.ndjson() if r["sid"] == legacy)
    backup = tmp_path / "backup.ndjson"
    backup.write_text(exported.stdout)
    assert cli("purge", "--all", "--yes", "--store", db.url).exit_code == 0
    assert _gone(db.app, kept.cookie)
    imported = cli("import", str(backup), "--store", db.url, "--format", "json")
    assert imported.exit_code == 0, imported.stderr
    assert read_session(db.app, kept.cookie) == {"_permanent": True, "user_id": 5, "when": "now"}
    ttl = cli("show", legacy, "--store", db.url, "--format", "json").json()["ttl"]
    assert exported_ttl - 5 <= ttl <= exported_ttl


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_custom_table_from_the_option_the_env_and_the_app(
    cli: t.Any, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    custom = _database(kind, request, tmp_path, table="web_sessions")
    written = write_session(custom.app, {"user_id": 3})
    missing = cli("list", "--store", custom.url)
    assert missing.exit_code == 3
    assert "no table 'sessions'" in missing.stderr and "--table" in missing.stderr
    listed = cli("list", "--store", custom.url, "--table", "web_sessions", "--format", "json")
    assert [r["sid"] for r in listed.json()] == [written.sid]
    monkeypatch.setenv("SESSTOOL_TABLE", "web_sessions")
    assert [r["sid"] for r in cli("list", "--store", custom.url, "--format", "json").json()] == [written.sid]
    assert cli("list", "--store", custom.url, "--table", "sessions").exit_code == 3  # the option beats env

    monkeypatch.delenv("SESSTOOL_TABLE")
    (tmp_path / "app").mkdir()
    with app_dir(tmp_path / "app", monkeypatch) as apps:
        sql_url = custom.url.replace("postgresql://", "postgresql+psycopg://", 1)
        apps.write("web", sqlalchemy_app(sql_url, table="web_sessions"))
        via_app = cli("list", "--app", "web:app", "--format", "json")
        assert via_app.exit_code == 0, via_app.stderr
        assert [r["sid"] for r in via_app.json()] == [written.sid]
        doctor = cli("doctor", "--app", "web:app", "--format", "json").json()["checks"]
        assert {c["id"]: c["level"] for c in doctor}["store.reachable"] == "ok"
        assert cli("stats", "--app", "web:app", "--format", "json").json()["count"] == 1


@pytest.mark.parametrize("table", ["x;drop", "a.b.c", "1abc", "", "sessions\x1b[2J"])
def test_a_table_name_that_is_no_identifier_is_a_usage_error(cli: t.Any, sqlite_url: str, table: str) -> None:
    result = cli("list", "--store", sqlite_url, "--table", table)
    if table == "":  # empty means the default
        assert result.exit_code == 0
        return
    assert result.exit_code == 2 and "invalid" in result.stderr and "\x1b" not in result.stderr


def test_store_errors_are_one_line_and_never_show_the_password(
    cli: t.Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    wrong = postgres_server.url(password="wrong-" + PG_PASSWORD)
    result = cli("list", "--store", wrong)
    assert result.exit_code == 3 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert PG_PASSWORD not in result.stderr and "authentication failed" in result.stderr
    no_db = cli("list", "--store", postgres_server.url("nosuchdb"))
    assert no_db.exit_code == 3 and PG_PASSWORD not in no_db.stderr and "nosuchdb" in no_db.stderr
    gone = cli("list", "--store", f"sqlite:///{tmp_path}/missing.db")
    assert gone.exit_code == 3 and "no SQLite database" in gone.stderr
    assert not (tmp_path / "missing.db").exists()  # never created
    assert cli("list", "--store", "sqlite://").exit_code == 2
    no_driver = cli("list", "--store", "mysql://u:sekrit-pw@127.0.0.1/db")
    assert no_driver.exit_code == 2 and "mysql+pymysql" in no_driver.stderr and "sekrit-pw" not in no_driver.stderr


def test_any_dialect_plus_driver_url_names_the_sql_store(cli: t.Any, db: Database) -> None:
    write_session(db.app, {"user_id": 1})
    url = db.url.replace("sqlite://", "sqlite+pysqlite://").replace("postgresql://", "postgresql+psycopg://")
    result = cli("list", "--store", url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert len(result.json()) == 1


# -- hostile rows ------------------------------------------------------------------------


def test_hostile_rows_are_listed_as_unknown_and_bulk_commands_go_on(cli: t.Any, db: Database) -> None:
    good = write_session(db.app, {"user_id": 1})
    later = _utc_naive(timedelta(days=1))
    rows = {
        "session:null-data": None,
        "session:garbage": b"\xc1\xff\x00garbage",
        "session:huge": b"\xda" + b"x" * (3 * 1024 * 1024),
        "session:100%_/odd": b"\x80",
    }
    for sid, data in rows.items():
        db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES (:sid, :data, :expiry)",
                   sid=sid, data=data, expiry=later)
    db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES (NULL, :data, NULL)", data=b"x")
    db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES ('session:no-expiry', :data, NULL)", data=b"y")
    if db.kind == "sqlite":  # only SQLite lets a writer store what is not UTF-8, or no date
        db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES "
                   "(CAST(X'73657373696f6e3aff1b5b324a' AS TEXT), X'80', 'not a date')")
        db.execute("INSERT INTO TABLE (session_id, data, expiry) VALUES ('session:text', 'text data', 'soon')")
    listed = cli("list", "--store", db.url, "--format", "ndjson")
    assert listed.exit_code == 0, listed.stderr
    records = {r["key"]: r for r in listed.ndjson()}
    everything = cli("list", "--store", db.url, "--prefix", "", "--format", "ndjson")
    assert "skipped 1 rows with no session_id" in everything.stderr and everything.exit_code == 0
    assert records["session:" + good.sid]["serializer"] == "msgpack"
    assert records["session:null-data"]["serializer"] == "unknown" and records["session:null-data"]["size"] == 0
    assert records["session:garbage"]["serializer"] == "unknown"
    assert records["session:huge"]["size"] == 3 * 1024 * 1024 + 1
    assert records["session:no-expiry"]["ttl"] is None
    if db.kind == "sqlite":
        odd = next(r for k, r in records.items() if "\\xff" in k)
        assert "\x1b" not in listed.stdout and odd["ttl"] == 0
        assert records["session:text"]["ttl"] == 0
    table = cli("list", "--store", db.url)
    assert table.exit_code == 0 and "\x1b" not in table.stdout
    assert cli("stats", "--store", db.url, "--format", "json").exit_code == 0
    doctor = cli("doctor", "--store", db.url, "--format", "json")
    assert doctor.exit_code in (0, 1) and doctor.json()["checks"]
    for record in records.values():
        shown = cli("show", "--store", db.url, "--", record["sid"])
        # 1: the escaped text of a key that is not UTF-8 names no row
        assert shown.exit_code in (0, 1, 4) and shown.stderr.count("\n") <= 1
    # A prefix with LIKE's wildcards matches itself only.
    assert [r["sid"] for r in cli("list", "--store", db.url, "--prefix", "session:100%_/",
                                  "--format", "json").json()] == ["odd"]
    purged = cli("purge", "--all", "--yes", "--store", db.url, "--format", "json")
    assert purged.exit_code == 0 and purged.json()["deleted"] == len(records)
    assert db.execute("SELECT count(*) FROM TABLE")[0][0] == 1  # the row without session_id stays


def test_a_locked_table_times_out_with_exit_3(cli: t.Any, postgres_server: PostgresServer, tmp_path: Path,
                                              request: pytest.FixtureRequest) -> None:  # fmt: skip
    import psycopg

    db = _database("postgresql", request, tmp_path)
    write_session(db.app, {"user_id": 1})
    with psycopg.connect(db.url) as holder:  # another client holds the table while we read
        holder.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        result = cli("list", "--store", db.url, "--timeout", "1.5")
        holder.rollback()
    assert result.exit_code == 3, result.stderr
    assert result.stderr.startswith("error: ") and "timed out" in result.stderr and PG_PASSWORD not in result.stderr


def test_the_readme_sqlite_example_runs_offline(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"Try it offline with SQLite.*?```sh\n(.*?)```", readme, re.S)
    assert block is not None
    script = block.group(1).replace("/tmp/sesstool-demo.db", str(tmp_path / "demo.db"))
    script = script.replace(".venv/bin/python", sys.executable)
    script = script.replace(".venv/bin/sesstool", f"{sys.executable} -m sesstool")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '"user_id":2' in result.stdout and "sessions      3" in result.stdout


def test_the_app_settings_name_the_engine_table_and_schema_never_the_password(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sesstool.app.config import load_app_settings

    url = postgres_server.url(scheme="postgresql+psycopg")
    with app_dir(tmp_path, monkeypatch) as apps:
        apps.write("pgweb", sqlalchemy_app(url, table="web_sessions", prefix="web:"))
        settings = load_app_settings("pgweb:app")
    assert settings.session_type == "sqlalchemy"
    assert type(settings.app.session_interface).__name__ == "SqlAlchemySessionInterface"
    assert (settings.table, settings.schema, settings.prefix) == ("web_sessions", None, "web:")
    assert settings.store_url is not None and PG_PASSWORD not in settings.store_url and "***" in settings.store_url
    assert type(settings.client).__name__ == "Engine"
