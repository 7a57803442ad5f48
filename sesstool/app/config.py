"""Read what a Flask app already knows about its sessions: ``--app IMPORT``.

The app is loaded by Flask itself (:class:`flask.cli.ScriptInfo`), so ``mod:app``,
``mod:create_app()``, ``mod:create_app('dev')``, a module holding one Flask
instance and ``path/to/app.py`` all work exactly as with ``flask --app``; the
current directory is on the import path and ``.flaskenv``/``.env`` are loaded as
Flask's CLI loads them (when python-dotenv is installed). Flask is imported only
here, when an app is asked for, so commands without ``--app`` start fast.

From ``app.config`` come ``SESSION_TYPE``, ``SESSION_REDIS`` (the client object
itself, so host, port, db, password, TLS, Sentinel and Cluster need no retyping),
``SESSION_MEMCACHED``, ``SESSION_SQLALCHEMY`` (its engine) with
``SESSION_SQLALCHEMY_TABLE``/``_SCHEMA``/``_BIND_KEY``, the directory of a filesystem /
cachelib ``FileSystemCache`` (``SESSION_FILE_DIR``, ``SESSION_CACHELIB``),
``SESSION_KEY_PREFIX``, ``SESSION_SERIALIZATION_FORMAT``,
``SESSION_USE_SIGNER``, ``SECRET_KEY``/``SECRET_KEY_FALLBACKS``,
``SESSION_COOKIE_NAME`` and ``PERMANENT_SESSION_LIFETIME``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import typing as t
import warnings

from sesstool.errors import InvalidInput
from sesstool.ops.settings import Settings

SUPPORTED_TYPES = ("redis", "memcached", "sqlalchemy", "filesystem", "cachelib")
# Flask-Session's own fallbacks when SESSION_REDIS / SESSION_MEMCACHED is unset.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_MEMCACHED_URL = "memcached://127.0.0.1:11211"


def load_app_settings(import_path: str, *, require_store: bool = True) -> Settings:
    """Load the app ``import_path`` names and read its session settings: the layer of
    :class:`~sesstool.ops.settings.Settings` that sets only what the app says.

    :param require_store: refuse a ``SESSION_TYPE`` sesstool cannot read (commands
        that open the store); ``replay`` passes ``False`` since it runs the app's
        own interface, whatever its backend.
    :raises InvalidInput: when the app cannot be loaded, or (with ``require_store``)
        its ``SESSION_TYPE`` names a store sesstool does not read (:data:`SUPPORTED_TYPES`).
    """
    return settings_from_app(load_app(import_path), require_store=require_store)


def app_import_from_environment() -> str | None:
    """``FLASK_APP``, from the environment or else from ``.flaskenv``/``.env``.

    Only ``replay`` falls back to this: other commands load an app only when
    ``--app``/``SESSTOOL_APP`` asks for one.
    """
    value = os.environ.get("FLASK_APP")
    if not value:
        _load_dotenv()
        value = os.environ.get("FLASK_APP")
    return value or None


def _remember_secrets(app: t.Any) -> None:
    """The app's keys are secrets of this run: no later error may quote them."""
    from sesstool import redact

    config = getattr(app, "config", None) or {}
    for key in [config.get("SECRET_KEY"), *(config.get("SECRET_KEY_FALLBACKS") or ())]:
        if isinstance(key, (str, bytes)):
            redact.remember(key)


def load_app(import_path: str) -> t.Any:
    """The Flask app ``import_path`` names, loaded by Flask's own loader.

    :raises InvalidInput: one line, naming the app and the app's own exception.
    """
    try:
        from flask.cli import NoAppException, ScriptInfo
    except ImportError as e:
        raise InvalidInput(f"--app needs Flask installed next to sesstool: pip install 'sesstool[flask]' ({e})") from e

    _load_dotenv()
    info = ScriptInfo(app_import_path=import_path, set_debug_flag=False)
    previous = os.environ.get("FLASK_RUN_FROM_CLI")
    # As under `flask run`: an `app.run()` at module level must not start a server.
    os.environ["FLASK_RUN_FROM_CLI"] = "true"
    try:
        # The app's own prints go to stderr so they cannot corrupt JSON output,
        # and its import-time warnings (deprecations, defaults) are not ours to show.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            app = info.load_app()
        _remember_secrets(app)
        return app
    except NoAppException as e:
        raise InvalidInput(f"cannot load app {import_path!r}: {_no_app_reason(str(e))}") from e
    except (Exception, SystemExit) as e:  # the app's own code failed; say how, in one line
        raise InvalidInput(f"cannot load app {import_path!r}: {_one_line(e)}") from e
    finally:
        if previous is None:
            os.environ.pop("FLASK_RUN_FROM_CLI", None)
        else:
            os.environ["FLASK_RUN_FROM_CLI"] = previous


def settings_from_app(app: t.Any, *, require_store: bool = True) -> Settings:
    """Read the session settings of a loaded app (see :func:`load_app_settings`)."""
    config = app.config
    interface = app.session_interface
    keys = [config.get("SECRET_KEY"), *(config.get("SECRET_KEY_FALLBACKS") or ())]
    get_cookie_name = getattr(interface, "get_cookie_name", None)
    cookie_name = get_cookie_name(app) if callable(get_cookie_name) else None
    serializer = config.get("SESSION_SERIALIZATION_FORMAT")
    signer = config.get("SESSION_USE_SIGNER")
    said = {
        "app": app,
        "secret_keys": [key for key in keys if key] or None,
        "cookie_name": cookie_name or config.get("SESSION_COOKIE_NAME"),
        "lifetime": int(app.permanent_session_lifetime.total_seconds()),
        "prefix": config.get("SESSION_KEY_PREFIX"),
        "app_serializer": serializer.lower() if isinstance(serializer, str) else None,
        "use_signer": bool(signer) if signer is not None else None,
        **_cookie_signing(interface),
        **_store_settings(app, require_store),
    }
    # A setting the config leaves out (None) is one the app does not say.
    return Settings.layer({name: value for name, value in said.items() if value is not None})


def _store_settings(app: t.Any, require_store: bool) -> dict[str, t.Any]:
    """``session_type``, ``store_url`` and ``client`` (and for SQL ``table``/``schema``)."""
    config = app.config
    session_type = config.get("SESSION_TYPE")
    session_type = session_type.lower() if isinstance(session_type, str) else None
    if session_type in (None, "null"):
        # Flask's cookie sessions, or an interface set up without SESSION_TYPE.
        return {}
    if session_type == "redis":
        client = config.get("SESSION_REDIS")
        return {"session_type": session_type, "client": client,
                "store_url": redis_client_url(client) if client is not None else DEFAULT_REDIS_URL}
    if session_type == "memcached":
        client = config.get("SESSION_MEMCACHED")
        # The client itself, not just its servers: open_memcached reads from it how
        # the app spreads keys (rendezvous, python-memcached's crc32, pylibmc's modula).
        return {"session_type": session_type, "client": client,
                "store_url": memcached_client_url(client) if client is not None else DEFAULT_MEMCACHED_URL}
    if session_type == "sqlalchemy":
        return {"session_type": session_type, **_read_sqlalchemy(app)}
    if session_type in ("filesystem", "cachelib"):
        url = file_cache_url(app.session_interface, config, session_type)
        if url is None and require_store:
            raise InvalidInput(f"SESSION_TYPE {session_type!r} with a cache other than cachelib's FileSystemCache: "
                               "sesstool reads only its directories (file://)")
        return {"session_type": session_type, "store_url": url}
    if require_store:
        raise InvalidInput(
            f"unsupported SESSION_TYPE {session_type!r}: sesstool supports "
            f"{', '.join(SUPPORTED_TYPES[:-1])} and {SUPPORTED_TYPES[-1]}"
        )
    return {"session_type": session_type}


def file_cache_url(interface: t.Any, config: t.Any, session_type: str) -> str | None:
    """The ``file://`` URL of the app's ``FileSystemCache`` (with its hash when md5,
    as older cachelib names files); ``None`` when its cache is another kind."""
    cache = getattr(interface, "cache", None)
    if cache is None:
        cache = config.get("SESSION_CACHELIB") if session_type == "cachelib" else None
    path = getattr(cache, "_path", None)
    if path is None and session_type == "filesystem":
        path = config.get("SESSION_FILE_DIR") or "flask_session"  # Flask-Session's default, relative to cwd
    if not isinstance(path, str) or (cache is not None and type(cache).__name__ != "FileSystemCache"):
        return None
    method = getattr(getattr(cache, "_hash_method", None), "__name__", "")
    if not method:  # cachelib before 0.10 keeps it as _default_hash_method (md5)
        method = getattr(getattr(cache, "_default_hash_method", None), "__name__", "")
    query = "?hash=md5" if "md5" in method else ""
    return "file://" + os.path.abspath(path) + query


def _read_sqlalchemy(app: t.Any) -> dict[str, t.Any]:
    """The engine, table and schema of Flask-Session's SQLAlchemy store."""
    config = app.config
    db = config.get("SESSION_SQLALCHEMY")
    if db is None:
        db = getattr(app.session_interface, "client", None)  # the instance Flask-Session made
    bind_key = config.get("SESSION_SQLALCHEMY_BIND_KEY")
    try:
        with app.app_context():  # Flask-SQLAlchemy hands out engines inside one
            engine = db.engines[bind_key] if bind_key else db.engine
    except Exception as e:  # the app's own setup failed; say how, in one line
        raise InvalidInput(f"cannot read the app's SESSION_SQLALCHEMY engine: {_one_line(e)}") from e
    return {"client": engine, "store_url": engine.url.render_as_string(hide_password=True),
            "table": config.get("SESSION_SQLALCHEMY_TABLE") or "sessions",
            "schema": config.get("SESSION_SQLALCHEMY_SCHEMA") or None}


def _cookie_signing(interface: t.Any) -> dict[str, t.Any]:
    """The salt and digest of the app's session interface, where it has them (Flask's
    cookie sessions, which an app may override in a subclass)."""
    said: dict[str, t.Any] = {"cookie_salt": getattr(interface, "salt", None)}
    method = getattr(interface, "digest_method", None)
    if callable(method):
        try:
            said["cookie_digest"] = method().name
        except (TypeError, AttributeError):  # not a hashlib constructor: the user's --digest decides
            pass
    return said


def redis_client_url(client: t.Any) -> str:
    """A URL naming the server(s) a ready redis-py client talks to, never its password."""
    nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if nodes:  # RedisCluster
        hosts = ",".join(f"{node.host}:{node.port}" for node in nodes.values())
        return f"redis+cluster://{hosts}"
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    manager = getattr(pool, "sentinel_manager", None)
    if pool is not None and service and manager is not None:  # Sentinel.master_for(...)
        hosts = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:{s.connection_pool.connection_kwargs.get('port')}"
            for s in manager.sentinels
        )
        db = pool.connection_kwargs.get("db", 0)
        return f"redis+sentinel://{hosts}/{service}/{db}"
    kwargs: dict[str, t.Any] = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    connection_class = getattr(pool, "connection_class", None)
    tls = kwargs.get("ssl") or getattr(connection_class, "__name__", "") == "SSLConnection"
    scheme = "rediss" if tls else "redis"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"{scheme}://{host}:{port}/{db}"


def memcached_client_url(client: t.Any) -> str:
    """A ``memcached://`` URL naming the servers of a memcached client."""
    servers: list[str] = []
    if isinstance(getattr(client, "clients", None), dict):  # pymemcache HashClient
        servers = [_server_text(getattr(c, "server", key)) for key, c in client.clients.items()]
    elif getattr(client, "server", None) is not None:  # pymemcache Client / PooledClient
        servers = [_server_text(client.server)]
    elif getattr(client, "servers", None):  # python-memcached, pylibmc
        servers = [_server_text(s) for s in client.servers]
    if not servers:
        return DEFAULT_MEMCACHED_URL
    return "memcached://" + ",".join(servers)


def _server_text(server: t.Any) -> str:
    if isinstance(server, (tuple, list)) and len(server) == 2:
        return f"{server[0]}:{server[1]}"
    ip, port = getattr(server, "ip", None), getattr(server, "port", None)  # python-memcached _Host
    if ip is not None and port is not None:
        return f"{ip}:{port}"
    return str(server)


def _load_dotenv() -> None:
    """``.flaskenv`` and ``.env`` as Flask's CLI loads them (and honours FLASK_SKIP_DOTENV)."""
    try:
        from flask.cli import load_dotenv
        from flask.helpers import get_load_dotenv
    except ImportError:
        return
    if get_load_dotenv():
        load_dotenv()


def _no_app_reason(message: str) -> str:
    # Flask puts the whole traceback of an ImportError inside the app into the
    # message; its last line names the app's own exception.
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "no Flask app found"
    if "Traceback" in message:
        return lines[-1]
    return lines[0].replace("'flask --app'", "'--app'")


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
