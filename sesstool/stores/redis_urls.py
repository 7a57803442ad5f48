"""Redis clients built from store URLs: ``redis``, ``rediss``, ``unix``,
``redis+sentinel`` and ``redis+cluster``.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.exceptions import RedisClusterException, RedisError

from sesstool.errors import InvalidInput, StoreError
from sesstool.redact import redact_url
from sesstool.stores.hosts import parse_hosts
from sesstool.stores.redis_base import RedisBase, _first_line

SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0


def open_redis(url: str, *, client: t.Any = None) -> RedisBase:
    """Build the store for a ``redis``, ``rediss``, ``unix``, ``redis+sentinel`` or
    ``redis+cluster`` URL, or around a ready ``client`` (a cluster client gives a
    :class:`~sesstool.stores.redis_cluster.RedisClusterStore`, whatever the URL says).

    :raises InvalidInput: for a malformed URL.
    """
    if client is not None:
        return _store_for(client, url if "://" in url else None)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("redis", "rediss", "unix"):
            built = redis.Redis.from_url(url, **_timeouts())
        elif scheme == "redis+sentinel":
            built = _sentinel_client(parts)
        elif scheme == "redis+cluster":
            built = _cluster_client(parts)
        else:
            raise InvalidInput(f"not a Redis URL: {redact_url(url)}")
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"invalid store URL {redact_url(url)}: {e}") from e
    except (RedisError, RedisClusterException) as e:
        # RedisClusterException is no RedisError: a cluster with no reachable node
        # raises it while the client is built.
        raise StoreError(f"cannot connect to {redact_url(url)}: {_first_line(e)}") from e
    return _store_for(built, url)


def _store_for(client: t.Any, url: str | None) -> RedisBase:
    # Imported here: both store modules import this one.
    from sesstool.stores.redis import RedisStore
    from sesstool.stores.redis_cluster import RedisClusterStore

    # Duck-typed as redis-py's own cluster pipeline is: any client with primaries.
    cls = RedisClusterStore if hasattr(client, "get_primaries") else RedisStore
    return cls(client, url)


def _timeouts() -> dict[str, float]:
    return {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    userinfo, hosts = netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) or None), hosts


def _sentinel_client(parts: t.Any) -> t.Any:
    from redis.sentinel import Sentinel

    user, password, hosts = _userinfo(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise InvalidInput("a redis+sentinel:// URL needs the service name: redis+sentinel://host:26379/mymaster[/db]")
    service = path[0]
    db = int(path[1]) if len(path) > 1 else int(parse_qs(parts.query).get("db", ["0"])[0])
    # Typed keywords, not **dict: redis-py types each Sentinel argument since 8.x.
    sentinels = parse_hosts(hosts, 26379)
    sentinel_kwargs: dict[str, t.Any] = _timeouts()
    if password and _sentinel_takes_password(sentinels, password):
        sentinel_kwargs["password"] = password
    sentinel = Sentinel(
        sentinels,
        sentinel_kwargs=sentinel_kwargs,
        username=user,
        password=password,
        db=db,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
    return sentinel.master_for(service)


def _sentinel_takes_password(sentinels: list[tuple[str, int]], password: str) -> bool:
    """Whether the sentinels want the URL's password too.

    The URL carries one password, the primary's. Sentinels are often run without
    one, and then AUTH fails; some redis-py versions ignore that failure, others
    do not, so ask the first sentinel that answers once, up front.
    """
    for host, port in sentinels:
        probe = redis.Redis(
            host=host,
            port=port,
            password=password,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        try:
            probe.ping()
            return True
        except redis.AuthenticationError as e:
            return "without any password configured" not in str(e)
        except redis.RedisError:
            continue
        finally:
            probe.close()
    return True


def _cluster_client(parts: t.Any) -> t.Any:
    from redis.cluster import ClusterNode, RedisCluster

    user, password, hosts = _userinfo(parts.netloc)
    nodes = [ClusterNode(host, port) for host, port in parse_hosts(hosts, 6379)]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=nodes,
        username=user,
        password=password,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
