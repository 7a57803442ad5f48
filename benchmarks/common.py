"""Helpers shared by the benchmarks: servers, loading sessions, timing child processes."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
SESSTOOL = str(BIN / "sesstool")
LIFETIME = 31 * 86400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    if port > 65535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def start_redis(*extra: str) -> tuple[int, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("benchmarks need redis-server (apt-get install redis-server)")
    port = free_port()
    while "--cluster-enabled" in extra and not _bindable(port + 10000):
        port = free_port()  # a Cluster node also listens on its port + 10000
    workdir = tempfile.mkdtemp(prefix="sesstool-bench-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir,
         *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(port)
    return port, process


def session_values(n: int, seed: int = 7) -> t.Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs as Flask-Session 0.8 writes them: token_urlsafe(32) ids and
    ``msgspec.msgpack.Encoder().encode(dict(session))`` values; 1 in 1000 has user_id 42."""
    import random

    import msgspec

    encode = msgspec.msgpack.Encoder().encode
    rng = random.Random(seed)
    for i in range(n):
        user_id = 42 if i % 1000 == 0 else rng.randrange(1000, 10_000_000)
        data = {
            "_permanent": True,
            "user_id": user_id,
            "csrf_token": secrets.token_hex(20),
            "cart": {"items": [rng.randrange(100) for _ in range(3)]},
        }
        yield b"session:" + secrets.token_urlsafe(32).encode(), encode(data)


def load_redis(port: int, n: int) -> None:
    """Fill Redis fast with ``redis-cli --pipe`` (RESP generated here)."""
    load_pairs(port, session_values(n))


def load_pairs(port: int, pairs: t.Iterable[tuple[bytes, bytes]]) -> None:
    """Write ``(key, value)`` pairs with the session TTL through ``redis-cli --pipe``."""
    ttl = str(LIFETIME).encode()
    with tempfile.NamedTemporaryFile(suffix=".resp", delete=False) as out:
        chunk = []
        for key, value in pairs:
            chunk.append(
                b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n"
                % (len(key), key, len(value), value, len(ttl), ttl)
            )
            if len(chunk) >= 10_000:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))
        path = out.name
    with open(path, "rb") as handle:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=handle, stdout=subprocess.DEVNULL, check=True)
    os.unlink(path)


@dataclass
class Timed:
    seconds: float
    max_rss_mb: float
    returncode: int
    stdout_bytes: int
    cpu_seconds: float = 0.0  # the child's user + system time: steadier than wall time on a busy machine
    stdout_lines: int = 0


# Starts the command from a small process: a child forked straight from a benchmark
# starts at the benchmark's resident size, and Linux keeps that high-water mark across
# exec in ru_maxrss, so every command would seem to take the benchmark's own memory
# (a snapshot listing read 68 MB in the cost curve, 23 MB alone).
_LAUNCH = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
cpu = usage.ru_utime + usage.ru_stime
sys.stderr.write(f"{time.perf_counter() - started} {cpu} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_timed(argv: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> Timed:
    """Wall time, CPU time and peak RSS of one command, its output discarded (counted)."""
    command = ["/bin/sh", "-c", argv] if shell else list(t.cast(list[str], argv))
    process = subprocess.Popen([sys.executable, "-c", _LAUNCH, *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=cwd)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    size = lines = 0
    while chunk := process.stdout.read(1 << 20):
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds, cpu, rss, code = process.stderr.read().split()
    process.wait()
    return Timed(float(seconds), int(rss) / 1024, int(code), size, float(cpu), lines)


def best_of(runs: int, argv: list[str] | str, **kwargs: t.Any) -> Timed:
    results = [run_timed(argv, **kwargs) for _ in range(runs)]
    return min(results, key=lambda r: r.seconds)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)
