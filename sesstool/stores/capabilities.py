"""What a store can do beyond the operations every store has.

A store declares its :class:`Capability` set; an operation it lacks raises
:class:`~sesstool.errors.Unsupported`, which the CLI reports in one line (exit 2).
Commands never ask which store they hold: they ask for a capability
(:meth:`sesstool.stores.base.Store.require`) or just call the operation.
"""

from __future__ import annotations

import enum


class Capability(enum.Enum):
    """One optional ability; the value says, after "this store cannot", what is missing."""

    #: set, add, delete and every other write (an RDB snapshot has none)
    WRITE = "write"
    #: expire and expire_at: a TTL per key, set from outside
    PER_KEY_TTL = "set a key's expiry"
    #: persist: a key that never expires
    PERSIST = "remove a key's expiry"
    #: compare_and_set: replace a value only if unchanged since read
    COMPARE_AND_SET = "replace a value only if it is unchanged"
    #: delete_if_unchanged: delete only if unchanged since read
    CONDITIONAL_DELETE = "delete a value only if it is unchanged"
    #: idle_seconds, fetch_idle, delete_idle: time since last access, read without touching
    IDLE_TIME = "report idle time"
    #: reclaim_expired: the servers free items past expiry no client can read any more
    RECLAIM_EXPIRED = "free items past their expiry"
    #: keys reveal the session id (a file store names files by a hash: listings say sid null)
    ENUMERABLE_IDS = "name the session ids it holds"
    #: watch: a feed of changes as they happen
    CHANGE_FEED = "report changes as they happen"
    #: a selection the server evaluates itself (SQL WHERE), not the client batch by batch
    SERVER_FILTER = "filter on the server"


class ExpiredPurge(enum.Enum):
    """What ``purge --expired`` selects on a store, since stores expire differently."""

    #: Redis: expired keys vanish; what is left to purge are keys without TTL idle
    #: longer than the session lifetime (needs :attr:`Capability.IDLE_TIME`)
    IDLE_WITHOUT_TTL = "idle-without-ttl"
    #: memcached: items past expiry are invisible to every reader; the servers free
    #: them (:meth:`~sesstool.stores.base.Store.reclaim_expired`), nothing counts them first
    SERVER_RECLAIM = "server-reclaim"
    #: SQL and files: items past expiry stay, listed with ttl 0; those are deleted
    TTL_ZERO = "ttl-zero"
