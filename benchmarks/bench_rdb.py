"""Redis snapshots read offline: ``sesstool list`` on a dump against rdb-py iterating it.

    python benchmarks/bench_rdb.py [--sessions 1000000] [--runs 3]

Loads N Flask-Session 0.8 sessions into a throwaway redis-server, has it write its
RDB file (``SAVE``), stops it, then times in the same run, each ``--runs`` times
(min and median), every command a process of its own:

  - rdb-py (Rust) iterating every record of the file, doing nothing with them
    (the baseline: the bare parse, no output)
  - sesstool list --format ndjson            (ttl, size, serializer per session)
  - sesstool list --where user_id=42         (every value decoded)
  - sesstool stats --format json

Each sesstool run is checked (line count or total), and peak RSS is shown at N/10
and N: reading a snapshot must take constant memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SESSTOOL, Timed, load_redis, run_timed, start_redis, table  # noqa: E402


def make_dump(n: int, directory: str) -> str:
    """An RDB file of ``n`` sessions, as redis-server writes it."""
    port, server = start_redis()
    try:
        load_redis(port, n)
        subprocess.run(["redis-cli", "-p", str(port), "save"], stdout=subprocess.DEVNULL, check=True)
        workdir = subprocess.run(["redis-cli", "-p", str(port), "config", "get", "dir"], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    finally:
        server.terminate()
        server.wait()
    path = str(Path(directory) / f"dump-{n}.rdb")
    shutil.move(str(Path(workdir) / "dump.rdb"), path)
    return path


def rdb_py_iterate(path: str) -> None:
    import rdb

    strings = sum(1 for record in rdb.RdbDecoder(path) if record["type"] == "string")
    print(strings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rdb-py", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rdb_py:
        return rdb_py_iterate(args.rdb_py)
    n = args.sessions
    directory = tempfile.mkdtemp(prefix="sesstool-bench-rdb-")
    try:
        started = time.perf_counter()
        small, dump = make_dump(max(n // 10, 1), directory), make_dump(n, directory)
        print(f"wrote the dumps in {time.perf_counter() - started:.1f}s "
              f"({Path(dump).stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
        store = f"rdb://{dump}"
        rss_small = run_timed([SESSTOOL, "list", "--store", f"rdb://{small}", "--format", "ndjson"]).max_rss_mb
        commands = {
            "rdb-py: iterate every record (baseline)": [sys.executable, __file__, "--rdb-py", dump],
            "sesstool list --format ndjson": [SESSTOOL, "list", "--store", store, "--format", "ndjson"],
            "sesstool list --where user_id=42": [SESSTOOL, "list", "--store", store, "--where", "user_id=42",
                                                 "--format", "ndjson"],
            "sesstool stats --format json": [SESSTOOL, "stats", "--store", store, "--format", "json"],
        }
        times: dict[str, list[Timed]] = {label: [] for label in commands}
        for _ in range(args.runs):  # alternating, so background load hits each alike
            for label, argv in commands.items():
                times[label].append(run_timed(argv))
        check(store, dump, n)
        base = statistics.median(r.seconds for r in times["rdb-py: iterate every record (baseline)"])
        rows = []
        for label, results in times.items():
            if any(r.returncode for r in results):
                raise SystemExit(f"{label} failed")
            seconds = [r.seconds for r in results]
            rss = max(r.max_rss_mb for r in results)
            rows.append([label, f"{min(seconds):.2f} / {statistics.median(seconds):.2f}", f"{n / min(seconds):,.0f}",
                         f"{statistics.median(seconds) / base:.2f}", f"{rss:.0f} MB"])
        print(f"\n{n:,} sessions in one RDB file, {args.runs} runs; ratio = median time / rdb-py's")
        print(table(rows, ["command", "seconds (min / median)", "sessions/s", "ratio", "peak RSS"]))
        print(f"list's peak RSS at N/10: {rss_small:.0f} MB")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check(store: str, dump: str, n: int) -> None:
    """A fast wrong answer must not pass: every session listed, every one counted."""
    listed = subprocess.run([SESSTOOL, "list", "--store", store, "--format", "ndjson"], capture_output=True,
                            check=True).stdout.count(b"\n")
    stats = json.loads(subprocess.run([SESSTOOL, "stats", "--store", store, "--format", "json"],
                                      capture_output=True, check=True).stdout)
    theirs = int(subprocess.run([sys.executable, __file__, "--rdb-py", dump], capture_output=True, text=True,
                                check=True).stdout)
    if not listed == theirs == n:
        raise SystemExit(f"listed {listed:,}, rdb-py read {theirs:,}, expected {n:,} (stats: {stats})")


if __name__ == "__main__":
    main()
