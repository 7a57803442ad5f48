"""Options shared by many commands, and the one function that resolves their precedence.

Explicit options beat environment variables, which beat ``--app`` config, which
beats the defaults. Click reads the environment variables itself (``envvar=``);
every shared option has ``default=None`` so :func:`resolve_settings` can tell a
value the user gave from one to fill in.
"""

from __future__ import annotations

import typing as t

import click
from click.core import ParameterSource

from sesstool import redact
from sesstool.deadline import DEFAULT_TIMEOUT, parse_timeout
from sesstool.errors import InvalidInput
from sesstool.ops.settings import DEFAULT_PREFIX, DEFAULT_STORE, Settings, merge
from sesstool.render.env import Environment
from sesstool.render.output import FORMATS

if t.TYPE_CHECKING:
    from sesstool.ops.pacing import Pacer

# The same names as sesstool.codecs.serializers.CHOICES (a test keeps them equal); spelled
# out here so that commands which never decode a value do not import the codecs.
SERIALIZER_CHOICES = ("auto", "msgpack", "json", "pickle")

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


def _shared_option(*decls: str, envvar: str, help: str, **attrs: t.Any) -> t.Callable[[F], F]:
    """A shared option that its environment variable ``envvar`` also gives.

    Its default is ``None`` whatever it stands for, so that :func:`resolve_settings`
    can tell a value the user gave from one to fill in (the help names the real default).
    """
    return click.option(*decls, envvar=envvar, default=None, help=f"{help} Env: {envvar}.", **attrs)


def secret_key_options(fn: F) -> F:
    """``--secret-key`` (repeatable: first current, rest fallbacks) and ``--secret-key-file``."""
    fn = click.option(
        "--secret-key-file",
        type=click.Path(dir_okay=False, allow_dash=True),
        default=None,
        help="Read secret keys from a file, one a line (first current, rest fallbacks).",
    )(fn)
    return _shared_option("--secret-key", "secret_keys", multiple=True, type=_WholeEnvText(), metavar="KEY",
                          envvar="SESSTOOL_SECRET_KEY",
                          help="Secret key; repeat for fallbacks (the first is current).")(fn)


def timeout_option(fn: F) -> F:
    """``--timeout SECONDS``: the deadline of each network round trip (see :mod:`sesstool.deadline`)."""
    return _shared_option("--timeout", metavar="SECONDS", envvar="SESSTOOL_TIMEOUT",
                          help="Give up (exit 3) when the server takes longer than this for one step "
                          f"(connect, a read, a batch). [default: {DEFAULT_TIMEOUT:g}]")(fn)


def timeout_seconds(ctx: click.Context) -> float:
    value = ctx.params.get("timeout")
    return DEFAULT_TIMEOUT if value is None else parse_timeout(value)


def app_option(fn: F) -> F:
    return _shared_option("--app", "app_import", metavar="IMPORT", envvar="SESSTOOL_APP",
                          help="A Flask app (pkg.module:app or pkg.module:create_app()) whose config supplies "
                          "store, prefix, serializer, keys and cookie name.")(fn)


def store_options(fn: F) -> F:
    """``--store``, ``--prefix``, ``--serializer``, ``--table``, ``--app``, ``--timeout`` and the
    secret-key options."""
    fn = timeout_option(fn)
    fn = secret_key_options(fn)
    fn = app_option(fn)
    fn = _shared_option("--table", metavar="NAME", envvar="SESSTOOL_TABLE",
                        help="SQL stores: the session table, NAME or SCHEMA.NAME (SESSION_SQLALCHEMY_TABLE), e.g. "
                        "--table flask_sessions. [default: sessions]")(fn)
    fn = _shared_option("--serializer", type=click.Choice(SERIALIZER_CHOICES), envvar="SESSTOOL_SERIALIZER",
                        help="How values are decoded; auto detects each value. [default: auto]")(fn)
    fn = _shared_option("--prefix", envvar="SESSTOOL_PREFIX",
                        help=f"Key prefix (SESSION_KEY_PREFIX). [default: {DEFAULT_PREFIX}]")(fn)
    return _shared_option("--store", "store_url", metavar="URL", envvar="SESSTOOL_STORE",
                          help="redis://, rediss://, unix://, redis+sentinel://, redis+cluster://, memcached://, "
                          "sqlite:///path.db, postgresql:// (any SQLAlchemy URL), file:///dir (filesystem/cachelib) "
                          f"or rdb:///dump.rdb (a snapshot, read-only) URL. [default: {DEFAULT_STORE}]")(fn)


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or in its env var)."""
    source = ctx.get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def resolve_settings(ctx: click.Context, *, require_store: bool = True) -> Settings:
    """Apply "explicit > env > --app > default" to the shared options of ``ctx``.

    :param require_store: whether the app must name a store sesstool supports (the
        cookie commands only need its keys).
    """
    layers: list[Settings] = []
    app_import = ctx.params.get("app_import")
    if app_import:
        from sesstool.app.config import load_app_settings

        from_app = load_app_settings(app_import, require_store=require_store)
        if require_store and not from_app.given & {"store_url", "client"} and _given_value(ctx, "store_url") is None:
            raise InvalidInput(
                f"the app {app_import!r} names no session store (SESSION_TYPE is not redis, memcached, "
                "sqlalchemy, filesystem or cachelib): give --store, or use `sesstool decode` for Flask's "
                "cookie sessions"
            )
        layers.append(from_app)
    settings = merge(*layers, Settings.layer(_from_options(ctx)))
    for key in settings.secret_keys:  # the app's keys too: no error may quote one
        redact.remember(key)
    redact.remember_url(settings.store_url)
    return settings


def _given_value(ctx: click.Context, name: str) -> t.Any:
    """The value of option ``name`` when the user gave it, else ``None``."""
    value = ctx.params.get(name)
    return value if value is not None and given(ctx, name) else None


def _from_options(ctx: click.Context) -> dict[str, t.Any]:
    """The layer of settings the user gave: options and their environment variables."""
    said: dict[str, t.Any] = {"warn": getattr(ctx.find_object(Environment), "warn", None)}
    store_url = _given_value(ctx, "store_url")
    if store_url is not None:
        # The app's ready client reaches the app's store, not this one.
        said.update(store_url=store_url, client=None)
    for name in ("prefix", "serializer"):
        value = _given_value(ctx, name)
        if value is not None:
            said[name] = value
    table = _given_value(ctx, "table")
    if table is not None:
        # A table named here is the whole name: the app's schema belongs to the app's table.
        said.update(table=table, schema=None)
    keys = list(ctx.params.get("secret_keys") or ())
    key_file = ctx.params.get("secret_key_file")
    if key_file:
        keys.extend(_read_key_file(key_file))
    if keys:
        said["secret_keys"] = keys
    said["timeout"] = timeout_seconds(ctx)
    return said


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
