"""What a change feed (:meth:`sesstool.stores.base.Store.watch`) yields.

A feed yields :class:`Change` for each event under the prefix, and a
:class:`FeedState` when there is something to say that is not an event:
``READY`` once the subscription is confirmed (every change from then on is
reported, so a test or a script may start writing), ``IDLE`` when nothing
happened for the feed's ``idle`` seconds. The idle ticks are what keeps a feed
that waits indefinitely by design compatible with :mod:`sesstool.deadline`: no
single step of the iterator waits longer than ``idle``, so a step that does
stall past ``--timeout`` is a server that stopped answering mid-message, exactly
what the deadline is for.
"""

from __future__ import annotations

import enum
import typing as t
from dataclasses import dataclass

#: the event kinds, as the contract spells them
CREATED = "created"
CHANGED = "changed"
DELETED = "deleted"
EXPIRED = "expired"
KINDS = (CREATED, CHANGED, DELETED, EXPIRED)


class FeedState(enum.Enum):
    """A step of a feed that is not an event."""

    #: subscribed on every server: changes from now on are all reported
    READY = "ready"
    #: nothing happened for ``idle`` seconds (or the feed is still getting ready)
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class Change:
    """One event: ``kind`` (one of :data:`KINDS`) for the full ``key``."""

    kind: str
    key: bytes


Feed = t.Iterator["Change | FeedState"]
