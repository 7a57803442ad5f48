"""Baselines over a raw socket: what the server itself allows, with no client work.

    python benchmarks/redis_raw.py --port PORT [--runs 3]

Each loop walks the keyspace with ``SCAN MATCH session:* COUNT 1000`` on one
connection, replies parsed by hiredis and then dropped:

  - ``scan``: keys only. The bare enumeration limit: nothing can list faster.
  - ``pipeline``: per batch one PTTL a key and one MGET, what ``sesstool list`` sends.
  - ``mget``: per batch one MGET, what ``list --where`` sends.
  - ``lua``: per batch one EVALSHA of a script that returns every PTTL and value.
  - ``lua-head``: a script returning PTTL, STRLEN and the first two bytes of each.

The fetch loops overlap like sesstool's (the next SCAN and this batch's fetch are
written before the previous fetch is read), so they differ only in what the
server is asked to do. The redis-server's own CPU time is read from /proc for
each run: on a shared machine it is steadier than wall time.
"""

from __future__ import annotations

import argparse
import bisect
import socket
import statistics
import time
import typing as t
from dataclasses import dataclass

import hiredis

BATCH = 1000

# Per batch: {pttls, values}; KEYS are the batch's keys.
LUA_FETCH = """
local pttls = {}
for i, key in ipairs(KEYS) do pttls[i] = redis.call('PTTL', key) end
return {pttls, redis.call('MGET', unpack(KEYS))}
"""
# Per batch: {pttls, lengths, heads}: enough for ttl, size and a serializer guess.
LUA_HEAD = """
local pttls, lengths, heads = {}, {}, {}
for i, key in ipairs(KEYS) do
  pttls[i] = redis.call('PTTL', key)
  lengths[i] = redis.call('STRLEN', key)
  heads[i] = redis.call('GETRANGE', key, 0, 1)
end
return {pttls, lengths, heads}
"""


def command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = hiredis.Reader()
        self.buffer = bytearray(1 << 16)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> t.Any:
        while (reply := self.reader.gets()) is False:
            n = self.sock.recv_into(self.buffer)
            if not n:
                raise ConnectionError("server closed the connection")
            self.reader.feed(self.buffer, 0, n)
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply

    def read_many(self, count: int) -> None:
        """Read and drop ``count`` replies, parsed in C a buffer at a time as sesstool does."""
        gets = self.reader.gets
        while count:
            parsed = [gets() for _ in range(count)]
            # hiredis answers False once the buffer runs out, and for every call after
            count -= bisect.bisect_left(parsed, True, key=lambda reply: reply is False)
            if count:
                n = self.sock.recv_into(self.buffer)
                if not n:
                    raise ConnectionError("server closed the connection")
                self.reader.feed(self.buffer, 0, n)

    def call(self, *parts: bytes) -> t.Any:
        self.send(command(*parts))
        return self.read()

    def close(self) -> None:
        self.sock.close()


def server_cpu(pid: int) -> float:
    """User + system seconds the process has used."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ 100)


Fetch = tuple[t.Callable[[list[bytes]], bytes], t.Callable[[list[bytes]], int]]


def fetches(connection: Connection) -> dict[str, Fetch | None]:
    """Name -> (pack the fetch of a batch, how many replies it brings), ``None`` for keys only."""
    fetch_sha = connection.call(b"SCRIPT", b"LOAD", LUA_FETCH.encode())
    head_sha = connection.call(b"SCRIPT", b"LOAD", LUA_HEAD.encode())

    def pipeline(keys: list[bytes]) -> bytes:
        return b"".join(command(b"PTTL", key) for key in keys) + command(b"MGET", *keys)

    return {
        "scan": None,
        "pipeline": (pipeline, lambda keys: len(keys) + 1),
        "mget": (lambda keys: command(b"MGET", *keys), lambda keys: 1),
        "lua": (lambda keys: command(b"EVALSHA", fetch_sha, b"%d" % len(keys), *keys), lambda keys: 1),
        "lua-head": (lambda keys: command(b"EVALSHA", head_sha, b"%d" % len(keys), *keys), lambda keys: 1),
    }


def walk(connection: Connection, fetch: Fetch | None) -> int:
    """One pass over ``session:*``; returns the keys seen."""
    scan = [b"SCAN", b"0", b"MATCH", b"session:*", b"COUNT", b"%d" % BATCH]
    cursor, keys = connection.call(*scan)
    seen = 0
    in_flight: list[bytes] = []
    while True:
        more = cursor != b"0"
        scan[1] = cursor
        request = (command(*scan) if more else b"") + (fetch[0](keys) if fetch and keys else b"")
        if request:
            connection.send(request)
        if fetch and in_flight:
            connection.read_many(fetch[1](in_flight))
        seen += len(keys)
        if not more:
            break
        cursor, scanned = connection.read()
        in_flight, keys = keys, scanned
    if fetch and keys:
        connection.read_many(fetch[1](keys))
    return seen


@dataclass
class Measured:
    name: str
    seconds: list[float]
    server_seconds: list[float]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(port: int, pid: int, names: t.Sequence[str], runs: int, expect: int) -> dict[str, Measured]:
    """Each loop in ``names`` ``runs`` times, the loops alternating run by run."""
    connection = Connection(port)
    try:
        loops = fetches(connection)
        results = {name: Measured(name, [], []) for name in names}
        for _ in range(runs):
            for name in names:
                cpu, started = server_cpu(pid), time.perf_counter()
                seen = walk(connection, loops[name])
                results[name].seconds.append(time.perf_counter() - started)
                results[name].server_seconds.append(server_cpu(pid) - cpu)
                if seen < expect:
                    raise SystemExit(f"{name}: saw {seen} keys, expected {expect}")
        return results
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="a redis-server holding session:* keys")
    parser.add_argument("--pid", type=int, required=True, help="its process id (for its CPU time)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    names = ["scan", "pipeline", "mget", "lua", "lua-head"]
    for name, m in measure(args.port, args.pid, names, args.runs, 0).items():
        print(f"{name:9} wall {m.best:.2f} / {m.median:.2f} s  server CPU {statistics.median(m.server_seconds):.2f} s")


if __name__ == "__main__":
    main()
