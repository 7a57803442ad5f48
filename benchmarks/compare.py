"""Run the same sesstool commands from two git revisions, side by side, on one store.

A refactor's cost shows here before it lands: both revisions read the same
loaded Redis, their runs alternate (so a noisy neighbour slows both alike), and
the table gives min and median wall time per revision, and the ratios of the
medians of wall time, of sesstool's own CPU time and of the redis-server's CPU
time (both steadier than wall time on a busy machine).

    .venv/bin/python benchmarks/compare.py main HEAD                 # 200,000 sessions, 5 runs each
    .venv/bin/python benchmarks/compare.py 73c3f32 HEAD --sessions 1000000 --runs 3
    .venv/bin/python benchmarks/compare.py main HEAD --rdb          # the same, read from a SAVE of that Redis

Each revision's ``sesstool`` package is exported with ``git archive`` into a
temporary directory and put first on ``PYTHONPATH``; the dependencies are this
virtualenv's, so only sesstool's own code differs between the two columns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import load_redis, run_timed, start_redis, table
from redis_raw import server_cpu

ROOT = Path(__file__).resolve().parent.parent

# name -> sesstool arguments (after the store options are added)
SCENARIOS: dict[str, list[str]] = {
    "list": ["list", "--format", "ndjson"],
    "list --where": ["list", "--where", "user_id=42", "--format", "ndjson"],
    "list --data": ["list", "--data", "--format", "ndjson"],
    "stats": ["stats", "--format", "json"],
    "purge --where --dry-run": ["purge", "--where", "user_id=42", "--dry-run", "--format", "json"],
    "export": ["export"],
    "export --where": ["export", "--where", "user_id=42"],
}


def export_revision(revision: str, into: Path) -> str:
    """Unpack ``revision``'s sesstool package under ``into``; return its commit id."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "sesstool"], capture_output=True, check=True)
    with tempfile.TemporaryFile() as handle:
        handle.write(archive.stdout)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(into, filter="data")
    return commit


def saved_snapshot(port: int) -> str:
    """The rdb:// URL of the dump the server at ``port`` writes on SAVE."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        client.save()
        return "rdb://" + os.path.join(client.config_get("dir")["dir"], client.config_get("dbfilename")["dbfilename"])
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="the baseline revision (a commit, branch or tag)")
    parser.add_argument("new", help="the revision to compare with it")
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5, help="runs per revision and scenario (alternating)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--rdb", action="store_true", help="read the loaded server's snapshot (rdb://), not the server")
    args = parser.parse_args()
    scenarios = args.scenario or list(SCENARIOS)

    with tempfile.TemporaryDirectory(prefix="sesstool-compare-") as workdir:
        trees = {}
        for label, revision in (("old", args.old), ("new", args.new)):
            target = Path(workdir) / label
            target.mkdir()
            trees[label] = (export_revision(revision, target), target)
        port, server = start_redis()
        try:
            load_redis(port, args.sessions)
            store = ["--store", saved_snapshot(port) if args.rdb else f"redis://127.0.0.1:{port}/0"]
            rows = []
            for name in scenarios:
                seconds: dict[str, list[float]] = {"old": [], "new": []}
                cpu: dict[str, list[float]] = {"old": [], "new": []}
                served: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(args.runs):
                    for label, (_, tree) in trees.items():
                        env = {**os.environ, "PYTHONPATH": str(tree)}
                        before = server_cpu(server.pid)
                        # Run from the tree: ``-m`` puts the working directory first on
                        # sys.path, so from the checkout both columns would run its code.
                        result = run_timed([sys.executable, "-m", "sesstool", *SCENARIOS[name], *store], env=env,
                                           cwd=tree)  # fmt: skip
                        if result.returncode != 0:
                            raise SystemExit(f"{label} ({trees[label][0]}) failed on {name}: exit {result.returncode}")
                        seconds[label].append(result.seconds)
                        cpu[label].append(result.cpu_seconds)
                        served[label].append(server_cpu(server.pid) - before)
                old, new = (statistics.median(seconds[k]) for k in ("old", "new"))
                old_cpu, new_cpu = (statistics.median(cpu[k]) for k in ("old", "new"))
                old_served, new_served = (statistics.median(served[k]) for k in ("old", "new"))
                rows.append(
                    [
                        name,
                        f"{min(seconds['old']):.3f} / {old:.3f}",
                        f"{min(seconds['new']):.3f} / {new:.3f}",
                        f"{new / old:.2f}",
                        f"{new_cpu / old_cpu:.2f}",
                        f"{new_served / old_served:.2f}" if old_served else "-",
                    ]
                )
        finally:
            server.terminate()
    old_commit, new_commit = trees["old"][0], trees["new"][0]
    source = "a snapshot (rdb://)" if args.rdb else "Redis"
    print(f"\n{args.sessions:,} sessions in {source}, {args.runs} alternating runs each; seconds as min / median")
    print(table(rows, ["scenario", f"old {old_commit}", f"new {new_commit}", "new/old wall", "new/old CPU",
                       "new/old server CPU"]))


if __name__ == "__main__":
    main()
