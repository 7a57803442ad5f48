"""``watch``: a store's change feed as contract records, selected by ``--where``.

A record is ``{"event": ..., "sid": ..., "key": ..., "at": ...}``, ``at`` the
moment sesstool received the event (UTC, ISO 8601), so a feed merged from several
servers is in one clock and in order.

``--where`` selects by data, and only ``created`` and ``changed`` events have
any: the value is read when the event arrives (one ``get``; it may already hold a
later write, or be gone, which matches nothing). ``deleted`` and ``expired``
events carry no data: one is reported when the last data this watch saw for that
session matched (its created or changed event was reported); a session it never
saw match, or never saw at all, is not reported.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass, field

from sesstool.ops.records import decode_item, isolated, key_text
from sesstool.stores.changes import CHANGED, CREATED, KINDS, Change, FeedState

if t.TYPE_CHECKING:
    from sesstool.ops.selectors import Predicate
    from sesstool.stores.base import Store


@dataclass
class WatchCounts:
    """Events reported so far, by kind (the live view's counters)."""

    by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def watch_records(
    store: Store,
    prefix: str,
    *,
    where: Predicate | None = None,
    serializer: str = "auto",
    limit: int | None = None,
    idle: float = 1.0,
    enable: bool = False,
    on_ready: t.Callable[[], None] | None = None,
    counts: WatchCounts | None = None,
) -> t.Generator[dict[str, t.Any] | None, None, None]:
    """Records as events happen, and ``None`` after each ``idle`` seconds without one
    (a display may redraw then); ends after ``limit`` records, else never."""
    if limit is not None and limit <= 0:
        return
    counts = counts if counts is not None else WatchCounts()
    encoded = prefix.encode("utf-8", "surrogateescape")
    matched: set[bytes] = set()
    feed = store.watch(encoded, idle=idle, enable=enable)
    try:
        for step in feed:
            if step is FeedState.READY:
                if on_ready is not None:
                    on_ready()
                continue
            if not isinstance(step, Change):
                yield None
                continue
            if where is not None and not _selected(store, step, where, serializer, matched):
                continue
            key = key_text(step.key)
            counts.by_kind[step.kind] += 1
            yield {"event": step.kind, "sid": key[len(prefix) :] if key.startswith(prefix) else key,
                   "key": key, "at": now_iso()}  # fmt: skip
            if limit is not None and counts.total >= limit:
                return
    finally:
        close = getattr(feed, "close", None)
        if callable(close):
            close()


def _selected(store: Store, change: Change, where: Predicate, serializer: str, matched: set[bytes]) -> bool:
    if change.kind not in (CREATED, CHANGED):
        if change.key in matched:
            matched.discard(change.key)
            return True
        return False
    item = store.get(change.key)
    data = decode_item(item, serializer).data if item is not None else None
    try:
        ok = data is not None and bool(isolated(where, data))
    except Exception:  # one odd session never stops the watch: it just does not match
        ok = False
    if ok:
        matched.add(change.key)
    else:
        matched.discard(change.key)
    return ok
