"""Is sesstool gentle on a busy store? An app-like workload's latency beside each bulk command.

A steady workload, as a Flask app would make it (read a session, write it back with
its TTL), runs at a fixed rate against one redis-server while sesstool `list`,
`stats`, `purge --where` and `export` run beside it: as fast as they can, with
`--rate` in 1,000-key steps, and with `--rate` alone (steps sized to the rate).
Every figure is against the same workload measured alone just before (a quiet
window before each case, so a machine that grows busier or quieter during the run
moves both): its p99 latency as a multiple of that quiet p99, and, with `--rate`,
the rate sesstool achieved against the one asked. A p99 of ten seconds rests on a
hundred slow requests, and one run of the same case varied from 1.2x to 2.0x here:
the cases repeat `--runs` times, alternating, and the table gives the median
ratio with the lowest and highest.

    .venv/bin/python benchmarks/bench_gentle.py                          # 200,000 sessions, --rate 20000
    .venv/bin/python benchmarks/bench_gentle.py --sessions 1000000 --rate 50000 --ops 2000 --runs 5
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import threading
import time

from common import SESSTOOL, load_redis, run_timed, start_redis, table


class Workload:
    """GET then SET EX of random session keys at ``ops`` pairs a second, latencies kept."""

    def __init__(self, port: int, keys: list[bytes], ops: int) -> None:
        import redis

        self.client = redis.Redis(port=port)
        self.keys = keys
        self.interval = 1.0 / ops
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(3)
        due = time.perf_counter()
        while not self._stop.is_set():
            key = rng.choice(self.keys)
            started = time.perf_counter()
            value = self.client.get(key)
            if value is not None:
                self.client.set(key, value, ex=2678400)
            self.latencies.append(time.perf_counter() - started)
            due += self.interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # a steady offered load; running late only catches up

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def percentiles(self) -> tuple[float, float]:
        cuts = statistics.quantiles(self.latencies, n=100)
        return cuts[49] * 1000, cuts[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=20_000, help="the --rate given to sesstool")
    parser.add_argument("--ops", type=int, default=1000, help="workload requests (GET + SET) a second")
    parser.add_argument("--quiet-seconds", type=float, default=5.0, help="the workload alone before each case")
    parser.add_argument("--runs", type=int, default=3, help="runs of every case, alternating")
    args = parser.parse_args()
    port, server = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        load_redis(port, args.sessions)
        import redis

        keys = list(itertools.islice(redis.Redis(port=port).scan_iter(match="session:*", count=1000), 5000))
        commands = {
            "list": ["list", "--format", "ndjson"],
            "stats": ["stats", "--format", "json"],
            "purge --where user_id=42": ["purge", "--where", "user_id=42", "--yes", "--format", "json"],
            "export": ["export"],
        }
        cases = [
            (label, argv, rate, batch)
            for label, argv in commands.items()
            for rate, batch in ((None, None), (args.rate, 1000), (args.rate, None))
        ]
        quiet: list[float] = []
        seen: dict[int, list[tuple[float, float, float, float]]] = {i: [] for i in range(len(cases))}
        for _ in range(args.runs):
            for i, (_label, argv, rate, batch) in enumerate(cases):
                with Workload(port, keys, args.ops) as alone:
                    time.sleep(args.quiet_seconds)  # the baseline: the workload alone, just before
                base99 = alone.percentiles()[1]
                quiet.append(base99)
                extra = (["--rate", str(rate)] if rate else []) + (["--batch", str(batch)] if batch else [])
                with Workload(port, keys, args.ops) as load:
                    timed = run_timed([SESSTOOL, *argv, "--store", url, *extra])
                p50, p99 = load.percentiles()
                seen[i].append((timed.seconds, p50, p99, p99 / base99))
        median = statistics.median
        rows = [["(workload alone)", "-", "-", f"{median(quiet):.2f}", "1.00", "-"]]
        for i, (label, _argv, rate, batch) in enumerate(cases):
            seconds, p50s, p99s, ratios = (list(column) for column in zip(*seen[i], strict=True))
            achieved = args.sessions / median(seconds)
            rows.append([
                f"`{label}`" + (f" `--rate {rate}`" if rate else "") + (f" `--batch {batch}`" if batch else ""),
                f"{median(seconds):.2f}",
                f"{median(p50s):.2f}", f"{median(p99s):.2f}",
                f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{achieved:,.0f}/s" + (f" ({achieved / rate:.0%} of asked)" if rate else ""),
            ])  # fmt: skip
        print(f"\n{args.sessions:,} sessions; workload {args.ops:,} GET+SET a second; latencies in ms, "
              f"medians of {args.runs} runs", file=sys.stderr)  # fmt: skip
        print(table(rows, ["beside the workload", "command s", "p50", "p99", "p99 vs alone (lowest-highest)",
                           "sessions/s"]))  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
