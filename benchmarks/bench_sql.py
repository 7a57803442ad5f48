"""SQL store: ``list`` and ``purge --expired`` against ``flask session_cleanup`` and plain SQLAlchemy.

    python benchmarks/bench_sql.py [--sessions 1000000] [--runs 3] [--only sqlite|postgresql]

For SQLite (a file) and PostgreSQL (a throwaway cluster, as the tests start it), the
real Flask-Session 0.8 app creates its ``sessions`` table; N rows are then loaded in
its format (msgpack values, naive-UTC expiry), every other one already expired.
In the same run, each timing repeated ``--runs`` times (min and median):

  - list: ``sesstool list --format ndjson`` against a plain SQLAlchemy loop (a
    streamed ``SELECT`` of every row, one JSON line each with sid, ttl and size);
  - purge --expired: ``sesstool purge --expired --yes`` (and ``--batch 10000``) against the real
    ``flask session_cleanup`` (one ``DELETE ... WHERE expiry <= now``) and a plain
    SQLAlchemy loop deleting 1,000 expired rows a transaction (keyset on id).

Every purge starts from the same copy of the table and is checked: the rows left
must be exactly the unexpired ones. Peak RSS of ``list`` at N/10 and N shows
memory stays flat.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import typing as t
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from common import LIFETIME, SESSTOOL, Timed, run_timed, session_values, table  # noqa: E402

#: The app whose ``flask session_cleanup`` is timed (Flask-Session 0.8's own command).
APP = textwrap.dedent("""
    import os
    from flask import Flask
    from flask_session import Session
    from flask_sqlalchemy import SQLAlchemy

    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=os.environ["BENCH_SQL_URL"],
                      SESSION_TYPE="sqlalchemy", SESSION_CLEANUP_N_REQUESTS=None)
    app.config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)
    Session(app)
""")


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def rows(n: int) -> t.Iterator[tuple[str, bytes, datetime]]:
    """Flask-Session 0.8 rows; even ones expired an hour ago, odd ones for 31 days."""
    start = now()
    past, future = start - timedelta(hours=1), start + timedelta(seconds=LIFETIME)
    for i, (key, value) in enumerate(session_values(n)):
        yield key.decode(), value, past if i % 2 == 0 else future


def make_table(url: str, workdir: str) -> None:
    """Flask-Session 0.8 creates its table, as the app does when it starts."""
    app_file = Path(workdir) / "app.py"
    app_file.write_text(APP)
    subprocess.run([sys.executable, str(app_file)], env={**os.environ, "BENCH_SQL_URL": driver_url(url)}, check=True)


def driver_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def load(url: str, n: int) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(driver_url(url))
    if url.startswith("sqlite"):
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            raw.executemany(
                "INSERT INTO sessions (session_id, data, expiry) VALUES (?, ?, ?)",
                ((sid, data, when.isoformat(" ", "microseconds")) for sid, data, when in rows(n)),
            )
    else:
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy("COPY sessions (session_id, data, expiry) FROM STDIN") as copy:
                for row in rows(n):
                    copy.write_row(row)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE sessions"))
    engine.dispose()


def count(url: str) -> tuple[int, int]:
    """(rows, expired rows) in the table now."""
    import sqlalchemy as sa

    engine = sa.create_engine(driver_url(url))
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one()
        expired = conn.execute(sa.text("SELECT count(*) FROM sessions WHERE expiry <= :now"),
                               {"now": now()}).scalar_one()
    engine.dispose()
    return int(total), int(expired)


# -- the baselines, each run as its own process like sesstool ------------------------------


def plain_list(url: str) -> None:
    """What one would write: stream every row, print sid, ttl and size as JSON."""
    import json

    import sqlalchemy as sa

    sessions = _sessions_table()
    engine = sa.create_engine(driver_url(url))
    started = now()
    write = sys.stdout.write
    with engine.connect() as conn:
        query = sa.select(sessions.c.session_id, sessions.c.data, sessions.c.expiry)
        for sid, data, expiry in conn.execution_options(yield_per=1000).execute(query):
            ttl = None if expiry is None else max(0, int((expiry - started).total_seconds()))
            write(json.dumps({"sid": sid[len("session:"):], "ttl": ttl, "size": len(data)}) + "\n")


def plain_purge(url: str) -> None:
    """What one would write: delete 1,000 expired rows a transaction, keyset on id."""
    import sqlalchemy as sa

    sessions = _sessions_table()
    engine = sa.create_engine(driver_url(url))
    cutoff, last = now(), 0
    while True:
        with engine.begin() as conn:
            query = (sa.select(sessions.c.id).where(sessions.c.id > last, sessions.c.expiry <= cutoff)
                     .order_by(sessions.c.id).limit(1000))
            ids = conn.execute(query).scalars().all()
            if not ids:
                return
            conn.execute(sa.delete(sessions).where(sessions.c.id.in_(ids)))
            last = ids[-1]


def _sessions_table() -> t.Any:
    import sqlalchemy as sa

    return sa.Table("sessions", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("session_id", sa.String(255)), sa.Column("data", sa.LargeBinary),
                    sa.Column("expiry", sa.DateTime))


# -- a database per backend, and fresh copies of it for each purge ---------------------------


class Backend:
    """One database holding the loaded table, and a way to get a fresh copy of it."""

    name: str
    url: str

    def fresh(self) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Sqlite(Backend):
    name = "SQLite"

    def __init__(self, workdir: str, n: int) -> None:
        self.workdir = workdir
        self.template = os.path.join(workdir, "template.db")
        self.url = f"sqlite:///{self.template}"
        make_table(self.url, workdir)
        load(self.url, n)
        self.copies = 0

    def fresh(self) -> str:
        self.copies += 1
        path = os.path.join(self.workdir, f"copy{self.copies}.db")
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        os.unlink(url.removeprefix("sqlite:///"))


class Postgres(Backend):
    name = "PostgreSQL"

    def __init__(self, workdir: str, n: int) -> None:
        from tests.servers import start_postgres

        self.server = start_postgres()
        self._admin("CREATE DATABASE template_sessions")
        self.url = self.server.url("template_sessions")
        make_table(self.url, workdir)
        load(self.url, n)
        self.copies = 0

    def _admin(self, sql: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(driver_url(self.server.url()), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
        engine.dispose()

    def fresh(self) -> str:
        self.copies += 1
        name = f"copy{self.copies}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE template_sessions")
        return self.server.url(name)

    def drop(self, url: str) -> None:
        self._admin(f"DROP DATABASE {url.rsplit('/', 1)[1]}")

    def close(self) -> None:
        self.server.stop()


def timed_purge(backend: Backend, argv: t.Callable[[str], list[str]], expected: tuple[int, int],
                env: t.Callable[[str], dict[str, str]] | None = None) -> Timed:
    url = backend.fresh()
    try:
        result = run_timed(argv(url), env=env(url) if env else None)
        left = count(url)
        if result.returncode != 0 or left != expected:
            raise SystemExit(f"{argv(url)[:4]} left {left} rows (rc {result.returncode}), expected {expected}")
        return result
    finally:
        backend.drop(url)


def summary(label: str, times: list[float], base: list[float], n: int) -> list[str]:
    ratio = statistics.median(times) / statistics.median(base)
    return [label, f"{min(times):.2f} / {statistics.median(times):.2f}", f"{n / min(times):,.0f}", f"{ratio:.2f}"]


def bench(backend: Backend, n: int, runs: int, workdir: str) -> None:
    me = [sys.executable, __file__]
    listing: dict[str, list[float]] = {"sesstool": [], "plain": []}
    rss = 0.0
    for _ in range(runs):  # alternating, so background load hits both alike
        plain = run_timed([*me, "--plain-list", backend.url])
        ours = run_timed([SESSTOOL, "list", "--store", backend.url, "--format", "ndjson"])
        if ours.returncode or plain.returncode:
            raise SystemExit("a listing failed")
        listing["plain"].append(plain.seconds)
        listing["sesstool"].append(ours.seconds)
        rss = max(rss, ours.max_rss_mb)
    total, expired = count(backend.url)
    expected = (total - expired, 0)
    app = os.path.join(workdir, "app.py")
    purges: dict[str, list[float]] = {"cleanup": [], "plain": [], "sesstool": [], "sesstool 10k": []}
    for _ in range(runs):
        purges["cleanup"].append(timed_purge(
            backend, lambda url: [str(Path(SESSTOOL).parent / "flask"), "--app", app, "session_cleanup"], expected,
            env=lambda url: {**os.environ, "BENCH_SQL_URL": driver_url(url)}).seconds)
        purges["plain"].append(timed_purge(backend, lambda url: [*me, "--plain-purge", url], expected).seconds)
        purges["sesstool"].append(timed_purge(
            backend, lambda url: [SESSTOOL, "purge", "--expired", "--yes", "--store", url], expected).seconds)
        purges["sesstool 10k"].append(timed_purge(
            backend, lambda url: [SESSTOOL, "purge", "--expired", "--yes", "--batch", "10000", "--store", url],
            expected).seconds)
    print(f"\n{backend.name}, {n:,} rows ({expired:,} expired), {runs} runs; ratio = median time / baseline's")
    print(table([
        summary("plain SQLAlchemy loop: SELECT, JSON line each (baseline)", listing["plain"], listing["plain"], n),
        summary(f"sesstool list --format ndjson (peak RSS {rss:.0f} MB)", listing["sesstool"], listing["plain"], n),
    ], ["list", "seconds (min / median)", "rows/s", "ratio"]))
    print(table([
        summary("flask session_cleanup: one DELETE (baseline)", purges["cleanup"], purges["cleanup"], n),
        summary("plain SQLAlchemy loop: 1,000 rows a transaction", purges["plain"], purges["cleanup"], n),
        summary("sesstool purge --expired --yes (1,000 rows a transaction)", purges["sesstool"], purges["cleanup"], n),
        summary("sesstool purge --expired --yes --batch 10000", purges["sesstool 10k"], purges["cleanup"], n),
    ], ["purge --expired", "seconds (min / median)", "rows/s", "ratio"]))
    versus_loop = statistics.median(purges["sesstool"]) / statistics.median(purges["plain"])
    print(f"sesstool purge --expired vs the plain loop: {versus_loop:.2f}x the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--plain-list", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--plain-purge", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_list:
        return plain_list(args.plain_list)
    if args.plain_purge:
        return plain_purge(args.plain_purge)
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    for kind in kinds:
        workdir = tempfile.mkdtemp(prefix="sesstool-bench-sql-")
        started = time.perf_counter()
        backend: Backend = Sqlite(workdir, args.sessions) if kind == "sqlite" else Postgres(workdir, args.sessions)
        print(f"{backend.name}: loaded {args.sessions:,} rows in {time.perf_counter() - started:.1f}s",
              file=sys.stderr)
        try:
            bench(backend, args.sessions, args.runs, workdir)
        finally:
            backend.close()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
