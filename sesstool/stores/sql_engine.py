"""Engines, names and errors for the SQL store (:mod:`~sesstool.stores.sql`).

- A URL becomes a SQLAlchemy 2 engine. ``postgresql://`` means psycopg 3
  (``postgresql+psycopg://``): SQLAlchemy's default, psycopg2, is not what sesstool
  ships with. A SQLite file must exist: it is opened read-write without create, so
  a typo never leaves an empty database behind (nor reports "no sessions").
- ``--timeout`` bounds connecting and each statement where the driver can (psycopg's
  ``connect_timeout`` and ``statement_timeout``, SQLite's lock wait, PyMySQL's
  socket timeouts); the CLI's wall-clock deadline bounds the rest.
- Table and schema names are identifiers only; SQLAlchemy quotes them.
- Driver errors become one-line :class:`~sesstool.errors.StoreError`s: only the
  driver's own first line, never SQLAlchemy's ``[SQL: ...] [parameters: ...]``
  tail (parameters are session data), and passed through :func:`~sesstool.redact.redact`,
  since psycopg may quote its DSN.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import typing as t
from urllib.parse import quote

from sesstool.errors import InvalidInput, StoreError
from sesstool.redact import redact, redact_url

DEFAULT_TABLE = "sessions"  #: Flask-Session's SESSION_SQLALCHEMY_TABLE default
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
#: drivers SQLAlchemy picks for a bare scheme that sesstool does not ship
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg"}
_DRIVER_HINTS = {
    "psycopg2": "pip install psycopg2, or write postgresql+psycopg://",
    "MySQLdb": "pip install mysqlclient, or write mysql+pymysql:// (pip install pymysql)",
    "pymysql": "pip install pymysql",
}


def table_name(table: str | None, schema: str | None) -> tuple[str, str | None]:
    """The table and schema to use: ``--table`` may be ``NAME`` or ``SCHEMA.NAME``.

    :raises InvalidInput: for anything but identifiers (letters, digits, ``_``, ``$``).
    """
    name = table or DEFAULT_TABLE
    if "." in name:
        schema, name = name.split(".", 1)
    for what, value in (("table", name), ("schema", schema)):
        if value is not None and not _IDENTIFIER.fullmatch(value):
            raise InvalidInput(
                f"invalid {what} name {ascii(value)}: give an identifier (letters, digits, _ and $, "
                "at most 63, not starting with a digit), e.g. --table sessions or --table myschema.sessions"
            )
    return name, schema


def create_engine(url: str, timeout: float | None) -> t.Any:
    """An engine for ``url``; nothing is connected yet.

    :raises InvalidInput: for a URL SQLAlchemy cannot read, a missing driver, or a
        SQLite URL naming no file.
    :raises StoreError: for a SQLite file that does not exist.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise InvalidInput(f"invalid store URL {redact_url(url)!r}: not a SQLAlchemy URL") from e
    parsed = parsed.set(drivername=_DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername))
    kwargs: dict[str, t.Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["creator"] = _sqlite_creator(parsed.database, url, timeout)
    else:
        kwargs["connect_args"] = _connect_args(parsed.get_driver_name(), timeout)
        kwargs["pool_pre_ping"] = False
    try:
        return sqlalchemy.create_engine(parsed, **kwargs)
    except NoSuchModuleError as e:
        raise InvalidInput(f"unsupported store URL {redact_url(url)!r}: SQLAlchemy has no dialect "
                           f"{parsed.drivername!r}") from e
    except ImportError as e:
        hint = _DRIVER_HINTS.get((e.name or "").split(".")[0], f"install the {parsed.drivername} driver")
        raise InvalidInput(f"{redact_url(url)}: the database driver {e.name or ''} is not installed: {hint}") from e
    except (ArgumentError, TypeError, ValueError) as e:
        raise InvalidInput(f"invalid store URL {redact_url(url)!r}: {redact(_first_line(e))}") from e


def _connect_args(driver: str, timeout: float | None) -> dict[str, t.Any]:
    if not timeout:
        return {}
    if driver == "psycopg":
        # libpq takes whole seconds and treats under 2 as 2; statement_timeout is in ms.
        return {"connect_timeout": max(2, math.ceil(timeout)),
                "options": f"-c statement_timeout={math.ceil(timeout * 1000)}"}
    if driver == "pymysql":
        return {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}
    if driver == "mysqldb":
        return {"connect_timeout": math.ceil(timeout)}
    return {}


def _sqlite_creator(database: str | None, url: str, timeout: float | None) -> t.Callable[[], t.Any]:
    import sqlite3

    if not database or database == ":memory:" or database.startswith("file:"):
        raise InvalidInput(f"store URL {redact_url(url)!r} names no SQLite file: write sqlite:///path/app.db "
                           "(four slashes for an absolute path)")
    path = os.path.abspath(database)
    if not os.path.isfile(path):
        raise StoreError(f"no SQLite database {path!r} (from {redact_url(url)}): "
                         "check the path; sesstool never creates one")
    uri = "file:" + quote(path) + "?mode=rw"

    def connect() -> t.Any:
        connection = sqlite3.connect(uri, uri=True, timeout=timeout or 5.0, check_same_thread=False)
        # Text a hostile writer stored that is not UTF-8 reads as surrogate escapes
        # (sqlite3 would refuse the whole row), and the exact bytes come back from them.
        connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        return connection

    return connect


def check_table(engine: t.Any, table: t.Any, where: str) -> None:
    """Fail now, in one line, when the session table or one of its columns is missing.

    :raises StoreError: naming the table and how to name another.
    """
    import sqlalchemy

    with errors(where):
        inspector = sqlalchemy.inspect(engine)
        if not inspector.has_table(table.name, schema=table.schema):
            shown = f"{table.schema}.{table.name}" if table.schema else table.name
            raise StoreError(
                f"no table {shown!r} in {where}: Flask-Session creates it when the app starts; "
                "name another with --table NAME (env SESSTOOL_TABLE, the app's SESSION_SQLALCHEMY_TABLE)"
            )
        present = {column["name"].lower() for column in inspector.get_columns(table.name, schema=table.schema)}
    missing = [name for name in ("id", "session_id", "data", "expiry") if name not in present]
    if missing:
        raise StoreError(f"table {table.name!r} in {where} is not a Flask-Session table: it has no column "
                         f"{', '.join(missing)} (see --table)")


@contextlib.contextmanager
def errors(where: str) -> t.Iterator[None]:
    """SQLAlchemy's and the driver's exceptions as one-line :class:`StoreError`s."""
    from sqlalchemy import exc

    try:
        yield
    except exc.OperationalError as e:
        message = driver_message(e)
        if "timeout" in message.lower() or "canceling statement" in message.lower():
            raise StoreError(f"timed out talking to {where}: {message}") from e
        raise StoreError(f"cannot use {where}: {message}") from e
    except exc.DBAPIError as e:
        raise StoreError(f"{where} answered with an error: {driver_message(e)}") from e
    except exc.SQLAlchemyError as e:
        raise StoreError(f"{where} failed: {redact(_first_line(e))}") from e
    except OSError as e:
        raise StoreError(f"cannot reach {where}: {e.strerror or e}") from e


def driver_message(error: t.Any) -> str:
    """The driver's own first line of a SQLAlchemy error, redacted and escaped."""
    original = getattr(error, "orig", None)
    text = _first_line(original if original is not None else error)
    text = redact(text).encode("ascii", "backslashreplace").decode("ascii")
    # A hostile table or server may put control bytes in what the driver quotes.
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def insert_unless_taken(conn: t.Any, table: t.Any, **values: t.Any) -> bool:
    """Insert a row into ``table``, doing nothing where a unique column is taken (another
    writer inserted the same id since it was looked up); whether it was inserted."""
    from sqlalchemy.dialects import postgresql, sqlite

    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if name == "sqlite" else postgresql.insert
        return bool(conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing()).rowcount)
    statement = table.insert().values(**values)
    if name in ("mysql", "mariadb"):
        statement = statement.prefix_with("IGNORE")
    return bool(conn.execute(statement).rowcount)
