"""Options shared by many commands, and the one function that resolves their precedence.

Explicit options beat environment variables, which beat ``--app`` config, which
beats the defaults. Click reads the environment variables itself (``envvar=``);
every shared option has ``default=None`` so :func:`resolve_settings` can tell a
value the user gave from one to fill in.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

import click
from click.core import ParameterSource

from sesstool import redact
from sesstool.deadline import DEFAULT_TIMEOUT, DeadlineStore, deadline, parse_timeout
from sesstool.errors import InvalidInput
from sesstool.render.env import Environment

if t.TYPE_CHECKING:
    from sesstool.ops.pacing import Pacer
    from sesstool.stores.base import Store
from sesstool.render.output import FORMATS

# The same names as sesstool.codecs.serializers.CHOICES (a test keeps them equal); spelled
# out here so that commands which never decode a value do not import the codecs.
SERIALIZER_CHOICES = ("auto", "msgpack", "json", "pickle")

DEFAULT_STORE = "redis://localhost:6379/0"
DEFAULT_PREFIX = "session:"
DEFAULT_COOKIE_NAME = "session"

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def format_option(fn: F) -> F:
    """``--format table|json|ndjson|csv``."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format; json and ndjson are stable for scripts.",
    )(fn)


class _WholeEnvText(click.types.StringParamType):
    """Text that an environment variable gives whole: a secret key may hold spaces."""

    def split_envvar_value(self, rv: str) -> t.Sequence[str]:
        return [rv]


def secret_key_options(fn: F) -> F:
    """``--secret-key`` (repeatable: first current, rest fallbacks) and ``--secret-key-file``."""
    fn = click.option(
        "--secret-key-file",
        type=click.Path(dir_okay=False, allow_dash=True),
        default=None,
        help="Read secret keys from a file, one a line (first current, rest fallbacks).",
    )(fn)
    fn = click.option(
        "--secret-key",
        "secret_keys",
        multiple=True,
        type=_WholeEnvText(),
        envvar="SESSTOOL_SECRET_KEY",
        metavar="KEY",
        help="Secret key; repeat for fallbacks (the first is current). Env: SESSTOOL_SECRET_KEY.",
    )(fn)
    return fn


def timeout_option(fn: F) -> F:
    """``--timeout SECONDS``: the deadline of each network round trip (see :mod:`sesstool.deadline`)."""
    return click.option(
        "--timeout",
        "timeout",
        envvar="SESSTOOL_TIMEOUT",
        default=None,
        metavar="SECONDS",
        help=f"Give up (exit 3) when the server takes longer than this for one step "
        f"(connect, a read, a batch). [default: {DEFAULT_TIMEOUT:g}] Env: SESSTOOL_TIMEOUT.",
    )(fn)


def timeout_seconds(ctx: click.Context) -> float:
    value = ctx.params.get("timeout")
    return DEFAULT_TIMEOUT if value is None else parse_timeout(value)


def app_option(fn: F) -> F:
    return click.option(
        "--app",
        "app_import",
        envvar="SESSTOOL_APP",
        default=None,
        metavar="IMPORT",
        help="A Flask app (pkg.module:app or pkg.module:create_app()) whose config supplies "
        "store, prefix, serializer, keys and cookie name. Env: SESSTOOL_APP.",
    )(fn)


def store_options(fn: F) -> F:
    """``--store``, ``--prefix``, ``--serializer``, ``--table``, ``--app``, ``--timeout`` and the
    secret-key options."""
    fn = timeout_option(fn)
    fn = secret_key_options(fn)
    fn = app_option(fn)
    fn = click.option(
        "--table",
        envvar="SESSTOOL_TABLE",
        default=None,
        metavar="NAME",
        help="SQL stores: the session table, NAME or SCHEMA.NAME (SESSION_SQLALCHEMY_TABLE), e.g. "
        "--table flask_sessions. [default: sessions] Env: SESSTOOL_TABLE.",
    )(fn)
    fn = click.option(
        "--serializer",
        type=click.Choice(SERIALIZER_CHOICES),
        envvar="SESSTOOL_SERIALIZER",
        default=None,
        help="How values are decoded; auto detects each value. [default: auto] Env: SESSTOOL_SERIALIZER.",
    )(fn)
    fn = click.option(
        "--prefix",
        envvar="SESSTOOL_PREFIX",
        default=None,
        help=f"Key prefix (SESSION_KEY_PREFIX). [default: {DEFAULT_PREFIX}] Env: SESSTOOL_PREFIX.",
    )(fn)
    fn = click.option(
        "--store",
        "store_url",
        envvar="SESSTOOL_STORE",
        default=None,
        metavar="URL",
        help=f"redis://, rediss://, unix://, redis+sentinel://, redis+cluster://, memcached://, "
        f"sqlite:///path.db, postgresql:// (any SQLAlchemy URL), file:///dir (filesystem/cachelib) or "
        f"rdb:///dump.rdb (a snapshot, read-only) URL. [default: {DEFAULT_STORE}] "
        f"Env: SESSTOOL_STORE.",
    )(fn)
    return fn


@dataclass
class Settings:
    """What a command needs to reach sessions, after precedence is applied."""

    store_url: str = DEFAULT_STORE
    prefix: str = DEFAULT_PREFIX
    serializer: str = "auto"
    # The format the app writes (SESSION_SERIALIZATION_FORMAT). Reading stays
    # "auto" unless --serializer says otherwise, as Flask-Session itself still
    # reads the other formats (pickle left by Flask-Session < 0.7, for one).
    app_serializer: str | None = None
    secret_keys: list[str | bytes] = field(default_factory=list)
    cookie_name: str = DEFAULT_COOKIE_NAME
    lifetime: int | None = None
    # A ready client from the app's config (SESSION_REDIS / SESSION_MEMCACHED).
    client: t.Any = None
    app: t.Any = None
    # Where the store reports what it skipped (the command's stderr, as warning: lines).
    warn: t.Callable[[str], None] | None = None
    timeout: float = DEFAULT_TIMEOUT
    # SQL stores: the session table (--table, SESSION_SQLALCHEMY_TABLE) and its schema.
    table: str | None = None
    schema: str | None = None

    def open_store(self, *, writes: str | None = None) -> Store:
        """The store, every call on it bounded by :attr:`timeout` (exit 3 past it).

        :param writes: the command, when it is one that writes: a store that cannot
            write (a read-only snapshot) is refused now, before anything is asked or read.
        :raises Unsupported: for ``writes`` on a store without :attr:`Capability.WRITE`.
        """
        from sesstool.redact import redact_url
        from sesstool.stores import open_store
        from sesstool.stores.capabilities import Capability

        with deadline(self.timeout, redact_url(self.store_url)):
            store = open_store(self.store_url, client=self.client, warn=self.warn, table=self.table,
                               schema=self.schema, timeout=self.timeout)
        if writes is not None and not store.supports(Capability.WRITE):
            store.close()
            raise store.unsupported(Capability.WRITE, writes)
        # Transparent: it answers every attribute of the store it wraps.
        return t.cast("Store", DeadlineStore(store, self.timeout))


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or in its env var)."""
    source = ctx.get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def resolve_settings(ctx: click.Context, *, require_store: bool = True) -> Settings:
    """Apply "explicit > env > --app > default" to the shared options of ``ctx``.

    :param require_store: whether the app must name a store sesstool supports (the
        cookie commands only need its keys).
    """
    params = ctx.params
    settings = Settings(warn=getattr(ctx.find_object(Environment), "warn", None))
    app_import = params.get("app_import")
    if app_import:
        from sesstool.app.config import load_app_settings

        app_settings = load_app_settings(app_import, require_store=require_store)
        for name, value in app_settings.as_dict().items():
            if value is None:
                continue
            if name == "serializer":
                settings.app_serializer = value
            else:
                setattr(settings, name, value)
        store_given = params.get("store_url") is not None and given(ctx, "store_url")
        if require_store and app_settings.store_url is None and app_settings.client is None and not store_given:
            raise InvalidInput(
                f"the app {app_import!r} names no session store (SESSION_TYPE is not redis, memcached, "
                "sqlalchemy, filesystem or cachelib): give --store, or use `sesstool decode` for Flask's "
                "cookie sessions"
            )
    if params.get("store_url") is not None and given(ctx, "store_url"):
        settings.store_url = params["store_url"]
        settings.client = None
    if params.get("prefix") is not None and given(ctx, "prefix"):
        settings.prefix = params["prefix"]
    if params.get("serializer") is not None and given(ctx, "serializer"):
        settings.serializer = params["serializer"]
    if params.get("table") is not None and given(ctx, "table"):
        # A table named here is the whole name: the app's schema belongs to the app's table.
        settings.table, settings.schema = params["table"], None
    keys = list(params.get("secret_keys") or ())
    key_file = params.get("secret_key_file")
    if key_file:
        keys.extend(_read_key_file(key_file))
    if keys:
        settings.secret_keys = keys
    for key in settings.secret_keys:  # the app's keys too: no error may quote one
        redact.remember(key)
    redact.remember_url(settings.store_url)
    settings.timeout = timeout_seconds(ctx)
    return settings


def _read_key_file(path: str) -> list[str]:
    try:
        with click.open_file(path, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError as e:
        raise InvalidInput(f"cannot read --secret-key-file {path}: {e.strerror}") from e
    keys = []
    for number, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            # Never the line itself: it is a secret.
            raise InvalidInput(f"--secret-key-file {path}: line {number} is not UTF-8 text") from None
        if text.strip():
            redact.remember(text)
            keys.append(text)
    if not keys:
        raise InvalidInput(f"--secret-key-file {path} holds no key")
    return keys


def rate_option(fn: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    return click.option(
        "--rate",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="At most N sessions per second, to go easy on a busy store (default: as fast as it answers).",
    )(fn)


def pacer_for(rate: int | None) -> Pacer:
    from sesstool.ops.pacing import Pacer

    return Pacer(rate)


def paced(advance: t.Callable[[int], None], rate: int | None) -> t.Callable[[int], None]:
    """``advance`` (a progress bar's) that also keeps the command at ``rate`` sessions
    a second: the callback a read-only scan calls after each batch."""
    if rate is None:
        return advance
    pacer = pacer_for(rate)

    def step(count: int) -> None:
        advance(count)
        pacer.pace(count)

    return step
