"""The ``host:port,host:port`` list of a store URL, for every store that takes one.

A host is a name or IPv4 address, an IPv6 address in brackets (``[::1]:6379``), or a
bare IPv6 address without a port (``::1``); a missing port is the store's default.
"""

from __future__ import annotations

import ipaddress
import re

from sesstool.errors import InvalidInput

_HOST = re.compile(r"\[([^\[\]]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?")


def parse_hosts(netloc: str, default_port: int, *, noun: str = "host") -> list[tuple[str, int]]:
    """``(host, port)`` of each comma-separated entry of ``netloc`` (empty ones skipped).

    :param noun: what an entry is called in errors ("memcached server").
    :raises InvalidInput: for a malformed entry or port, or a list with no host.
    """
    hosts = []
    for spec in netloc.split(","):
        spec = spec.strip()
        if not spec:
            continue
        match = _HOST.fullmatch(spec)
        if match is None:
            if _bare_ipv6(spec):
                hosts.append((spec, default_port))
                continue
            raise InvalidInput(f"invalid {noun} {spec!r} in the store URL")
        port = int(match[2] or match[4] or default_port)
        if not 0 < port < 65536:
            raise InvalidInput(f"invalid port in {noun} {spec!r}")
        hosts.append((match[1] or match[3], port))
    if not hosts:
        raise InvalidInput(f"the store URL names no {noun}")
    return hosts


def _bare_ipv6(spec: str) -> bool:
    try:
        return ipaddress.ip_address(spec).version == 6
    except ValueError:
        return False
