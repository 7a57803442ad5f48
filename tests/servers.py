"""Start real redis-server and memcached processes on free loopback ports for tests.

In CI (``CI=true``) a missing server binary is an error, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
from dataclasses import dataclass, field

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Which dependency set this run tests (scripts/test --deps): lock, floor or newest.
DEPENDENCY_SET = os.environ.get("SESSTOOL_DEPS", "lock")


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name.split('-')[0]}-server)"
        if name == "memcached":
            message = "memcached is not installed (apt-get install memcached)"
        if IN_CI:
            pytest.fail(f"{message}: CI must have it", pytrace=False)
        pytest.skip(message)
    return path


def free_port(*, below: int = 65536) -> int:
    """A free loopback port under ``below`` (Redis Cluster needs port + 10000 free too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port
    raise RuntimeError(f"no free port below {below}")


def _cluster_port() -> int:
    while True:
        port = free_port(below=55536)
        try:
            with socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server did not listen on port {port} within {timeout}s")


@dataclass
class ServerProcess:
    """A running server: its port, process, and a directory for its files."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    args: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill -9: what a crash looks like to a client."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start the same server again on the same port."""
        self.stop()
        self.process = subprocess.Popen(
            self.args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, self.process)


def start_redis(extra: t.Sequence[str] = (), password: str | None = None) -> ServerProcess:
    binary = require_binary("redis-server")
    port = _cluster_port() if "--cluster-enabled" in extra else free_port()
    workdir = tempfile.mkdtemp(prefix="sesstool-redis-")
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", workdir, "--unixsocket", os.path.join(workdir, "redis.sock"), "--unixsocketperm", "700",
        *(["--requirepass", password] if password else []),
        *extra,
    ]  # fmt: skip
    process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return ServerProcess(port=port, process=process, workdir=workdir, args=args)


def memcached_exchange(port: int, request: bytes, end: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` as any client may, and read the reply up to ``end`` (left off)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(end):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"memcached closed the connection before answering {request[:20]!r}")
            reply += chunk
    return reply[: -len(end)]


def memcached_raw(port: int, request: bytes) -> bytes:
    """The replies to meta commands, which ``mn`` ends (tests write what clients write)."""
    return memcached_exchange(port, request + b"mn\r\n", b"MN\r\n")


def memcached_clock(port: int, host: str = "127.0.0.1") -> int:
    """The server's own clock (``stats``: ``time``), which ticks once a second."""
    for line in memcached_exchange(port, b"stats\r\n", b"END\r\n", host).split(b"\r\n"):
        if line.startswith(b"STAT time "):
            return int(line.split()[2])
    raise AssertionError("memcached stats has no time")


def wait_for_memcached_clock(port: int, seconds: int, host: str = "127.0.0.1") -> None:
    """Return once memcached's clock has advanced ``seconds`` from now.

    Idle times and expiry are whole seconds on that clock, which falls behind the
    wall clock on a loaded machine: a test that needs items idle for N seconds
    waits on the server, never on ``time.sleep``.
    """
    start = memcached_clock(port, host)
    deadline = time.monotonic() + seconds + 30
    while memcached_clock(port, host) < start + seconds:
        if time.monotonic() > deadline:
            raise AssertionError(f"memcached's clock did not advance {seconds}s")
        time.sleep(0.05)


def snapshot(server: ServerProcess, directory: t.Any, db: int = 0) -> str:
    """SAVE the redis-server's data and copy the dump it wrote (its own ``dir`` and
    ``dbfilename``) into ``directory``; return the copy's path (0600), which later
    SAVEs leave alone."""
    import uuid

    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, db=db)
    try:
        client.save()
        config = client.config_get("dir")["dir"], client.config_get("dbfilename")["dbfilename"]
    finally:
        client.close()
    target = os.path.join(str(directory), f"dump-{uuid.uuid4().hex[:8]}.rdb")
    shutil.copyfile(os.path.join(*config), target)
    os.chmod(target, 0o600)
    return target


def start_memcached(extra: t.Sequence[str] = ()) -> ServerProcess:
    binary = require_binary("memcached")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sesstool-memcached-")
    args = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", *extra]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    process = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return ServerProcess(port=port, process=process, workdir=workdir, args=args)


# -- PostgreSQL --------------------------------------------------------------------------

PG_PASSWORD = "pg-secret-pw"  # a password the redaction tests look for in every message
_PG_USER = "sesstool-pg"  # postgres refuses to run as root: tests and CI do run as root


def _postgres_bin(name: str) -> str:
    """``initdb``/``pg_ctl``: on PATH, else in Debian's /usr/lib/postgresql/N/bin (newest N)."""
    import glob

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: [int(n) if n.isdigit() else 0 for n in p.split("/")[4].split(".")])
    if not candidates:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if IN_CI:
            pytest.fail(f"{message}: CI must have it", pytrace=False)
        pytest.skip(message)
    return candidates[-1]


def _unprivileged_user() -> str:
    """A system user to run postgres as when we are root (created once if missing)."""
    import pwd

    try:
        pwd.getpwnam(_PG_USER)
        return _PG_USER
    except KeyError:
        pass
    created = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_USER],
                             capture_output=True)
    return _PG_USER if created.returncode == 0 else "nobody"


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: superuser ``postgres`` with :data:`PG_PASSWORD` over TCP."""

    port: int
    workdir: str
    pg_ctl: str
    prefix: list[str]

    @property
    def datadir(self) -> str:
        return os.path.join(self.workdir, "data")

    def url(self, database: str = "postgres", password: str = PG_PASSWORD, scheme: str = "postgresql") -> str:
        return f"{scheme}://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", self.datadir, "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres() -> PostgresServer:
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    workdir = tempfile.mkdtemp(prefix="sesstool-pg-")
    os.chmod(workdir, 0o755)
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = _unprivileged_user()
        shutil.chown(workdir, user)
        prefix = ["runuser", "-u", user, "--"]
    pwfile = os.path.join(workdir, "pw")
    with open(pwfile, "w") as handle:
        handle.write(PG_PASSWORD + "\n")
    if prefix:
        shutil.chown(pwfile, prefix[2])
    datadir = os.path.join(workdir, "data")
    subprocess.run([*prefix, initdb, "-D", datadir, "-U", "postgres", "-E", "UTF8", "--no-locale",
                    "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    started = subprocess.run([*prefix, pg_ctl, "-D", datadir, "-o", options, "-l", os.path.join(workdir, "log"),
                              "-w", "-t", "60", "start"], capture_output=True, timeout=90)
    if started.returncode != 0:
        with open(os.path.join(workdir, "log"), errors="replace") as log:
            raise RuntimeError(f"postgres did not start: {started.stderr!r} {log.read()[-2000:]}")
    return PostgresServer(port=port, workdir=workdir, pg_ctl=pg_ctl, prefix=prefix)
