"""Server topologies shared by the store contract suite and the store-specific tests:
a Redis Cluster of three primaries, a primary behind Sentinel, a TLS redis-server,
three memcached servers. Each starts once per session (pytest imports these
fixtures through ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import typing as t
from dataclasses import dataclass

import pytest

from tests.servers import ServerProcess, free_port, require_binary, start_memcached, start_redis, wait_for_port


@contextlib.contextmanager
def started_cluster(primaries: int = 3) -> t.Iterator[list[ServerProcess]]:
    """A Redis Cluster of ``primaries`` real redis-servers, its slots spread over them."""
    require_binary("redis-cli")
    nodes: list[ServerProcess] = []
    try:
        for _ in range(primaries):
            nodes.append(start_redis(extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]))
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = subprocess.run(
                ["redis-cli", "-p", str(nodes[0].port), "cluster", "info"], capture_output=True, text=True
            ).stdout
            if "cluster_state:ok" in info:
                break
            time.sleep(0.2)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def cluster() -> t.Iterator[list[ServerProcess]]:
    with started_cluster() as nodes:
        yield nodes


@pytest.fixture(scope="session")
def sentinel() -> t.Iterator[tuple[ServerProcess, int]]:
    """A primary (password ``primary-pw``) monitored as ``sessions``, and the sentinel's port."""
    primary = start_redis(password="primary-pw")
    port = free_port()
    config = os.path.join(primary.workdir, "sentinel.conf")
    with open(config, "w") as handle:
        handle.write(
            f"port {port}\nbind 127.0.0.1\ndir {primary.workdir}\n"
            f"sentinel monitor sessions 127.0.0.1 {primary.port} 1\n"
            "sentinel auth-pass sessions primary-pw\n"
        )
    process = subprocess.Popen(
        [require_binary("redis-server"), config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield primary, port
    finally:
        process.terminate()
        process.wait(timeout=10)
        primary.stop()


@dataclass
class TlsRedis:
    server: ServerProcess
    port: int
    cert: str

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert}"


@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[TlsRedis]:
    """A redis-server with a TLS port and a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port = free_port()
    server = start_redis(extra=["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file",
                                str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"])  # fmt: skip
    try:
        wait_for_port(tls_port, server.process)
        yield TlsRedis(server, tls_port, str(cert))
    finally:
        server.stop()


@pytest.fixture(scope="session")
def memcached_trio() -> t.Iterator[list[ServerProcess]]:
    servers = [start_memcached() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()
