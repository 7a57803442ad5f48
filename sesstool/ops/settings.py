"""The one settings object: what a command needs to reach sessions, and how its sources merge.

Settings come from three places, in the contract's order of precedence: the
defaults, what a Flask app's config says (``--app``, read by
:mod:`sesstool.app.config`), and what the user gave (options and their environment
variables, which Click reads alike, gathered by :mod:`sesstool.cli.options`). Each
source but the defaults is a *layer*: a :class:`Settings` that names, in
:attr:`Settings.given`, the fields it sets. :func:`merge` lays the layers over the
defaults, later ones winning, so precedence is applied in one place.

It lives here, below both the app layer and the CLI, because both build it; and
:meth:`Settings.open_store` needs the stores, which only layers from ``ops`` up may use.
"""

from __future__ import annotations

import dataclasses
import typing as t
from dataclasses import dataclass, field

from sesstool.deadline import DEFAULT_TIMEOUT, DeadlineStore, deadline

if t.TYPE_CHECKING:
    from sesstool.stores.base import Store

DEFAULT_STORE = "redis://localhost:6379/0"
DEFAULT_PREFIX = "session:"
# Flask's SESSION_COOKIE_NAME, as sesstool.cookies.format names it; spelled out so
# that resolving settings imports no cookie code.
DEFAULT_COOKIE_NAME = "session"


@dataclass
class Settings:
    """What a command needs to reach sessions, once precedence is applied (or, as a
    layer, what one source says: see :attr:`given`).

    :param serializer: how values are decoded (``--serializer``); ``auto`` detects each.
    :param app_serializer: the format the app writes (``SESSION_SERIALIZATION_FORMAT``).
        Reading stays ``auto`` unless ``--serializer`` says otherwise, as
        Flask-Session itself still reads the other formats (pickle left by
        Flask-Session < 0.7, for one).
    :param secret_keys: the current key first, then the fallbacks.
    :param lifetime: ``PERMANENT_SESSION_LIFETIME`` in whole seconds.
    :param client: the app's ready client (``SESSION_REDIS``, ``SESSION_MEMCACHED``,
        the engine of ``SESSION_SQLALCHEMY``); then :attr:`store_url` only names its
        store in messages, and never holds a password.
    :param table: SQL stores: the session table (``--table``,
        ``SESSION_SQLALCHEMY_TABLE``), and ``schema`` its schema.
    :param timeout: the deadline of each network step (``--timeout``).
    :param warn: where the store reports what it skipped (the command's stderr).
    :param app: the loaded Flask app of ``--app``.
    :param session_type: its ``SESSION_TYPE`` lower-cased; ``None`` for Flask's
        cookie sessions or an interface configured without it.
    :param use_signer: its ``SESSION_USE_SIGNER`` (session ids signed in the cookie).
    :param cookie_salt: the salt of its session interface, when it has one (Flask's
        cookie sessions: ``"cookie-session"``), and ``cookie_digest`` the name of its digest.
    :param given: the names of the fields a layer sets; empty on merged settings.
    """

    store_url: str = DEFAULT_STORE
    prefix: str = DEFAULT_PREFIX
    serializer: str = "auto"
    app_serializer: str | None = None
    secret_keys: list[str | bytes] = field(default_factory=list)
    cookie_name: str = DEFAULT_COOKIE_NAME
    lifetime: int | None = None
    client: t.Any = None
    table: str | None = None
    schema: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    warn: t.Callable[[str], None] | None = None
    app: t.Any = None
    session_type: str | None = None
    use_signer: bool | None = None
    cookie_salt: str | None = None
    cookie_digest: str | None = None
    given: frozenset[str] = frozenset()

    @classmethod
    def layer(cls, values: t.Mapping[str, t.Any]) -> Settings:
        """A layer that sets exactly the fields in ``values`` (``None`` included: a
        layer may clear what a lower one set).

        :raises TypeError: for a name that is not a field.
        """
        return cls(**values, given=frozenset(values))

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


def merge(*layers: Settings) -> Settings:
    """The defaults with each layer's fields laid over them, later layers winning."""
    merged = Settings()
    for layer in layers:
        merged = dataclasses.replace(merged, **{name: getattr(layer, name) for name in layer.given})
    return merged
