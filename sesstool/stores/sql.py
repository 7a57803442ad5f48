"""Flask-Session's SQLAlchemy store: one table row a session, through SQLAlchemy 2 Core.

Flask-Session 0.8 (``SqlAlchemySessionInterface``) creates the table ``sessions``
(``SESSION_SQLALCHEMY_TABLE``) with ``id`` (integer primary key), ``session_id``
(prefix + sid, ``VARCHAR(255) UNIQUE``), ``data`` (``LargeBinary``) and ``expiry``
(``DateTime``, naive UTC); every column but ``id`` may be NULL. It deletes a row it
reads whose ``expiry`` has passed *or is NULL*, and otherwise only in its
``session_cleanup`` command. So here:

- ``ttl`` is the whole seconds until ``expiry`` (rounded up, so a row just written
  with 500 s reads 500), ``0`` once it has passed (the row is still there: ``purge
  --expired`` deletes those), ``None`` for a NULL expiry, which Flask-Session treats
  as expired. ``persist`` is refused for that reason.
- A scan pages by primary key (``WHERE id > :last ORDER BY id LIMIT n``): one short
  transaction a page, constant memory, and each row once even while the app writes.
  The prefix is a ``LIKE`` (escaped) in SQL and checked again exactly on the bytes,
  since some collations (SQLite's LIKE, MySQL) ignore case.
- Every write is one transaction; edits and purges are conditional on the row being
  unchanged since read: same ``id``, ``session_id``, ``data`` and ``expiry``
  (:attr:`StoredItem.version` carries the ``id`` and the ``expiry`` as stored).
- Rows are read raw, without SQLAlchemy's type conversions, which raise on what a
  hostile writer can put in SQLite: NULL or text ``data`` (read as bytes, NULL as
  empty), a non-UTF-8 ``session_id`` (kept as its bytes), an ``expiry`` that is no
  date (ttl 0: Flask-Session cannot use the row either). A row without
  ``session_id`` cannot be named and is skipped, with a warning.
"""

from __future__ import annotations

import math
import time
import typing as t
from datetime import datetime, timedelta, timezone

from sesstool.errors import InvalidInput, Unsupported
from sesstool.redact import redact_url
from sesstool.stores.base import MISSING, Capability, Entry, ExpiredPurge, Store, StoredItem, show_key, write_ttl
from sesstool.stores.sql_engine import check_table, create_engine, errors, insert_unless_taken, table_name
from sesstool.stores.sql_values import ESCAPE, KEY_LENGTH, as_datetime, like_prefix, raw_bytes, row_key, text_key

#: rows a statement names at most (SQLite allowed 999 parameters before 3.32)
_CHUNK = 500
_PERSIST_REASON = (
    "remove a key's expiry (Flask-Session treats a row without expiry as expired and deletes it "
    "when read; give it a far expiry with `sesstool expire SID --in 3650d` instead)"
)


class SqlStore(Store):
    """Sessions in a Flask-Session SQLAlchemy table, through a SQLAlchemy engine."""

    capabilities = frozenset({
        Capability.WRITE, Capability.PER_KEY_TTL, Capability.COMPARE_AND_SET,
        Capability.CONDITIONAL_DELETE, Capability.ENUMERABLE_IDS,
    })  # fmt: skip
    expired_purge = ExpiredPurge.TTL_ZERO
    open_options = frozenset({"table", "schema", "timeout"})

    def __init__(
        self,
        engine: t.Any,
        *,
        url: str | None = None,
        table: str | None = None,
        schema: str | None = None,
        owns_engine: bool = True,
        warn: t.Callable[[str], None] | None = None,
        clock: t.Callable[[], float] = time.time,
    ) -> None:
        import sqlalchemy as sa

        self.engine = engine
        self.url = url or engine.url.render_as_string(hide_password=True)
        self._owns_engine = owns_engine
        self._warn = warn
        self.clock = clock
        name, schema = table_name(table, schema)
        self.table = sa.Table(
            name, sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("session_id", sa.String(KEY_LENGTH)),
            sa.Column("data", sa.LargeBinary),
            sa.Column("expiry", sa.DateTime),
            schema=schema,
        )  # fmt: skip
        self._sqlite = engine.dialect.name == "sqlite"
        c = self.table.c
        raw = sa.types.NullType()
        # What a row holds, without SQLAlchemy's conversions (see the module's notes).
        self._read = (c.id, sa.type_coerce(c.session_id, raw), sa.type_coerce(c.expiry, raw))
        self._data = sa.type_coerce(c.data, raw)
        # Compared as stored bytes on SQLite, where a column may hold text or a blob.
        self._key_bytes = sa.cast(c.session_id, sa.LargeBinary)
        self._data_bytes = sa.cast(c.data, sa.LargeBinary) if self._sqlite else c.data
        self._expiry_cmp = sa.cast(c.expiry, sa.LargeBinary) if self._sqlite else c.expiry

    @classmethod
    def open(
        cls,
        url: str,
        *,
        client: t.Any = None,
        warn: t.Callable[[str], None] | None = None,
        table: str | None = None,
        schema: str | None = None,
        timeout: float | None = None,
    ) -> SqlStore:
        """The store at ``url``, or around the app's engine ``client``.

        :raises InvalidInput: for a bad URL, table name or missing driver.
        :raises StoreError: when the database or the table is not there.
        """
        table_name(table, schema)  # a bad name fails before anything connects
        if client is not None:
            store = cls(client, url=redact_url(url), table=table, schema=schema, owns_engine=False, warn=warn)
        else:
            store = cls(create_engine(url, timeout), url=url, table=table, schema=schema, warn=warn)
        try:
            check_table(store.engine, store.table, store.describe())
        except BaseException:
            store.close()
            raise
        return store

    def describe(self) -> str:
        return redact_url(self.url)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def unsupported(self, capability: Capability, needed_by: str | None = None) -> Unsupported:
        if capability is not Capability.PERSIST:
            return super().unsupported(capability, needed_by)
        needs = f", which {needed_by} needs" if needed_by else ""
        return Unsupported(f"{self.describe()}: this store cannot {_PERSIST_REASON}{needs}")

    # -- reading ---------------------------------------------------------------

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        for rows in self._pages(prefix, batch, with_data=True):
            now = self._now()
            yield [self._item(row, now) for row in rows]

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        for rows in self._pages(prefix, batch, with_data=False):
            yield [t.cast(bytes, row_key(row[1])) for row in rows]

    def _pages(
        self, prefix: bytes, batch: int, *, with_data: bool, where: t.Any = None
    ) -> t.Iterator[list[t.Any]]:
        import sqlalchemy as sa

        c = self.table.c
        query = sa.select(*self._read, *([self._data] if with_data else [])).order_by(c.id).limit(max(batch, 1))
        if where is not None:
            query = query.where(where)
        try:
            text = prefix.decode("utf-8")
        except UnicodeDecodeError:
            text = None  # only SQLite can hold such keys; the exact check below finds them
        if text:
            query = query.where(c.session_id.like(like_prefix(text), escape=ESCAPE))
        last = None
        while True:
            page = query if last is None else query.where(c.id > last)
            with errors(self.describe()), self.engine.connect() as conn:
                rows = conn.execute(page).all()
            if not rows:
                return
            last = rows[-1][0]
            kept, unnamed = [], 0
            for row in rows:
                key = row_key(row[1])
                if key is None:
                    unnamed += 1
                elif key.startswith(prefix):
                    kept.append(row)
            if unnamed and self._warn is not None:
                self._warn(f"{self.describe()}: skipped {unnamed} rows with no session_id (they cannot be named)")
            if kept:
                yield kept
            if len(rows) < batch:
                return

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        import sqlalchemy as sa

        found: dict[bytes, StoredItem] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            query = sa.select(*self._read, self._data).where(self._match(chunk)).order_by(self.table.c.id)
            with errors(self.describe()), self.engine.connect() as conn:
                rows = conn.execute(query).all()
            now = self._now()
            for row in rows:
                item = self._item(row, now)
                found.setdefault(item.key, item)
        return [found.get(key) or StoredItem(key, None, None, kind=MISSING) for key in keys]

    def get(self, key: bytes) -> StoredItem | None:
        item = self.fetch([key])[0]
        return None if item.kind == MISSING else item

    def _item(self, row: t.Any, now: datetime) -> StoredItem:
        expiry = row[2]
        data = row[3]
        value = b"" if data is None else raw_bytes(data)
        # The version: what a conditional write compares, as the row holds it.
        version = (row[0], self._stored(expiry), data is None)
        return StoredItem(t.cast(bytes, row_key(row[1])), value, self._ttl(expiry, now), version=version)

    def _stored(self, expiry: t.Any) -> t.Any:
        """``expiry`` as :attr:`_expiry_cmp` compares it."""
        return raw_bytes(expiry) if self._sqlite and expiry is not None else expiry

    def _ttl(self, expiry: t.Any, now: datetime) -> int | None:
        if expiry is None:
            return None
        when = as_datetime(expiry)
        if when is None:
            return 0  # not a date: Flask-Session cannot use the row either
        seconds = (when - now).total_seconds()
        return max(0, math.ceil(seconds))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc).replace(tzinfo=None)

    def _match(self, keys: t.Sequence[bytes]) -> t.Any:
        """A condition matching rows whose session_id is one of ``keys``."""
        import sqlalchemy as sa

        texts, raws = [], []
        for key in keys:
            try:
                texts.append(key.decode("utf-8"))
            except UnicodeDecodeError:
                raws.append(key)
        conditions = [self.table.c.session_id.in_(texts)] if texts else []
        if raws and self._sqlite:
            conditions.append(self._key_bytes.in_(raws))
        return sa.or_(*conditions) if conditions else sa.false()

    # -- writing ---------------------------------------------------------------

    def _expiry(self, key: bytes, ttl: int | None) -> datetime | None:
        if write_ttl(key, ttl) is None:
            return None
        try:
            return self._now() + timedelta(seconds=t.cast(int, ttl))
        except OverflowError:
            raise InvalidInput(f"cannot write {show_key(key)} with a TTL of {ttl}s: past the year 9999") from None

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self.set_many([(key, value, ttl)])

    def set_many(self, entries: t.Sequence[Entry]) -> None:
        rows = [(text_key(key), value, self._expiry(key, ttl)) for key, value, ttl in entries]
        c = self.table.c
        for start in range(0, len(rows), _CHUNK):
            with errors(self.describe()), self.engine.begin() as conn:
                for sid, value, expiry in rows[start : start + _CHUNK]:
                    update = self.table.update().where(c.session_id == sid).values(data=value, expiry=expiry)
                    if conn.execute(update).rowcount:
                        continue
                    if not self._insert(conn, sid, value, expiry):  # inserted meanwhile: ours wins
                        conn.execute(update)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        return self.add_many([(key, value, ttl)])[0]

    def add_many(self, entries: t.Sequence[Entry]) -> list[bool]:
        rows = [(text_key(key), value, self._expiry(key, ttl)) for key, value, ttl in entries]
        done: list[bool] = []
        for start in range(0, len(rows), _CHUNK):
            with errors(self.describe()), self.engine.begin() as conn:
                done += [self._insert(conn, sid, value, expiry) for sid, value, expiry in rows[start : start + _CHUNK]]
        return done

    def _insert(self, conn: t.Any, sid: str, value: bytes, expiry: datetime | None) -> bool:
        """Insert a row unless one with ``sid`` exists; whether it was inserted."""
        import sqlalchemy as sa

        c = self.table.c
        if conn.execute(sa.select(c.id).where(c.session_id == sid).limit(1)).first() is not None:
            return False
        return insert_unless_taken(conn, self.table, session_id=sid, data=value, expiry=expiry)

    def delete(self, keys: t.Sequence[bytes]) -> int:
        deleted = 0
        for start in range(0, len(keys), _CHUNK):
            with errors(self.describe()), self.engine.begin() as conn:
                deleted += conn.execute(self.table.delete().where(self._match(keys[start : start + _CHUNK]))).rowcount
        return deleted

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        import sqlalchemy as sa

        existed: set[bytes] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            with errors(self.describe()), self.engine.begin() as conn:
                rows = conn.execute(sa.select(self._read[1]).where(self._match(chunk))).all()
                existed.update(t.cast(bytes, row_key(row[0])) for row in rows)
                conn.execute(self.table.delete().where(self._match(chunk)))
        return [key in existed for key in keys]

    def expire(self, key: bytes, seconds: int) -> bool:
        return self._set_expiry(key, self._now() + timedelta(seconds=seconds))

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        return self._set_expiry(key, datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None))

    def _set_expiry(self, key: bytes, expiry: datetime) -> bool:
        with errors(self.describe()), self.engine.begin() as conn:
            return bool(conn.execute(self.table.update().where(self._match([key])).values(expiry=expiry)).rowcount)

    # -- conditional writes: the row must be as it was read --------------------

    def _unchanged(self, item: StoredItem) -> t.Any:
        import sqlalchemy as sa

        conditions = [self._match([item.key])]
        version = item.version
        if isinstance(version, tuple) and len(version) == 3:
            row_id, expiry, data_null = version
            conditions += [self.table.c.id == row_id, self._expiry_cmp.is_not_distinct_from(expiry)]
            conditions.append(self.table.c.data.is_(None) if data_null else self._data_bytes == item.value)
        else:  # not read from here: the value alone decides
            conditions.append(self._data_bytes == item.value)
        return sa.and_(*conditions)

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        return self.compare_and_set_many([(item, value)])[0]

    def compare_and_set_many(self, pairs: t.Sequence[tuple[StoredItem, bytes]]) -> list[bool]:
        done: list[bool] = []
        for start in range(0, len(pairs), _CHUNK):
            with errors(self.describe()), self.engine.begin() as conn:
                for item, value in pairs[start : start + _CHUNK]:
                    if item.value is None or item.kind == MISSING:
                        done.append(False)
                        continue
                    update = self.table.update().where(self._unchanged(item)).values(data=value)
                    done.append(bool(conn.execute(update).rowcount))
        return done

    def delete_expired(
        self, prefix: bytes, *, batch: int = 1000, dry_run: bool = False
    ) -> t.Iterator[tuple[int, int, int]]:
        # Rows are read without their data, and the expired ones deleted ``batch`` at a
        # time, one transaction each (a commit is a disk sync: one a page would cost more
        # than the deletes).
        # Where the column is a real timestamp, the database leaves out the rows still
        # valid; SQLite keeps any text there, which only as_datetime reads right.
        where = None if self._sqlite else self.table.c.expiry <= self._now()
        pending: list[t.Any] = []
        for rows in self._pages(prefix, batch, with_data=False, where=where):
            now = self._now()
            expired = [row for row in rows if self._ttl(row[2], now) == 0]
            deleted = 0
            if not dry_run:
                pending += expired
                if len(pending) >= batch:
                    deleted, pending = self._delete_passed(pending), []
            yield len(rows), len(expired), deleted
        if pending:
            yield 0, 0, self._delete_passed(pending)

    def _delete_passed(self, rows: list[t.Any]) -> int:
        """Delete ``rows`` (id, session_id, expiry) still holding one of the passed
        expiries read: a row the app saved since has a new expiry and stays. Which
        passed expiry does not matter, so one IN list serves them all."""
        c = self.table.c
        step = _CHUNK // 2  # ids and expiries share a statement's parameters
        deleted = 0
        with errors(self.describe()), self.engine.begin() as conn:
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                passed = {self._stored(row[2]) for row in chunk}
                condition = c.id.in_([row[0] for row in chunk]) & self._expiry_cmp.in_(passed)
                deleted += conn.execute(self.table.delete().where(condition)).rowcount
        return deleted

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        deleted = 0
        for start in range(0, len(items), _CHUNK):
            with errors(self.describe()), self.engine.begin() as conn:  # one transaction a batch
                for item in items[start : start + _CHUNK]:
                    if item.value is not None and item.kind != MISSING:
                        deleted += conn.execute(self.table.delete().where(self._unchanged(item))).rowcount
        return deleted
