"""Redis's change feed: keyspace notifications, on one server or every Cluster primary.

Each node is subscribed with ``PSUBSCRIBE __keyspace@DB__:<prefix>*`` (the prefix
glob-escaped: a ``*`` or ``[`` in a prefix is a literal there). Notifications are
node-local, so on a Cluster every primary gets its own subscription and the feeds
are merged as they arrive.

What each notification means (the message's data is the event name):

- ``new`` (Redis 7+, flag ``n``): the key did not exist. Redis sends it before the
  event of the command that created the key, on the same node and connection, so
  the next event for that key is the creating one: a ``set`` right after ``new``
  is ``created``, any other ``set`` is ``changed``. This is exact, where telling
  new keys from an initial SCAN would race every write made while it runs.
- ``set`` (flag ``$``): created or changed as above. ``SET ... EX`` also sends
  ``expire``: one save is still one event.
- ``del`` (flag ``g``; ``UNLINK``, ``GETDEL`` and ``EXPIRE`` into the past too)
  is ``deleted``; ``evicted`` (flag ``e``, when the server sends it) is
  ``deleted`` as well: the session is gone.
- ``expired`` (flag ``x``) is ``expired``: Redis sends it when it removes the key,
  on access or by its active expiry cycle, not at the instant the TTL ran out.
- ``expire``, ``persist`` (a TTL change) and every other event (``rename_to``,
  hash or list commands on a key that is no session) are not session events.

The flags needed are :data:`NEEDED`; :func:`missing_flags` reads the server's
``notify-keyspace-events`` as Redis writes it (``A`` is an alias of ``g$lshzxetd``).
"""

from __future__ import annotations

import select
import shlex
import typing as t

from redis.exceptions import ResponseError

from sesstool.errors import Unsupported
from sesstool.stores.changes import CHANGED, CREATED, DELETED, EXPIRED, Change, Feed, FeedState

if t.TYPE_CHECKING:
    from sesstool.stores.redis_base import RedisBase

#: keyspace events (K), generic (g: del), string (s: set), expired (x), new key (n)
NEEDED = "Kg$xn"
#: what the ``A`` alias stands for in Redis 7
_ALIAS_A = "g$lshzxetd"
#: notification -> event; ``set`` is decided by whether ``new`` came just before
_EVENTS = {b"del": DELETED, b"evicted": DELETED, b"expired": EXPIRED}
#: keys with a ``new`` not yet followed by their creating event; a bound, so a
#: flood of keys created by commands whose event we never see cannot grow it
_PENDING_MAX = 65536


def missing_flags(current: str) -> str:
    """The flags of :data:`NEEDED` that ``current`` (``notify-keyspace-events``) lacks."""
    have = set(current.replace("A", _ALIAS_A))
    return "".join(flag for flag in NEEDED if flag not in have)


def enable_command(current: str) -> str:
    """The ``CONFIG SET`` value that adds what is missing to ``current``, removing nothing."""
    return current + missing_flags(current)


class KeyEvents:
    """Turns one node's notifications for keys into :class:`Change`\\ s (see the module
    docstring): the per-node state that ``new`` leaves for the next event."""

    def __init__(self, channel_prefix: bytes) -> None:
        self.channel_prefix = channel_prefix
        self._pending: dict[bytes, None] = {}

    def feed(self, channel: t.Any, event: t.Any) -> Change | None:
        if not isinstance(channel, bytes) or not isinstance(event, bytes):
            return None
        if not channel.startswith(self.channel_prefix):
            return None
        key = channel[len(self.channel_prefix) :]
        if event == b"new":
            if len(self._pending) >= _PENDING_MAX:
                self._pending.pop(next(iter(self._pending)))
            self._pending[key] = None
            return None
        created = key in self._pending
        self._pending.pop(key, None)
        if event == b"set":
            return Change(CREATED if created else CHANGED, key)
        kind = _EVENTS.get(event)
        return Change(kind, key) if kind is not None else None


def _glob_escape(prefix: bytes) -> bytes:
    from sesstool.stores.redis_base import _glob_escape as escape

    return escape(prefix)


def check_notifications(store: RedisBase, node: t.Any, *, enable: bool) -> None:
    """Make sure ``node`` sends what the feed needs, or turn it on with ``enable``.

    A server that refuses ``CONFIG`` (renamed, or an ACL without it) is trusted to
    have notifications on: there is no other way to ask.

    :raises Unsupported: when flags are missing and ``enable`` is false, saying the
        exact ``CONFIG SET`` that turns them on; or on Redis before 7 (no ``n`` flag).
    """
    with store._errors():
        try:
            reply = node.config_get("notify-keyspace-events")
        except ResponseError:
            return
        version = str(node.info("server").get("redis_version", ""))
    current = str(reply.get("notify-keyspace-events", ""))
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < 7:
        raise Unsupported(f"{store.describe()}: watch needs Redis 7 or later (this server is {version[:20]}): "
                          "only its new-key events (flag n) tell a created session from a changed one")
    if not missing_flags(current):
        return
    value = enable_command(current)
    if not enable:
        raise Unsupported(
            f"{store.describe()}: keyspace notifications lack what watch needs "
            f"(notify-keyspace-events is {current!r}, it needs {NEEDED!r}); turn them on with "
            f"`redis-cli CONFIG SET notify-keyspace-events {shlex.quote(value)}` or `sesstool watch --enable`"
        )
    with store._errors():
        node.config_set("notify-keyspace-events", value)


def redis_feed(store: RedisBase, prefix: bytes, *, db: int, idle: float, enable: bool) -> Feed:
    """The merged feed of every node of ``store`` (see the module docstring)."""
    nodes = store.nodes()
    for node in nodes:
        check_notifications(store, node, enable=enable)
    channel_prefix = b"__keyspace@%d__:" % db
    pattern = channel_prefix + _glob_escape(prefix) + b"*"
    subscriptions = []
    try:
        for node in nodes:
            with store._errors():
                pubsub = node.pubsub()
                subscriptions.append((pubsub, KeyEvents(channel_prefix)))
                pubsub.psubscribe(pattern)
        for pubsub, _ in subscriptions:
            while True:  # the confirmation, before anything is reported ready
                with store._errors():
                    message = pubsub.get_message(timeout=idle)
                if message is None:
                    yield FeedState.IDLE
                elif message.get("type") == "psubscribe":
                    break
        yield FeedState.READY
        while True:
            got = False
            for pubsub, events in subscriptions:
                # Drained without waiting: redis-py may hold parsed replies that
                # select() cannot see.
                while True:
                    with store._errors():
                        message = pubsub.get_message(timeout=0.0 if len(subscriptions) > 1 else idle)
                    if message is None:
                        break
                    got = True
                    if message.get("type") == "pmessage":
                        change = events.feed(message.get("channel"), message.get("data"))
                        if change is not None:
                            yield change
                    if len(subscriptions) == 1:
                        break
            if got:
                continue
            if len(subscriptions) > 1:
                sockets = [s for s in (_socket(pubsub) for pubsub, _ in subscriptions) if s is not None]
                if select.select(sockets, [], [], idle)[0]:
                    continue
            yield FeedState.IDLE
    finally:
        for pubsub, _ in subscriptions:
            try:
                pubsub.close()
            except Exception:  # closing a feed never fails the command that ends it
                pass


def _socket(pubsub: t.Any) -> t.Any:
    connection = getattr(pubsub, "connection", None)
    return getattr(connection, "_sock", None)
