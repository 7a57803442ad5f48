"""Write path on Redis: ``sesstool purge`` against ``redis-cli --scan | xargs redis-cli unlink``.

    python benchmarks/redis_writes.py [--sessions 1000000] [--runs 1]

Called by ``bench_redis.py`` (``run_write_benchmarks(port, n)``) on its server, or
run alone on a throwaway local redis-server. Each case starts from freshly loaded
data (Flask-Session 0.8 msgpack sessions, 1 in 1000 with ``user_id`` 42) and is
checked afterwards, so a fast wrong answer cannot pass:

  - redis-cli --scan --pattern 'session:*' | xargs redis-cli unlink   (baseline)
  - sesstool purge --where user_id=42 --yes    (every value read and decoded)
  - sesstool purge --all --yes                 (keys only, batched UNLINK)

Targets: purge --where >= 150,000 sessions/s over 1M sessions; purge --all at
least as fast as the baseline (ratio_vs_baseline <= 1).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import typing as t
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SESSTOOL, load_redis, run_timed, start_redis, table  # noqa: E402

Loader = t.Callable[[int, int], None]


def _count(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "dbsize"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def _fresh(port: int, n: int, load: Loader) -> None:
    subprocess.run(["redis-cli", "-p", str(port), "flushall"], stdout=subprocess.DEVNULL, check=True)
    load(port, n)
    loaded = _count(port)
    if loaded != n:
        raise SystemExit(f"loaded {loaded} sessions, expected {n}")


def run_write_benchmarks(redis_port: int, n: int, load: Loader | None = None, *, runs: int = 1,
                         quiet: bool = False) -> list[dict[str, t.Any]]:
    """Time the write cases on the redis-server at ``redis_port`` over ``n`` sessions.

    :param load: ``load(port, n)`` fills the (flushed) database with ``n`` sessions,
        1 in 1000 holding ``user_id`` 42; default: ``common.load_redis``.
    :param runs: runs per case, the cases alternating (each on freshly loaded data).
    :returns: one row per case: ``name``, ``runs`` (every time), ``seconds`` (the
        best), ``median``, ``per_second`` and ``ratio_vs_baseline`` (of the medians;
        below 1 is faster). The table is also printed unless ``quiet``.
    """
    load = load or load_redis
    store = f"redis://127.0.0.1:{redis_port}/0"
    cases: list[tuple[str, list[str] | str, t.Callable[[int], bool]]] = [
        ("redis-cli --scan --pattern 'session:*' | xargs redis-cli unlink (baseline)",
         f"redis-cli -p {redis_port} --scan --pattern 'session:*' | xargs redis-cli -p {redis_port} unlink",
         lambda left: left == 0),
        ("sesstool purge --where user_id=42 --yes",
         [SESSTOOL, "purge", "--store", store, "--where", "user_id=42", "--yes", "--format", "json"],
         lambda left: left == n - len(range(0, n, 1000))),
        ("sesstool purge --all --yes",
         [SESSTOOL, "purge", "--store", store, "--all", "--yes", "--format", "json"],
         lambda left: left == 0),
    ]
    rows: list[dict[str, t.Any]] = [{"name": name, "runs": []} for name, _, _ in cases]
    for _ in range(runs):  # alternating, so background load hits every case alike
        for row, (name, argv, check) in zip(rows, cases, strict=True):
            _fresh(redis_port, n, load)
            timed = run_timed(argv, shell=isinstance(argv, str))
            left = _count(redis_port)
            if timed.returncode != 0 or not check(left):
                raise SystemExit(f"{name}: exit {timed.returncode}, {left} sessions left")
            row["runs"].append(timed.seconds)
    for row in rows:
        row["seconds"] = min(row["runs"])
        row["median"] = statistics.median(row["runs"])
        row["per_second"] = n / row["median"]
    baseline = rows[0]["median"]
    for row in rows:
        row["ratio_vs_baseline"] = row["median"] / baseline
    if not quiet:
        print(f"Write path, {n:,} sessions, {runs} alternating runs; seconds min / median; ratio of medians")
        print(table([[r["name"], f"{r['seconds']:.2f} / {r['median']:.2f}", f"{r['per_second']:,.0f}",
                      f"{r['ratio_vs_baseline']:.2f}"] for r in rows],
                    ["command", "seconds", "sessions/s (median)", "ratio"]))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="best of N for each case")
    args = parser.parse_args()
    port, server = start_redis()
    try:
        run_write_benchmarks(port, args.sessions, runs=args.runs)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
