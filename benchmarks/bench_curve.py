"""The cost curve: time and peak memory of list, purge and export at 10k, 100k and 1M sessions.

    python benchmarks/bench_curve.py [--sizes 10000,100000,1000000] [--stores redis,memcached,sqlite,rdb]
                                     [--plot benchmarks/cost-curve.png]

For each store and size, the store is filled with that many Flask-Session 0.8
sessions (1 in 1000 with ``user_id`` 42), then each command runs once as its own
process, its output discarded:

  - ``list --format ndjson``
  - ``export`` (every session decoded, with its data, as NDJSON)
  - ``purge --where user_id=42 --yes`` (every value decoded; a thousandth deleted).
    Not on ``rdb``, which is read-only.

Printed: seconds, microseconds per session (flat when time grows linearly) and
peak RSS (flat when memory does not grow with the store). ``--plot`` draws both
against the number of sessions on log-log axes (matplotlib, from the bench extra).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SESSTOOL, load_redis, run_timed, start_redis, table  # noqa: E402

COMMANDS = {
    "list": ["list", "--format", "ndjson"],
    "export": ["export"],
    "purge": ["purge", "--where", "user_id=42", "--yes"],
}


@dataclass
class Point:
    store: str
    command: str
    sessions: int
    seconds: float
    rss_mb: float


class Filled(t.Protocol):
    """A store holding exactly ``n`` sessions, reachable at ``url``, until closed."""

    url: str

    def close(self) -> None: ...


@dataclass
class _Server:
    url: str
    process: subprocess.Popen[bytes]
    workdir: str | None = None

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class _Files:
    url: str
    workdir: str
    backend: t.Any = None

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def fill_redis(n: int) -> Filled:
    port, process = start_redis()
    load_redis(port, n)
    return _Server(f"redis://127.0.0.1:{port}/0", process)


def fill_memcached(n: int) -> Filled:
    from bench_memcached import load, start_memcached

    port, process = start_memcached(max(64, n // 2500))
    load([port], n)
    return _Server(f"memcached://127.0.0.1:{port}", process)


def fill_sqlite(n: int) -> Filled:
    from bench_sql import Sqlite

    workdir = tempfile.mkdtemp(prefix="sesstool-curve-")
    backend = Sqlite(workdir, n)
    return _Files(backend.url, workdir)


def fill_postgresql(n: int) -> Filled:
    from bench_sql import Postgres

    workdir = tempfile.mkdtemp(prefix="sesstool-curve-")
    backend = Postgres(workdir, n)
    return _Files(backend.url, workdir, backend)


def fill_rdb(n: int) -> Filled:
    from bench_rdb import make_dump

    workdir = tempfile.mkdtemp(prefix="sesstool-curve-")
    return _Files(f"rdb://{make_dump(n, workdir)}", workdir)


FILLERS: dict[str, t.Callable[[int], Filled]] = {
    "redis": fill_redis, "memcached": fill_memcached, "sqlite": fill_sqlite, "postgresql": fill_postgresql,
    "rdb": fill_rdb,
}  # fmt: skip


def measure(store: str, n: int) -> list[Point]:
    filled = FILLERS[store](n)
    points = []
    try:
        for name, argv in COMMANDS.items():
            if name == "purge" and store == "rdb":
                continue  # read-only
            result = run_timed([SESSTOOL, *argv, "--store", filled.url])
            if result.returncode != 0:
                raise SystemExit(f"{store}: {name} at {n:,} sessions exited {result.returncode}")
            points.append(Point(store, name, n, result.seconds, result.max_rss_mb))
            print(f"{store} {name} {n:,}: {result.seconds:.2f}s {result.max_rss_mb:.0f} MB", file=sys.stderr)
    finally:
        filled.close()
    return points


def report(points: list[Point], sizes: list[int]) -> None:
    rows = []
    for store in dict.fromkeys(p.store for p in points):
        for command in COMMANDS:
            line = [p for p in points if p.store == store and p.command == command]
            if not line:
                continue
            by_size = {p.sessions: p for p in line}
            cells = [f"{by_size[n].seconds:.2f} s, {by_size[n].seconds / n * 1e6:.1f} µs, {by_size[n].rss_mb:.0f} MB"
                     if n in by_size else "-" for n in sizes]
            rows.append([store, command, *cells])
    print(table(rows, ["store", "command", *[f"{n:,} sessions (time, per session, peak RSS)" for n in sizes]]))


def plot(points: list[Point], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, store in enumerate(dict.fromkeys(p.store for p in points)):
        for command, style in zip(COMMANDS, ("-", "--", ":"), strict=True):
            line = sorted((p for p in points if p.store == store and p.command == command), key=lambda p: p.sessions)
            if line:
                label = f"{store} {command}"
                sessions, color = [p.sessions for p in line], f"C{index}"  # a colour a store, a line style a command
                left.plot(sessions, [p.seconds for p in line], style, color=color, marker="o", label=label)
                right.plot(sessions, [p.rss_mb for p in line], style, color=color, marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="sessions", ylabel="seconds", title="time (log-log: slope 1 is linear)")
    right.set(xscale="log", xlabel="sessions", ylabel="peak RSS (MB)", title="peak RSS")
    right.set_ylim(bottom=0)
    left.grid(True, which="both", alpha=0.3)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--stores", default="redis,memcached,sqlite,rdb",
                        help=f"comma-separated, of: {', '.join(FILLERS)}")
    parser.add_argument("--plot", metavar="PNG", help="also draw the curves into this PNG file")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    stores = args.stores.split(",")
    unknown = set(stores) - set(FILLERS)
    if unknown:
        parser.error(f"unknown store {', '.join(sorted(unknown))}")
    points = [point for store in stores for n in sizes for point in measure(store, n)]
    report(points, sizes)
    if args.plot:
        plot(points, args.plot)


if __name__ == "__main__":
    main()
