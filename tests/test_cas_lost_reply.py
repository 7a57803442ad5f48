"""A compare-and-set whose reply is lost reports what really happened (issue #10, item 11).

A small TCP proxy stands between sesstool and a real redis-server. Once armed, it
forwards the first script call (EVALSHA) to the server, waits for the server's
answer, so the write has certainly been applied, and then drops the client's
connection instead of passing that answer on. Everything else goes through as it is.
"""

from __future__ import annotations

import pickle
import socket
import threading
import typing as t

import msgspec
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sesstool.errors import StoreError
from sesstool.stores.base import StoredItem
from sesstool.stores.redis import RedisStore
from tests.conftest import CliRunner

pytestmark = pytest.mark.network


class LosingProxy:
    """Forwards to ``port``; drops the reply of the first script call once armed.

    ``before_server``: drop the connection *instead of* forwarding that call (the
    server never sees it).
    """

    def __init__(self, port: int, *, before_server: bool = False) -> None:
        self.upstream = port
        self.before_server = before_server
        self.armed = threading.Event()
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            state = {"drop_reply": False}
            threading.Thread(target=self._to_server, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client, state), daemon=True).start()

    def _take_shot(self, chunk: bytes) -> bool:
        with self._lock:
            if self.armed.is_set() and b"EVALSHA" in chunk.upper():
                self.armed.clear()
                self.dropped += 1
                return True
        return False

    def _to_server(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while chunk := client.recv(65536):
                if self._take_shot(chunk):
                    if self.before_server:
                        _close(client, server)
                        return
                    state["drop_reply"] = True
                server.sendall(chunk)
        except OSError:
            pass
        _close(client, server)

    def _to_client(self, server: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while chunk := server.recv(65536):
                if state["drop_reply"] and chunk.startswith(b"-NOSCRIPT"):
                    # The script was not loaded yet: nothing ran. Wait for the real call.
                    state["drop_reply"] = False
                    with self._lock:
                        self.dropped -= 1
                        self.armed.set()
                elif state["drop_reply"]:
                    _close(client, server)  # the server has answered: the write is done
                    return
                client.sendall(chunk)
        except OSError:
            pass
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


@pytest.fixture
def proxy(redis_url: str, redis_server: t.Any) -> t.Iterator[LosingProxy]:
    losing = LosingProxy(redis_server.port)
    yield losing
    losing.close()


def _store(port: int, *, retries: int) -> RedisStore:
    # retries=0 is redis-py 5's behaviour; newer redis-py re-sends a command on a
    # dropped connection by default. Both must report the truth.
    client = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), retries),
                         retry_on_error=[redis.ConnectionError] if retries else None)
    return RedisStore(client, f"redis://127.0.0.1:{port}/0")


@pytest.mark.parametrize("retries", [0, 3])
def test_a_lost_reply_after_the_write_is_a_success(proxy: LosingProxy, redis_client: t.Any, retries: int) -> None:
    redis_client.set("session:a", b"old", ex=600)
    store = _store(proxy.port, retries=retries)
    item = store.get(b"session:a")
    assert item is not None
    proxy.armed.set()
    assert store.compare_and_set(item, b"new") is True
    assert proxy.dropped == 1
    assert redis_client.get("session:a") == b"new"
    assert 590_000 < redis_client.pttl("session:a") <= 600_000  # the TTL was kept
    store.close()


def test_a_lost_request_is_a_store_error_saying_nothing_was_written(redis_server: t.Any, redis_client: t.Any) -> None:
    losing = LosingProxy(redis_server.port, before_server=True)
    redis_client.flushall()
    redis_client.set("session:a", b"old")
    store = _store(losing.port, retries=0)
    item = store.get(b"session:a")
    assert item is not None
    losing.armed.set()
    with pytest.raises(StoreError, match="nothing was written"):
        store.compare_and_set(item, b"new")
    assert redis_client.get("session:a") == b"old"
    store.close()
    losing.close()


@pytest.mark.parametrize("retries", [0, 3])
def test_batched_compare_and_set_confirms_each_write(proxy: LosingProxy, redis_client: t.Any, retries: int) -> None:
    for i in range(20):
        redis_client.set(f"session:{i}", b"old%d" % i)
    redis_client.set("session:changed", b"app")
    store = _store(proxy.port, retries=retries)
    pairs = [(StoredItem(b"session:%d" % i, b"old%d" % i, None), b"new%d" % i) for i in range(20)]
    pairs.append((StoredItem(b"session:changed", b"stale", None), b"ours"))
    proxy.armed.set()
    assert store.compare_and_set_many(pairs) == [True] * 20 + [False]
    assert proxy.dropped == 1
    assert [redis_client.get(f"session:{i}") for i in range(20)] == [b"new%d" % i for i in range(20)]
    assert redis_client.get("session:changed") == b"app"
    store.close()


def test_edit_through_a_lost_reply_reports_the_change(cli: CliRunner, proxy: LosingProxy, redis_client: t.Any) -> None:
    redis_client.set("session:abc", msgspec.msgpack.encode({"user_id": 1}), ex=600)
    proxy.armed.set()
    result = cli("edit", "abc", "--set", "user_id=2", "--store", f"redis://127.0.0.1:{proxy.port}/0",
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert proxy.dropped == 1
    record = result.json()
    assert record["changed"] is True and record["data"] == {"user_id": 2}
    assert msgspec.msgpack.decode(redis_client.get("session:abc")) == {"user_id": 2}


def test_migrate_through_a_lost_reply_counts_every_session(
    cli: CliRunner, proxy: LosingProxy, redis_client: t.Any
) -> None:
    for i in range(30):
        redis_client.set(f"session:{i}", pickle.dumps({"user_id": i}, protocol=2), ex=600)
    proxy.armed.set()
    result = cli("migrate", "--to", "msgpack", "--store", f"redis://127.0.0.1:{proxy.port}/0", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert proxy.dropped == 1
    assert result.json()["migrated"] == 30
    assert all(msgspec.msgpack.decode(redis_client.get(f"session:{i}")) == {"user_id": i} for i in range(30))
