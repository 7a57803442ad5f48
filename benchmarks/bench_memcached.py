"""Listing on memcached: ``sesstool list`` against a raw read of ``lru_crawler metadump all``.

    python benchmarks/bench_memcached.py [--sessions 1000000] [--runs 3] [--servers 1]

Starts its own memcached (``--servers`` of them, sessions spread by pymemcache's
rendezvous hash as a Flask-Session 0.8 app would), loads Flask-Session 0.8 msgpack
sessions with pipelined ``set`` (1 in 1000 holds ``user_id`` 42), then times, best
of ``--runs``, in the same run:

  - raw metadump read: a socket reads ``lru_crawler metadump all`` to its END from
    every server, parsing nothing (the baseline: keys, expiry and item size only)
  - sesstool list --format ndjson        (every value read; ttl, size, serializer)
  - sesstool list --where user_id=42     (every value read and decoded)

Each sesstool run is checked (line count), so a fast wrong answer cannot pass.
Targets: list >= 0.5x the raw read's speed (``speed_vs_raw`` = raw seconds / list
seconds); ``--where`` >= 100,000 sessions/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LIFETIME, SESSTOOL, Timed, free_port, session_values, table, wait_for  # noqa: E402


def start_memcached(megabytes: int) -> tuple[int, subprocess.Popen[bytes]]:
    binary = shutil.which("memcached")
    if binary is None:
        raise SystemExit("this benchmark needs memcached (apt-get install memcached)")
    port = free_port()
    args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(megabytes)]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    wait_for(port)
    return port, process


def load(ports: list[int], n: int) -> None:
    """Pipelined ``set ... noreply`` to the server the app's HashClient would pick,
    with Flask-Session 0.8's absolute 31-day exptime; one round trip per 5,000."""
    from pymemcache.client.rendezvous import RendezvousHash

    hasher = RendezvousHash(nodes=[f"127.0.0.1:{p}" for p in ports])
    socks = {p: socket.create_connection(("127.0.0.1", p)) for p in ports}
    pending: dict[int, list[bytes]] = {p: [] for p in ports}
    exptime = int(time.time()) + LIFETIME

    def flush(port: int) -> None:
        socks[port].sendall(b"".join(pending[port]) + b"mn\r\n")
        pending[port] = []
        reply = b""
        while not reply.endswith(b"MN\r\n"):
            reply += socks[port].recv(65536)
        if reply != b"MN\r\n":
            raise SystemExit(f"memcached refused a set: {reply[:200]!r}")

    for key, value in session_values(n):
        port = ports[0] if len(ports) == 1 else int(hasher.get_node(key.decode()).rsplit(":", 1)[1])
        pending[port].append(b"set %s 0 %d %d noreply\r\n%s\r\n" % (key, exptime, len(value), value))
        if len(pending[port]) >= 5000:
            flush(port)
    for port in ports:
        flush(port)
        socks[port].close()


def raw_metadump(ports: list[int]) -> tuple[float, int]:
    """Seconds to read every server's whole dump, and its line count."""
    started = time.perf_counter()
    lines = 0
    for port in ports:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"lru_crawler metadump all\r\n")
            tail = b""
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise SystemExit("memcached closed the dump early")
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-6:]
                if tail.endswith(b"\nEND\r\n") or tail == b"END\r\n":
                    break
            lines -= 1  # the END line
    return time.perf_counter() - started, lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs per case")
    parser.add_argument("--servers", type=int, default=1, choices=[1, 2])
    args = parser.parse_args(argv)
    n = args.sessions
    megabytes = max(256, n * 800 // (1 << 20) // args.servers)  # headroom: nothing may be evicted
    started = [start_memcached(megabytes) for _ in range(args.servers)]
    ports = [port for port, _ in started]
    try:
        began = time.perf_counter()
        load(ports, n)
        print(f"loaded {n:,} sessions on {len(ports)} server(s) in {time.perf_counter() - began:.1f}s", flush=True)
        time.sleep(1)  # let the LRU maintainer settle the new items
        _, dumped = raw_metadump(ports)
        if dumped != n:
            raise SystemExit(f"metadump lists {dumped:,} items, expected {n:,} (memory too small?)")

        store = "memcached://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        expected_where = (n + 999) // 1000
        raw_seconds = min(raw_metadump(ports)[0] for _ in range(args.runs))
        cases: list[tuple[str, list[str], int]] = [
            ("sesstool list --format ndjson", [SESSTOOL, "list", "--store", store, "--format", "ndjson"], n),
            ("sesstool list --where user_id=42 --format ndjson",
             [SESSTOOL, "list", "--store", store, "--where", "user_id=42", "--format", "ndjson"], expected_where),
        ]  # fmt: skip
        rows = [["raw read of lru_crawler metadump all (baseline)", f"{raw_seconds:.3f}",
                 f"{n / raw_seconds:,.0f}", "1.00", "-"]]  # fmt: skip
        results: dict[str, t.Any] = {}
        for name, command, lines in cases:
            best = None
            for _ in range(args.runs):
                timed, got = _run_counting(command)
                if timed.returncode != 0:
                    raise SystemExit(f"{name}: exit {timed.returncode}")
                if got != lines:
                    raise SystemExit(f"{name}: printed {got:,} records, expected {lines:,}")
                best = timed if best is None or timed.seconds < best.seconds else best
            assert best is not None
            results[name] = best
            rows.append([name, f"{best.seconds:.3f}", f"{n / best.seconds:,.0f}",
                         f"{raw_seconds / best.seconds:.2f}", f"{best.max_rss_mb:.0f}"])  # fmt: skip
        print(table(rows, ["case", "seconds", "sessions/s", "speed_vs_raw", "max RSS MB"]))
        list_ratio = raw_seconds / results[cases[0][0]].seconds
        where_rate = n / results[cases[1][0]].seconds
        print(
            f"list speed vs raw metadump: {list_ratio:.2f}x (target >= 0.5x); "
            f"--where: {where_rate:,.0f} sessions/s (target >= 100,000)"
        )
    finally:
        for _, process in started:
            process.terminate()
            process.wait()


def _run_counting(command: list[str]) -> tuple[Timed, int]:
    """Run a sesstool command; its timing and peak RSS (as ``common.run_timed``) and
    the number of lines it printed."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    size = lines = 0
    while chunk := process.stdout.read(1 << 20):
        size += len(chunk)
        lines += chunk.count(b"\n")
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    return Timed(elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), size), lines


if __name__ == "__main__":
    main()
