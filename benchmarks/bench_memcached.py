"""Listing on memcached: ``sesstool list`` against two raw reads of the same items.

    python benchmarks/bench_memcached.py [--sessions 1000000] [--runs 3] [--servers 1|2|3]

Starts its own memcached (``--servers`` of them, sessions spread by pymemcache's
rendezvous hash as a Flask-Session 0.8 app would), loads Flask-Session 0.8 msgpack
sessions with pipelined ``set`` (1 in 1000 holds ``user_id`` 42), then times, each
``--runs`` times (min and median), in the same run:

  - raw metadump read: a socket reads ``lru_crawler metadump all`` to its END from
    every server in turn, parsing nothing (keys, expiry and item size only)
  - bare pipeline: the same dump, then the values fetched as sesstool fetches them
    (``mg <key> v t c f u``: no LRU bump, idle time untouched), 500 keys a request
    with the next request sent before a reply is read, a thread a server; replies
    are read to each batch's ``mn`` marker and not parsed (the fair limit: the dump
    holds no values)
  - sesstool list --format ndjson        (every value read; ttl, size, serializer)
  - sesstool list --where user_id=42     (every value read and decoded)

Each run is checked (line or item count), so a fast wrong answer cannot pass.
``client CPU s`` is the reading side's CPU time (the benchmark's own for the
baselines, sesstool's for its runs): steadier than wall time on a shared machine.
Targets: list >= 0.35x the raw dump's speed and >= 0.7x the bare pipeline's
(``speed`` = baseline seconds / list seconds, both from the medians); ``--where``
>= 100,000 sessions/s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LIFETIME, SESSTOOL, Timed, free_port, run_timed, session_values, table, wait_for  # noqa: E402

#: Keys a request in the bare pipeline (sesstool's own request size).
PIPELINE_KEYS = 500


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


def _dump_keys(sock: socket.socket) -> list[bytes]:
    """The keys of the dump on ``sock``, read to its END; only the prefix's ``:`` is
    URL-decoded (the loaded ids are URL-safe)."""
    sock.sendall(b"lru_crawler metadump all\r\n")
    keys: list[bytes] = []
    pending = b""
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("memcached closed the dump early")
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        block, pending = pending[:cut], pending[cut:]
        keys += re.findall(rb"key=(\S+)", block.replace(b"%3A", b":"))
        if not pending and (block.endswith(b"\nEND\r\n") or block == b"END\r\n"):
            return keys


def bare_pipeline(ports: list[int]) -> tuple[float, int]:
    """Seconds to dump and fetch every server's items (a thread each), and the items fetched."""
    counts: list[int] = []
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda p=port: counts.append(_pipeline_one(p))) for port in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(counts)


def _pipeline_one(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        keys = _dump_keys(sock)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = _Replies(sock)
        sent = 0
        for start in range(0, len(keys), PIPELINE_KEYS):
            sock.sendall(b"".join([b"mg " + key + b" v t c f u\r\n" for key in keys[start : start + PIPELINE_KEYS]])
                         + b"mn\r\n")  # fmt: skip
            sent += 1
            replies.wait_for(sent - 1)  # one request in flight while the previous reply is read
        replies.wait_for(sent)
    return len(keys)


class _Replies:
    """The reply stream of the bare pipeline, read as far as a number of batches'
    ``MN`` markers (a value here never holds one: the loaded msgpack maps hold hex
    text and ints below 10**7)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.carry, self.seen = sock, bytearray(1 << 20), b"", 0

    def wait_for(self, batches: int) -> None:
        while self.seen < batches:
            got = self.sock.recv_into(self.buf)
            if not got:
                raise SystemExit("memcached closed the pipeline early")
            data = self.carry + self.buf[:got]
            self.seen += data.count(b"MN\r\n")
            self.carry = data[-3:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per case (min and median shown)")
    parser.add_argument("--servers", type=int, default=1, choices=[1, 2, 3])
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
        if not _complete(dumped, n):
            raise SystemExit(f"metadump lists {dumped:,} items, expected {n:,} (memory too small?)")
        store = "memcached://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        cases: list[tuple[str, t.Callable[[], tuple[float, float, float | None]]]] = [
            ("raw read of lru_crawler metadump all (baseline)", lambda: _checked(lambda: raw_metadump(ports), n)),
            ("bare dump + pipelined mg (baseline)", lambda: _checked(lambda: bare_pipeline(ports), n)),
            ("sesstool list --format ndjson",
             lambda: _sesstool([SESSTOOL, "list", "--store", store, "--format", "ndjson"], n)),
            ("sesstool list --where user_id=42 --format ndjson",
             lambda: _sesstool([SESSTOOL, "list", "--store", store, "--where", "user_id=42", "--format", "ndjson"],
                               (n + 999) // 1000)),
        ]  # fmt: skip
        # Rounds alternate the cases, so background load on a shared machine hits all alike.
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        cpu: dict[str, list[float]] = {name: [] for name, _ in cases}
        rss: dict[str, float | None] = {}
        for _ in range(args.runs):
            for name, case in cases:
                seconds, cpu_seconds, rss[name] = case()
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        raw, bare = (statistics.median(times[name]) for name, _ in cases[:2])
        rows = [[name, f"{min(times[name]):.3f}", f"{statistics.median(times[name]):.3f}",
                 f"{n / statistics.median(times[name]):,.0f}", f"{raw / statistics.median(times[name]):.2f}",
                 f"{bare / statistics.median(times[name]):.2f}", f"{statistics.median(cpu[name]):.2f}",
                 "-" if rss[name] is None else f"{rss[name]:.0f}"]
                for name, _ in cases]  # fmt: skip
        print(table(rows, ["case", "min s", "median s", "items/s", "vs raw dump", "vs bare pipeline",
                           "client CPU s", "max RSS MB"]))  # fmt: skip
        listing = statistics.median(times[cases[2][0]])
        print(
            f"list speed: {raw / listing:.2f}x the raw dump (target >= 0.35x), {bare / listing:.2f}x the bare "
            f"pipeline (target >= 0.7x); --where: {n / statistics.median(times[cases[3][0]]):,.0f} sessions/s "
            "(target >= 100,000)"
        )
    finally:
        for _, process in started:
            process.terminate()
            process.wait()


def _checked(baseline: t.Callable[[], tuple[float, int]], expected: int) -> tuple[float, float, None]:
    """A baseline's wall seconds and this process's CPU seconds (steadier on a busy machine)."""
    cpu = time.process_time()
    seconds, count = baseline()
    cpu = time.process_time() - cpu
    if not _complete(count, expected):
        raise SystemExit(f"a baseline read {count:,} items, expected {expected:,}")
    return seconds, cpu, None


def _complete(count: int, expected: int) -> bool:
    """``count`` is ``expected``, or a few short: the LRU crawler only try-locks, so
    a dump on a busy machine can skip an item whose lock the LRU maintainer holds
    (a handful in a million)."""
    return 0 <= expected - count <= expected // 10_000


def _sesstool(command: list[str], expected: int) -> tuple[float, float, float]:
    timed, got = _run_counting(command)
    if timed.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:])}: exit {timed.returncode}")
    if not _complete(got, expected):
        raise SystemExit(f"{' '.join(command[1:])}: printed {got:,} records, expected {expected:,}")
    return timed.seconds, timed.cpu_seconds, timed.max_rss_mb


def _run_counting(command: list[str]) -> tuple[Timed, int]:
    """Run a sesstool command; its timings and peak RSS, and the lines it printed."""
    timed = run_timed(command)
    return timed, timed.stdout_lines


if __name__ == "__main__":
    main()
