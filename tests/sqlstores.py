"""SQL databases holding Flask-Session's own session table, for the SQL store's tests.

The table is always created by the real Flask-Session 0.8 (``SqlAlchemySessionInterface``
creates it when the app starts), never by sesstool or by hand.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from tests.flaskapps import make_app
from tests.servers import PostgresServer


def sqlite_database(directory: Path, table: str = "sessions") -> tuple[str, t.Any]:
    """A new SQLite file with Flask-Session's table: its URL and the app that made it."""
    url = f"sqlite:///{directory / 'app.db'}"
    return url, make_app(sql_url=url, sql_table=table)


def postgres_database(server: PostgresServer, name: str, table: str = "sessions") -> tuple[str, t.Any]:
    """A new database ``name`` on ``server`` with Flask-Session's table: its URL and the app."""
    import sqlalchemy as sa

    engine = sa.create_engine(server.url(scheme="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = server.url(name)
    return url, make_app(sql_url=server.url(name, scheme="postgresql+psycopg"), sql_table=table)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_database(tmp_path)[0]


@pytest.fixture(scope="session")
def postgres_sessions_url(postgres_server: PostgresServer) -> str:
    """One PostgreSQL database for the session's contract tests (each test has its own prefix)."""
    return postgres_database(postgres_server, "contract")[0]
