"""Redis Cluster against one standalone server, the same number of sessions on each.

A 3-primary cluster on this machine and one redis-server; sesstool lists, filters,
counts and purges both (each purge deletes the thousandth of sessions with
``user_id`` 42, which an ``import`` of their export puts back before the next run).
The figure is the cluster's speed as a fraction of the standalone server's,
measured in the same run (the goal: 0.7 or more; every primary is read at once,
a thread each).

    .venv/bin/python benchmarks/bench_cluster.py                   # 1,000,000 sessions
    .venv/bin/python benchmarks/bench_cluster.py --sessions 200000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from common import SESSTOOL, load_pairs, run_timed, session_values, start_redis, table


def start_cluster(primaries: int = 3) -> tuple[list[int], list[subprocess.Popen[bytes]]]:
    nodes = [start_redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf") for _ in range(primaries)]
    ports = [port for port, _ in nodes]
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
         "--cluster-yes"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "cluster_state:ok" not in subprocess.run(
        ["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True
    ).stdout:
        if time.monotonic() > deadline:
            raise SystemExit("the cluster did not come up")
        time.sleep(0.2)
    return ports, [process for _, process in nodes]


def load_cluster(ports: list[int], n: int) -> None:
    """Each node gets the keys of its own slots, through redis-cli --pipe."""
    import redis
    from redis.crc import key_slot

    owner: dict[int, int] = {}
    for start, end, primary, *_ in redis.Redis(port=ports[0]).execute_command("CLUSTER SLOTS"):
        for slot in range(start, end + 1):
            owner[slot] = int(primary[1])
    per_node: dict[int, list[tuple[bytes, bytes]]] = {port: [] for port in ports}
    for key, value in session_values(n):
        per_node[owner[key_slot(key)]].append((key, value))
    for port, pairs in per_node.items():
        load_pairs(port, pairs)


PURGE = ["purge", "--where", "user_id=42", "--yes", "--format", "json"]


def saved_purge_targets(url: str, path: str) -> None:
    """Export what the purge deletes, to put back after each run."""
    with open(path, "wb") as out:
        subprocess.run([SESSTOOL, "export", "--where", "user_id=42", "--store", url], stdout=out, check=True)


def restore(url: str, path: str) -> None:
    subprocess.run([SESSTOOL, "import", path, "--store", url], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each timing (min and median reported)")
    args = parser.parse_args()
    n = args.sessions
    port, standalone = start_redis()
    ports, cluster = start_cluster()
    try:
        load_pairs(port, session_values(n))
        load_cluster(ports, n)
        print(f"loaded {n:,} sessions on each", file=sys.stderr)
        urls = {"standalone": f"redis://127.0.0.1:{port}/0", "cluster": f"redis+cluster://127.0.0.1:{ports[0]}"}
        commands = {
            "list --format ndjson": ["list", "--format", "ndjson"],
            "list --where user_id=42": ["list", "--where", "user_id=42", "--format", "ndjson"],
            "stats --format json": ["stats", "--format", "json"],
            "purge --where user_id=42 --yes": PURGE,
        }
        saved = {name: f"{tempfile.mkdtemp()}/{name}.ndjson" for name in urls}
        for name, url in urls.items():
            saved_purge_targets(url, saved[name])
        rows = []
        for label, argv in commands.items():
            # Alternate the two stores so that background load hits both alike.
            times: dict[str, list[float]] = {"standalone": [], "cluster": []}
            rss: dict[str, float] = {"standalone": 0.0, "cluster": 0.0}
            for _ in range(args.runs):
                for name, url in urls.items():
                    timed = run_timed([SESSTOOL, *argv, "--store", url])
                    if timed.returncode != 0:
                        raise SystemExit(f"sesstool {label} on the {name} store exited {timed.returncode}")
                    times[name].append(timed.seconds)
                    rss[name] = max(rss[name], timed.max_rss_mb)
                    if argv is PURGE:
                        restore(url, saved[name])
            best = {name: min(ts) for name, ts in times.items()}
            median = {name: statistics.median(ts) for name, ts in times.items()}
            rows.append([
                f"`sesstool {label}`", f"{best['standalone']:.2f} / {median['standalone']:.2f}",
                f"{best['cluster']:.2f} / {median['cluster']:.2f}",
                f"**{median['standalone'] / median['cluster']:.2f}×**",
                f"{rss['standalone']:.0f} / {rss['cluster']:.0f} MB",
            ])  # fmt: skip
        print(f"\n{n:,} sessions; seconds as min / median of {args.runs}; speed = cluster / standalone (medians)")
        print(table(rows, ["command", "standalone (s)", "3-primary cluster (s)", "cluster speed",
                           "peak RSS (standalone / cluster)"]))
    finally:
        for process in [standalone, *cluster]:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
