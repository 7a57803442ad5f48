"""Which store class a URL scheme names.

Each entry names a module and a class, imported only when a URL of that scheme is
opened: drivers are heavy, and light commands (``cookie decode``) import none.

How to add a store: write ``sesstool/stores/<name>.py`` with a
:class:`~sesstool.stores.base.Store` subclass and its ``open`` classmethod (see
:mod:`sesstool.stores.base`), then add one line per URL scheme to :data:`SCHEMES`.
Nothing outside ``stores/`` changes: commands ask the store for capabilities,
never for its name.
"""

from __future__ import annotations

import importlib
import typing as t
from urllib.parse import urlsplit

from sesstool.errors import InvalidInput
from sesstool.redact import redact_url, remember_url, url_userinfo

if t.TYPE_CHECKING:
    from sesstool.stores.base import Store

_REDIS = ("sesstool.stores.redis", "RedisStore")
_SQL = ("sesstool.stores.sql", "SqlStore")

#: URL scheme -> (module, class), in the order errors list them
SCHEMES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("redis", "rediss", "unix", "redis+sentinel"), _REDIS),
    "redis+cluster": ("sesstool.stores.redis_cluster", "RedisClusterStore"),
    "memcached": ("sesstool.stores.memcached", "MemcachedStore"),
    "file": ("sesstool.stores.files", "FileStore"),
    "rdb": ("sesstool.stores.rdb", "RdbStore"),
    **dict.fromkeys(("sqlite", "postgresql", "postgresql+psycopg", "mysql", "mysql+pymysql", "mariadb"), _SQL),
}

#: SQLAlchemy dialects: ``DIALECT+DRIVER://`` names the SQL store for any driver
#: (``sqlite+pysqlite``, ``postgresql+pg8000``, ``mssql+pyodbc``...), as the
#: contract promises any SQLAlchemy URL the user has a driver for
SQL_DIALECTS = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")


def store_class(scheme: str) -> type[Store]:
    """The class for a URL scheme (lower case), imported now.

    :raises KeyError: for a scheme no store registered.
    """
    module, name = _entry(scheme)
    cls: type[Store] = getattr(importlib.import_module(module), name)
    return cls


def _entry(scheme: str) -> tuple[str, str]:
    if scheme not in SCHEMES and "+" in scheme and scheme.partition("+")[0] in SQL_DIALECTS:
        return _SQL
    return SCHEMES[scheme]


def open_store(
    url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None, **options: t.Any
) -> Store:
    """Open the store a URL names (or wrap a ready ``client`` of the app's).

    :param warn: told, in one line each, about stored keys a listing skips (memcached
        keys its protocol cannot carry); Python's :func:`warnings.warn` by default.
    :param options: settings only some stores take (``table``, ``schema``,
        ``timeout``); each store gets those of its
        :attr:`~sesstool.stores.base.Store.open_options` that are not ``None``.

    :raises InvalidInput: for an unknown scheme or a malformed URL.
    """
    # Registered before parsing: a URL that does not parse is the one most likely
    # to be quoted back in an error.
    remember_url(url)
    try:
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError as e:  # an unclosed "[" of an IPv6 host, for one
        raise InvalidInput(f"invalid store URL {redact_url(url)!r}: {e}") from e
    userinfo = url_userinfo(url)
    if userinfo is not None and any(ch in userinfo for ch in "/?#[]@"):
        # Parsers split such a URL inside the password and then quote a piece of it
        # in their errors; refuse it whole, naming no character of it.
        raise InvalidInput(
            f"invalid store URL {redact_url(url)!r}: the user or password holds an unescaped "
            "/ ? # [ ] or @; percent-encode them (%2F %3F %23 %5B %5D %40)"
        )
    try:
        _entry(scheme)
    except KeyError:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise InvalidInput(f"unsupported store URL {redact_url(url)!r}: use one of {known} "
                           "(or any SQLAlchemy DIALECT+DRIVER://)") from None
    cls = store_class(scheme)
    given = {name: value for name, value in options.items() if value is not None and name in cls.open_options}
    return cls.open(url, client=client, warn=warn, **given)
