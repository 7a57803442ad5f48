"""Read path on Redis: sesstool list against redis-cli --scan and a naive redis-py loop.

    python benchmarks/bench_redis.py [--sessions 1000000] [--sample 20000]

Loads N sessions in Flask-Session 0.8's format into a throwaway local redis-server,
then, in the same run (the cases alternating, --runs times), times:
  - redis-cli --scan --pattern 'session:*'        (baseline: keys only)
  - a bare SCAN loop, COUNT 1000, over a raw socket (baseline: the enumeration limit)
  - sesstool list --format ndjson                 (keys, ttl, size, serializer)
  - sesstool list --where user_id=42              (every value decoded)
  - the raw-socket fetch loops of redis_raw.py: what the server costs for the
    commands sesstool sends, and for the same work done by a Lua script a batch
  - a naive redis-py loop: scan_iter, then ttl and get per key, on a sample
  - peak RSS of `list` at N/10 and N, and the redis-server's CPU time for each case
  - cold start of `sesstool --help` and `sesstool decode`
and the write benchmarks of benchmarks/redis_writes.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SESSTOOL, load_redis, run_timed, start_redis, table  # noqa: E402
from redis_raw import measure, server_cpu  # noqa: E402
from redis_writes import run_write_benchmarks  # noqa: E402

BARE_SCAN = "bare SCAN loop, COUNT 1000, keys only (baseline)"
#: the raw-socket loops of redis_raw.py: what the server allows with no client work
RAW_LOOPS = {
    BARE_SCAN: "scan",
    "raw SCAN + PTTLs + MGET a batch (what list asks)": "pipeline",
    "raw SCAN + MGET a batch (what list --where asks)": "mget",
    "raw SCAN + one Lua call a batch: PTTLs + MGET": "lua",
    "raw SCAN + one Lua call a batch: PTTL, STRLEN, 2 bytes": "lua-head",
}


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    rss: float = 0.0

    def add(self, seconds: float, server: float, rss: float = 0.0) -> None:
        self.seconds.append(seconds)
        self.server.append(server)
        self.rss = max(self.rss, rss)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timing_row(name: str, timing: Timing, n: int, cli_time: float, scan_time: float) -> list[str]:
    return [
        name,
        f"{min(timing.seconds):.2f} / {timing.median:.2f}",
        f"{n / timing.median:,.0f}",
        f"{timing.median / cli_time:.2f}",
        f"{timing.median / scan_time:.2f}",
        f"{statistics.median(timing.server):.2f}",
        f"{timing.rss:.0f} MB" if timing.rss else "-",
    ]


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
    parser.add_argument("--runs", type=int, default=3, help="runs of each timing, alternating (min and median)")
    args = parser.parse_args()
    n = args.sessions
    port, server = start_redis()
    store = f"redis://127.0.0.1:{port}/0"
    try:
        small = max(n // 10, 1)
        load_redis(port, small)
        rss_small = run_timed([SESSTOOL, "list", "--store", store, "--format", "ndjson"]).max_rss_mb
        subprocess.run(["redis-cli", "-p", str(port), "flushall"], stdout=subprocess.DEVNULL, check=True)
        started = time.perf_counter()
        load_redis(port, n)
        print(f"loaded {n:,} sessions in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        commands = {
            "redis-cli --scan --pattern 'session:*' (baseline)":
                ["redis-cli", "-p", str(port), "--scan", "--pattern", "session:*"],
            "sesstool list --format ndjson (ttl, size, serializer)":
                [SESSTOOL, "list", "--store", store, "--format", "ndjson"],
            "sesstool list --where user_id=42 (every value decoded)":
                [SESSTOOL, "list", "--store", store, "--where", "user_id=42", "--format", "ndjson"],
        }  # fmt: skip
        cli, listing, where_name = commands
        order = [cli, BARE_SCAN, listing, where_name, *(name for name in RAW_LOOPS if name != BARE_SCAN)]
        timings: dict[str, Timing] = {name: Timing() for name in order}
        for _ in range(args.runs):  # alternating, so background load hits every case alike
            for name, argv in commands.items():
                cpu = server_cpu(server.pid)
                result = run_timed(argv)
                assert result.returncode == 0, name
                timings[name].add(result.seconds, server_cpu(server.pid) - cpu, result.max_rss_mb)
            for name, measured in measure(port, server.pid, list(RAW_LOOPS.values()), 1, n).items():
                label = next(k for k, v in RAW_LOOPS.items() if v == name)
                timings[label].add(measured.seconds[0], measured.server_seconds[0])
        naive = naive_loop_rate(port, min(args.sample, n))
        cli_time = timings[cli].median
        scan_time = timings[BARE_SCAN].median
        rows = [timing_row(name, timing, n, cli_time, scan_time) for name, timing in timings.items()]
        rows[order.index(listing)][-1] += f" (N/10: {rss_small:.0f} MB)"
        rows.append([f"naive redis-py loop (ttl+get per key, {min(args.sample, n):,} keys)",
                     f"{n / naive:.1f} (extrapolated)", f"{naive:,.0f}", f"{(n / naive) / cli_time:.1f}",
                     f"{(n / naive) / scan_time:.1f}", "-", "-"])  # fmt: skip
        print(f"\nRead path, {n:,} sessions, {args.runs} alternating runs; seconds min / median; ratios of medians")
        print(table(rows, ["command", "seconds", "sessions/s (median)", "vs redis-cli", "vs bare SCAN",
                           "server CPU s", "peak RSS"]))  # fmt: skip
        where = timings[where_name]
        print(f"\nlist --where vs naive loop: {(n / where.median) / naive:.1f}x faster")

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

        print()
        run_write_benchmarks(port, n, runs=args.runs)
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
