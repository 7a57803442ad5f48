"""``purge`` and ``delete``: remove sessions while the app keeps writing them.

Purge walks the keys under the prefix a batch at a time (SCAN, never KEYS). For each
batch it reads what the selectors need, keeps the sessions that match every
selector, and deletes them with the store's conditional delete: a session whose
value changed, or whose TTL grew (the app refreshed it), after it was selected is
kept. On Redis that compare runs inside a Lua script next to the UNLINK.

- ``--expired`` / ``--idle`` read each key's idle time before anything else touches
  the key (a GET resets it). Alone, they never read a value: each batch is one
  atomic "unlink the keys still idle" step (a dry run only counts), so a dry run or
  the count before the prompt leaves idle times as they were. With ``--where``,
  ``--empty`` or ``--backup`` the values of idle keys must be read, which resets
  their idle time: a dry run of such a purge makes them look fresh to the next run.
- ``--empty`` / ``--where`` decode each value; one nothing decodes never matches.
- ``--all`` alone is the fast path: every key under the prefix, any type, is
  unlinked as SCAN returns it, with nothing decoded and nothing compared (there is
  no selection a change could invalidate). With ``--backup`` it takes the
  conditional path, since the backup needs the values.

When the store fails part way, the :class:`~sesstool.errors.StoreError` says how
many sessions were deleted before; nothing else was touched, and running the same
purge again finishes the job.
"""

from __future__ import annotations

import dataclasses
import typing as t
from dataclasses import dataclass, field

from sesstool.durations import format_duration
from sesstool.errors import InvalidInput, NotFound, StoreError, UndecodableValue
from sesstool.ops.pacing import DEFAULT_BATCH, Pacer
from sesstool.ops.records import Decoded, decode_item, decode_value, is_empty, isolated
from sesstool.ops.selectors import Predicate
from sesstool.stores.base import MISSING, STRING, Capability, ExpiredPurge, Store, StoredItem

#: Flask's PERMANENT_SESSION_LIFETIME default: 31 days.
DEFAULT_LIFETIME = 31 * 86400


@dataclass
class Criteria:
    """The selectors of one purge; a session must match all that are given."""

    expired: bool = False
    lifetime: int = DEFAULT_LIFETIME
    empty: bool = False
    idle: int | None = None
    where: Predicate | None = None
    where_text: tuple[str, ...] = ()
    everything: bool = False
    #: Redis expires keys itself, so --expired there means "no TTL and idle beyond the
    #: lifetime"; a store that keeps expired items selects those with ttl 0. :func:`purge`
    #: sets this from the store's :attr:`~sesstool.stores.base.Store.expired_purge`.
    expiry_by_idle: bool = True

    def on(self, store: Store) -> Criteria:
        """These criteria as ``store`` applies them: what ``--expired`` selects there.

        :raises Unsupported: for ``--expired`` on a store that cannot tell expired sessions.
        """
        if not self.expired:
            return self
        by_idle = store.require_expired_purge() is ExpiredPurge.IDLE_WITHOUT_TTL
        return dataclasses.replace(self, expiry_by_idle=by_idle)

    def given(self) -> bool:
        return self.expired or self.empty or self.idle is not None or self.where is not None or self.everything

    @property
    def min_idle(self) -> int | None:
        """Keys must have been idle for more than this many seconds (``None``: any)."""
        limits = [self.lifetime] if self.expired and self.expiry_by_idle else []
        limits += [self.idle] if self.idle is not None else []
        return max(limits) if limits else None

    @property
    def no_expiry_only(self) -> bool:
        return self.expired and self.expiry_by_idle

    @property
    def needs_data(self) -> bool:
        return self.empty or self.where is not None

    @property
    def expired_alone(self) -> bool:
        """``--expired`` on a store that keeps expired items, with no other selector:
        the store selects and deletes them itself, reading no value."""
        return self.expired and not self.expiry_by_idle and not (self.needs_data or self.idle is not None)

    @property
    def fast_all(self) -> bool:
        return self.everything and not (self.expired or self.empty or self.idle is not None or self.where)

    def describe(self) -> str:
        parts = []
        if self.expired and self.expiry_by_idle:
            parts.append(f"without expiry and idle over {format_duration(self.lifetime)}")
        elif self.expired:
            parts.append("past their expiry")
        if self.idle is not None:
            parts.append(f"idle over {format_duration(self.idle)}")
        if self.empty:
            parts.append("empty")
        parts += [f"--where {expr}" for expr in self.where_text]
        return ", ".join(parts) if parts else "all"


@dataclass
class PurgeResult:
    matched: int = 0
    deleted: int = 0
    scanned: int = 0
    dry_run: bool = False
    other_types: dict[str, int] = field(default_factory=dict)
    #: Sessions a data selector or the backup had to decode and could not (never
    #: matched by a data selector; written to the backup as raw bytes).
    undecodable: int = 0

    @property
    def kept(self) -> int:
        """Matched sessions not deleted because they changed after being selected."""
        return 0 if self.dry_run else self.matched - self.deleted

    def as_json(self) -> dict[str, t.Any]:
        return {"matched": self.matched, "deleted": self.deleted, "dry_run": self.dry_run,
                "undecodable": self.undecodable}


def reclaims_expired(store: Store, criteria: Criteria) -> bool:
    """Whether ``--expired`` on ``store`` has its servers free the items past their
    expiry (memcached). Nothing can read those, so no dry run can count them: a
    prompt before such a purge has no count to show."""
    return criteria.expired and store.require_expired_purge() is ExpiredPurge.SERVER_RECLAIM


def purge(
    store: Store,
    prefix: str,
    criteria: Criteria,
    *,
    serializer: str = "auto",
    dry_run: bool = False,
    batch: int = DEFAULT_BATCH,
    pacer: Pacer | None = None,
    on_selected: t.Callable[[list[Decoded]], int | None] | None = None,
    on_batch: t.Callable[[PurgeResult], None] | None = None,
) -> PurgeResult:
    """Delete every session under ``prefix`` that matches ``criteria``.

    :param on_selected: called with each batch's selected sessions before any of them
        is deleted (``--backup`` writes them there); returns how many of them it could
        not decode (it must write those too, as raw bytes, or raise).
    :param on_batch: called with the running result after each batch (progress).
    :raises StoreError: when the store fails; its ``done`` holds ``deleted`` and
        ``matched`` so far and its message says how many were deleted.
    """
    result = PurgeResult(dry_run=dry_run)
    encoded_prefix = prefix.encode("utf-8")
    criteria = criteria.on(store)
    if criteria.idle is not None:
        store.require(Capability.IDLE_TIME, "purge --idle")
    if reclaims_expired(store, criteria):
        # An item past its expiry can no longer be read or listed by anyone here
        # (memcached), so no other selector can apply to it; the servers free them.
        if criteria.needs_data or criteria.idle is not None or on_selected is not None:
            raise InvalidInput(
                f"on {store.describe()}, --expired selects items no client can read any more: it cannot be "
                "combined with --where, --empty, --idle or --backup"
            )
        if not dry_run:
            result.deleted = result.matched = store.reclaim_expired()
        return result
    try:
        if criteria.fast_all and on_selected is None:
            batches: t.Iterator[tuple[int, list[Decoded]]] = _unlink_everything(store, encoded_prefix, batch, result)
        elif criteria.min_idle is not None:
            batches = _idle_batches(store, encoded_prefix, batch, criteria, serializer, result,
                                    decode_all=on_selected is not None)
        elif criteria.expired_alone and on_selected is None:
            batches = _delete_expired(store, encoded_prefix, batch, result)
        else:
            batches = _data_batches(store, encoded_prefix, batch, criteria, serializer, result,
                                    decode_all=on_selected is not None)
        for scanned, selected in batches:
            result.scanned += scanned
            if selected:
                result.matched += len(selected)
                if on_selected is not None:
                    result.undecodable += on_selected(selected) or 0
                if not dry_run:
                    result.deleted += store.delete_if_unchanged([d.item for d in selected])
            if pacer is not None:
                pacer.pace(scanned)
            if on_batch is not None:
                on_batch(result)
    except StoreError as e:
        raise StoreError(
            f"{e.message.rstrip('.')}; purge stopped after deleting {result.deleted:,} of {result.matched:,} "
            f"matched sessions (a batch in flight may also be gone); run it again to finish",
            done={"deleted": result.deleted, "matched": result.matched, "scanned": result.scanned},
        ) from e
    return result


def _unlink_everything(
    store: Store, prefix: bytes, batch: int, result: PurgeResult
) -> t.Iterator[tuple[int, list[Decoded]]]:
    """``--all`` alone: unlink keys as SCAN returns them; nothing is selected one by one."""
    if result.dry_run:
        for keys in store.scan_keys(prefix, batch=batch):
            result.matched += len(keys)
            yield len(keys), []
        return
    for scanned, deleted in store.unlink_prefix(prefix, batch=batch):
        # SCAN may return a key twice: only keys that still existed count as matched.
        result.matched += deleted
        result.deleted += deleted
        yield scanned, []


def _delete_expired(
    store: Store, prefix: bytes, batch: int, result: PurgeResult
) -> t.Iterator[tuple[int, list[Decoded]]]:
    for scanned, expired, deleted in store.delete_expired(prefix, batch=batch, dry_run=result.dry_run):
        result.matched += expired
        result.deleted += deleted
        yield scanned, []


def _idle_batches(store: Store, prefix: bytes, batch: int, criteria: Criteria, serializer: str,
                  result: PurgeResult, *, decode_all: bool) -> t.Iterator[tuple[int, list[Decoded]]]:
    """``--expired`` / ``--idle``: idle time is read first, and values only when a data
    selector or the backup needs them (reading a value resets its idle time)."""
    min_idle = t.cast(int, criteria.min_idle)
    read_values = criteria.needs_data or decode_all
    for keys in store.scan_keys(prefix, batch=batch):
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            if read_values:
                pairs = store.fetch_idle(chunk, min_idle=min_idle, no_expiry_only=criteria.no_expiry_only)
                yield len(chunk), _select([item for item, _ in pairs], criteria, serializer, result, decode_all)
            elif result.dry_run:
                pairs = store.fetch_idle(chunk, min_idle=min_idle, no_expiry_only=criteria.no_expiry_only,
                                            values=False)
                strings = _count_kinds([item for item, _ in pairs], result)
                result.matched += strings
                yield len(chunk), []
            else:
                # Selected and deleted in one atomic step per key: a session used since
                # is no longer idle and stays.
                deleted, others = store.delete_idle(chunk, min_idle=min_idle,
                                                       no_expiry_only=criteria.no_expiry_only)
                for kind, count in others.items():
                    result.other_types[kind] = result.other_types.get(kind, 0) + count
                result.matched += deleted
                result.deleted += deleted
                yield len(chunk), []


def _count_kinds(items: list[StoredItem], result: PurgeResult) -> int:
    strings = 0
    for item in items:
        if item.kind == STRING:
            strings += 1
        elif item.kind != MISSING:
            result.other_types[item.kind] = result.other_types.get(item.kind, 0) + 1
    return strings


def _data_batches(store: Store, prefix: bytes, batch: int, criteria: Criteria, serializer: str,
                  result: PurgeResult, *, decode_all: bool) -> t.Iterator[tuple[int, list[Decoded]]]:
    for items in store.scan(prefix, batch=batch):
        yield len(items), _select(items, criteria, serializer, result, decode_all)


def _select(items: t.Iterable[StoredItem], criteria: Criteria, serializer: str, result: PurgeResult,
            decode_all: bool) -> list[Decoded]:
    """The items that match the data selectors (the idle ones were chosen by the store)."""
    where, empty, needs_data = criteria.where, criteria.empty, criteria.needs_data
    # Stores that keep items past their expiry report them with ttl 0 (SQL, files).
    expired_only = criteria.expired and not criteria.expiry_by_idle
    selected = []
    for item in items:
        kind = item.kind
        if kind != STRING:
            if kind != MISSING:
                result.other_types[kind] = result.other_types.get(kind, 0) + 1
            continue
        value = item.value
        if value is None:
            continue
        if expired_only and item.ttl != 0:
            continue
        if needs_data:
            name, data = _decode(value, serializer)
            if data is None:
                result.undecodable += 1
                continue
            if empty and not is_empty(data):
                continue
            if where is not None:
                try:
                    if not isolated(where, data):
                        continue
                except UndecodableValue:
                    result.undecodable += 1
                    continue
            selected.append(Decoded(item, name, data))
        elif decode_all:
            selected.append(decode_item(item, serializer))
        else:
            selected.append(Decoded(item, "unknown", None))
    return selected


def _decode(value: bytes, serializer: str) -> tuple[str, dict[t.Any, t.Any] | None]:
    # The hot path of purge --where: most values are Flask-Session 0.8 msgpack maps,
    # which one direct msgpack decode settles (a pickle starts 0x80 0x02..0x05, and a
    # msgpack map that starts 0x80 is the one-byte empty map).
    if serializer == "auto" and value[0] in _MSGPACK_MAP and (value[0] != 0x80 or len(value) == 1):
        name, data = decode_value(value, "msgpack")
        if data is not None:
            return name, data
    return decode_value(value, serializer)


_MSGPACK_MAP = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])


# -- delete ------------------------------------------------------------------------------


@dataclass
class DeleteResult:
    deleted: int = 0
    missing: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, t.Any]:
        return {"deleted": self.deleted, "missing": self.missing}


def delete_sessions(
    store: Store,
    keys: t.Iterable[tuple[str, bytes]],
    *,
    batch: int = DEFAULT_BATCH,
    pacer: Pacer | None = None,
) -> DeleteResult:
    """Delete named sessions (``(name, key)`` pairs), a batch per round trip.

    Every session that exists is deleted; the names of those that did not are
    collected, and the caller reports them (exit 1).

    :raises StoreError: when the store fails, saying how many were deleted before.
    """
    result = DeleteResult()
    pending: list[tuple[str, bytes]] = []
    seen: set[bytes] = set()

    def flush() -> None:
        existed = store.delete_each([key for _, key in pending])
        result.deleted += sum(existed)
        result.missing += [name for (name, _), found in zip(pending, existed, strict=True) if not found]
        if pacer is not None:
            pacer.pace(len(pending))
        pending.clear()

    try:
        for name, key in keys:
            if key in seen:  # the same session named twice is deleted once
                continue
            seen.add(key)
            pending.append((name, key))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    except StoreError as e:
        raise StoreError(f"{e.message.rstrip('.')}; {result.deleted:,} sessions were deleted before the failure",
                         done={"deleted": result.deleted}) from e
    return result


def missing_error(result: DeleteResult, store: Store) -> NotFound:
    names = ", ".join(result.missing[:5]) + (f" and {len(result.missing) - 5} more" if len(result.missing) > 5 else "")
    noun = "session" if len(result.missing) == 1 else "sessions"
    return NotFound(f"no {noun} {names} in {store.describe()} ({result.deleted:,} deleted)")
