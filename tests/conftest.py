"""Shared fixtures: real servers on free loopback ports, a CLI runner, Flask-Session apps."""

from __future__ import annotations

import io
import json
import typing as t
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

from sesstool.cli.main import main
from sesstool.render.env import Environment
from tests.properties import SCALE
from tests.servers import PostgresServer, ServerProcess, start_memcached, start_postgres, start_redis
from tests.topologies import cluster, memcached_trio, sentinel, tls_redis

__all__ = ["cluster", "memcached_trio", "sentinel", "tls_redis"]  # fixtures shared with every test module

# Property tests: a bounded, repeatable run by default (CI and scripts/test); more
# examples with SESSTOOL_PROPERTY_SCALE (tests/properties.py), then also random.
settings.register_profile(
    "sesstool",
    max_examples=100 * SCALE,
    deadline=None,
    derandomize=SCALE == 1,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("sesstool")


@pytest.fixture(scope="session")
def redis_server() -> t.Iterator[ServerProcess]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: ServerProcess) -> str:
    """A URL to an empty database of the shared test redis-server."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    client.flushall()
    client.close()
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
def redis_client(redis_url: str) -> t.Iterator[t.Any]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def memcached_server() -> t.Iterator[ServerProcess]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_pair() -> t.Iterator[tuple[ServerProcess, ServerProcess]]:
    first, second = start_memcached(), start_memcached()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="session")
def postgres_server() -> t.Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session (skipped where none is installed, failed in CI)."""
    server = start_postgres()
    yield server
    server.stop()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> t.Any:
        return json.loads(self.stdout)

    def ndjson(self) -> list[t.Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


class CliRunner:
    """Runs ``sesstool`` in-process with captured streams and the real error handling."""

    def __call__(
        self,
        *args: str,
        input: str = "",
        stdout_isatty: bool = False,
        stdin_isatty: bool = False,
        stderr_isatty: bool = False,
    ) -> CliResult:
        env = Environment(
            stdin=io.StringIO(input),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin_isatty=stdin_isatty,
            stdout_isatty=stdout_isatty,
            stderr_isatty=stderr_isatty,
            no_color=True,
        )
        code = main(list(args), env)
        return CliResult(code, t.cast(io.StringIO, env.stdout).getvalue(), t.cast(io.StringIO, env.stderr).getvalue())


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()
