"""Which memcached servers, and which of them holds a key: URLs, apps' clients, hashes.

Named keys go to the server the app's client would pick: ``hash=rendezvous``
(pymemcache ``HashClient``, Flask-Session 0.8; the default, through pymemcache's
own hasher and ``host:port`` spelled as the app spells it), ``crc32``
(python-memcached) or ``modula`` (pylibmc's default).
"""

from __future__ import annotations

import binascii
import typing as t
from urllib.parse import parse_qs, urlsplit

from sesstool.errors import InvalidInput
from sesstool.stores.hosts import parse_hosts

DEFAULT_PORT = 11211

#: How the app's client picks a server for a key: ``rendezvous`` (pymemcache
#: ``HashClient``), ``crc32`` (python-memcached's buckets), ``modula`` (libmemcached's
#: default, as pylibmc uses it: one-at-a-time hash modulo the server count).
HASHES = ("rendezvous", "crc32", "modula")


def one_at_a_time(key: bytes) -> int:
    """Jenkins' one-at-a-time hash as libmemcached computes it (its default hash)."""
    value = 0
    for byte in key:
        # libmemcached reads the key as (signed) char: bytes over 0x7F sign-extend.
        value = (value + (byte if byte < 0x80 else byte | 0xFFFFFF00)) & 0xFFFFFFFF
        value = (value + (value << 10)) & 0xFFFFFFFF
        value ^= value >> 6
    value = (value + (value << 3)) & 0xFFFFFFFF
    value ^= value >> 11
    return (value + (value << 15)) & 0xFFFFFFFF


def crc32_bucket(key: bytes) -> int:
    """python-memcached's ``cmemcache_hash``: its bucket is this modulo the servers."""
    return ((binascii.crc32(key) & 0xFFFFFFFF) >> 16) & 0x7FFF


def parse_url(url: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Servers and options of ``memcached://host[:port][,host[:port]...][?opt=value]``.

    Options: ``hash`` (one of :data:`HASHES`), ``timeout`` and ``connect_timeout``
    (seconds).
    """
    # No message here repeats the URL: whatever it holds, a password among it, stays unsaid.
    try:
        parts = urlsplit(url)
    except ValueError as e:  # an unbalanced [ or ]
        raise InvalidInput(f"invalid memcached URL: {e}") from e
    if parts.scheme.lower() != "memcached":
        raise InvalidInput("not a memcached URL: it must start with memcached://")
    netloc = parts.netloc
    if "@" in netloc:
        raise InvalidInput("memcached URLs take no user or password (SASL is not supported)")
    if parts.path not in ("", "/"):
        raise InvalidInput("a memcached URL has no path: memcached://host[:port][,host[:port]...]")
    servers = parse_hosts(netloc, DEFAULT_PORT, noun="memcached server")
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"hash", "timeout", "connect_timeout"}
    if unknown:
        raise InvalidInput(f"unknown memcached URL option(s): {', '.join(sorted(unknown))}")
    return servers, options


def client_servers(client: t.Any) -> tuple[list[tuple[str, int]], dict[str, t.Any]]:
    """The servers of an app's ready client (pymemcache ``HashClient`` or ``Client``,
    python-memcached ``Client``, pylibmc ``Client``) and the store options that
    spread keys as it does.

    :raises InvalidInput: for a client it cannot read.
    """
    module = type(client).__module__
    if module.startswith("pymemcache") and hasattr(client, "hasher"):
        servers, nodes = [], []
        for node, node_client in client.clients.items():
            servers.append(_tcp(node_client.server))
            nodes.append(node)
        return servers, {"hasher": client.hasher, "nodes": nodes}
    if module.startswith("pymemcache") and hasattr(client, "server"):
        return [_tcp(client.server)], {}
    if module.startswith("pylibmc") and hasattr(client, "addresses"):
        behaviors = client.behaviors
        if behaviors.get("distribution") != "modula" or behaviors.get("hash") != "default" or behaviors.get("ketama"):
            raise InvalidInput(
                "only pylibmc's default key distribution (modula, default hash) is supported: "
                "pass --store memcached://host:port,...?hash=modula if that is what the app uses"
            )
        servers = []
        for address in client.addresses:
            host, _, port = str(address).rpartition(":")
            servers.append((host.strip("[]") or str(address), int(port) if port.isdigit() else DEFAULT_PORT))
        return servers, {"hash": "modula"}
    if module == "memcache" and hasattr(client, "servers"):
        if any(getattr(s, "weight", 1) != 1 for s in client.servers):
            raise InvalidInput("python-memcached servers with weights are not supported: use weight 1")
        return [(s.ip, s.port) for s in client.servers], {"hash": "crc32"}
    raise InvalidInput(
        f"cannot tell the servers of a {module}.{type(client).__name__} memcached client: "
        "pass --store memcached://host:port,..."
    )


def _tcp(server: t.Any) -> tuple[str, int]:
    if isinstance(server, tuple) and len(server) == 2:
        return str(server[0]), int(server[1])
    raise InvalidInput(f"memcached server {server!r} is not host:port (Unix sockets are not supported)")
