"""The main job on an embedded default: a throwaway Redis filled by a real Flask-Session app.

Run through scripts/demo, which makes the virtualenv. Starts redis-server on a
free loopback port (or, when it is not installed, fakeredis's TCP server), writes
sessions through a real Flask 3.1 + Flask-Session 0.8 app's test client (msgpack,
json and a signed id), then runs `sesstool list`, `list --where`, `show` and `stats`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import timedelta
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[int, object]:
    port = free_port()
    binary = shutil.which("redis-server")
    if binary:
        workdir = tempfile.mkdtemp(prefix="sesstool-demo-")
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        stop = process.terminate
        label = "redis-server"
    else:
        from fakeredis import TcpFakeServer

        server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stop = server.shutdown
        label = "fakeredis (redis-server is not installed)"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    print(f"# started {label} on 127.0.0.1:{port}", flush=True)
    return port, stop


def fill(url: str) -> list[str]:
    import redis
    from flask import Flask, session
    from flask_session import Session

    cookies = []
    for fmt, signer, users in (("msgpack", False, [42, 7, 42]), ("json", False, [99]), ("msgpack", True, [42])):
        app = Flask("demo")
        app.config.update(
            SECRET_KEY="demo-secret",
            SESSION_TYPE="redis",
            SESSION_REDIS=redis.Redis.from_url(url),
            SESSION_SERIALIZATION_FORMAT=fmt,
            SESSION_USE_SIGNER=signer,
            PERMANENT_SESSION_LIFETIME=timedelta(days=31),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Session(app)

        @app.get("/login/<int:user_id>")
        def login(user_id: int) -> str:
            session["user_id"] = user_id
            session["cart"] = {"items": [user_id, user_id + 1]}
            return "ok"

        for user_id in users:
            client = app.test_client()
            client.get(f"/login/{user_id}")
            cookies.append(client.get_cookie("session").value)
    return cookies


def sesstool(*args: str) -> None:
    print(f"\n$ sesstool {' '.join(args)}", flush=True)
    subprocess.run([str(BIN / "sesstool"), *args], check=False)


def main() -> None:
    port, stop = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        cookies = fill(url)
        print(f"# wrote {len(cookies)} sessions with Flask-Session 0.8; store: {url}")
        sesstool("list", "--store", url)
        sesstool("list", "--store", url, "--where", "user_id=42", "--format", "ndjson")
        sesstool("show", cookies[0], "--store", url)
        sesstool("show", cookies[-1], "--store", url, "--secret-key", "demo-secret", "--format", "json")
        sesstool("stats", "--store", url)
    finally:
        stop()  # type: ignore[operator]


if __name__ == "__main__":
    main()
