"""Read path on Redis: sesstool list against redis-cli --scan and a naive redis-py loop.

    python benchmarks/bench_redis.py [--sessions 1000000] [--sample 20000]

Loads N sessions in Flask-Session 0.8's format into a throwaway local redis-server,
then, in the same run, times:
  - redis-cli --scan --pattern 'session:*'        (baseline: keys only)
  - sesstool list --format ndjson                 (keys, ttl, size, serializer)
  - sesstool list --where user_id=42              (every value decoded)
  - a naive redis-py loop: scan_iter, then ttl and get per key, on a sample
  - peak RSS of `list` at N/10 and N (it must stay flat)
  - cold start of `sesstool --help` and `sesstool decode`
and the write benchmarks of benchmarks/redis_writes.py when present.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SESSTOOL, best_of, load_redis, run_timed, start_redis, table  # noqa: E402


def naive_loop_rate(port: int, sample: int) -> float:
    """Sessions per second of the obvious script: scan_iter, then ttl + get + decode per key."""
    import msgspec
    import redis

    client = redis.Redis(port=port)
    decode = msgspec.msgpack.decode
    started = time.perf_counter()
    found = 0
    for count, key in enumerate(client.scan_iter(match="session:*"), 1):
        client.ttl(key)
        if decode(client.get(key)).get("user_id") == 42:
            found += 1
        if count >= sample:
            break
    return sample / (time.perf_counter() - started)


def cold_start(argv: list[str], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="keys for the naive loop")
    parser.add_argument("--runs", type=int, default=3, help="best of N for each timing")
    args = parser.parse_args()
    n = args.sessions
    port, server = start_redis()
    store = f"redis://127.0.0.1:{port}/0"
    rows: list[list[str]] = []
    try:
        small = max(n // 10, 1)
        load_redis(port, small)
        rss_small = run_timed([SESSTOOL, "list", "--store", store, "--format", "ndjson"]).max_rss_mb
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], stdout=subprocess.DEVNULL, check=True)
        started = time.perf_counter()
        load_redis(port, n)
        print(f"loaded {n:,} sessions in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        scan = best_of(args.runs, ["redis-cli", "-p", str(port), "--scan", "--pattern", "session:*"])
        listing = best_of(args.runs, [SESSTOOL, "list", "--store", store, "--format", "ndjson"])
        where = best_of(args.runs, [SESSTOOL, "list", "--store", store, "--where", "user_id=42", "--format", "ndjson"])
        assert listing.returncode == 0 and where.returncode == 0
        naive = naive_loop_rate(port, min(args.sample, n))
        rows += [
            [
                "redis-cli --scan --pattern 'session:*' (baseline)",
                f"{scan.seconds:.2f}",
                f"{n / scan.seconds:,.0f}",
                "1.00",
                "-",
            ],
            [
                "sesstool list --format ndjson",
                f"{listing.seconds:.2f}",
                f"{n / listing.seconds:,.0f}",
                f"{listing.seconds / scan.seconds:.2f}",
                f"{listing.max_rss_mb:.0f} MB (N/10: {rss_small:.0f} MB)",
            ],
            [
                "sesstool list --where user_id=42",
                f"{where.seconds:.2f}",
                f"{n / where.seconds:,.0f}",
                f"{where.seconds / scan.seconds:.2f}",
                f"{where.max_rss_mb:.0f} MB",
            ],
            [
                f"naive redis-py loop (ttl+get per key, {min(args.sample, n):,} keys)",
                f"{n / naive:.2f} (extrapolated)",
                f"{naive:,.0f}",
                f"{(n / naive) / scan.seconds:.2f}",
                "-",
            ],
        ]
        print(f"\nRead path, {n:,} sessions (best of {args.runs}); ratio = time / redis-cli --scan time")
        print(table(rows, ["command", "seconds", "sessions/s", "ratio", "peak RSS"]))
        print(f"\nlist --where vs naive loop: {(n / where.seconds) / naive:.1f}x faster")

        help_start = cold_start([SESSTOOL, "--help"])
        decode_start = cold_start([SESSTOOL, "decode", "eyJ1c2VyX2lkIjo0Mn0.aT9ZQw.Xj8c1o2m3QeVQw1xW4vR2bW9yZXg"])
        python_start = cold_start([sys.executable, "-c", "pass"])
        print("\nCold start (median of 15)")
        print(
            table(
                [
                    ["python -c pass", f"{python_start * 1000:.0f} ms"],
                    ["sesstool --help", f"{help_start * 1000:.0f} ms"],
                    ["sesstool decode COOKIE", f"{decode_start * 1000:.0f} ms"],
                ],
                ["command", "wall"],
            )
        )

        try:
            from redis_writes import run_write_benchmarks
        except ImportError:
            return
        print()
        run_write_benchmarks(port, n)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
