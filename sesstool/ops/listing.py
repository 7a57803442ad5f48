"""Stream the sessions under a prefix: decode, select and shape them into records.

Everything here works one store batch at a time, so memory stays flat however
many sessions the store holds (``sort`` is the exception: it has to see them all,
and keeps only the sort key and the record).
"""

from __future__ import annotations

import heapq
import itertools
import typing as t
from dataclasses import dataclass, field

from sesstool.errors import InvalidInput, NotFound, UndecodableValue
from sesstool.ops.records import (
    UNKNOWN,
    Decoded,
    RecordBatches,
    decode_item,
    decode_value,
    isolated,
    key_text,
    make_record,
    sid_start,
    was_unrenderable,
)
from sesstool.ops.selectors import Predicate
from sesstool.stores.base import MISSING, STRING, Store

SORT_FIELDS = ("key", "ttl", "size")
DEFAULT_BATCH = 1000


@dataclass
class ScanCounters:
    """What a scan saw besides the sessions it yielded, for warnings and progress."""

    scanned: int = 0
    matched: int = 0
    other_types: dict[str, int] = field(default_factory=dict)
    #: Sessions that could not be decoded or rendered (reported as ``unknown``, or
    #: left out by a ``--where``, which cannot match them).
    undecodable: int = 0


def iter_decoded(
    store: Store,
    prefix: str,
    *,
    serializer: str = "auto",
    where: Predicate | None = None,
    counters: ScanCounters | None = None,
    batch: int = DEFAULT_BATCH,
    on_batch: t.Callable[[int], None] | None = None,
) -> t.Iterator[Decoded]:
    """Every session under ``prefix`` that ``where`` selects, decoded.

    Keys holding other Redis types are not sessions: they are counted in
    ``counters.other_types`` and skipped. Values nothing can decode are yielded
    as ``unknown`` unless a ``where`` is given (an undecodable value has no fields);
    either way they are counted in ``counters.undecodable``.
    """
    counters = counters if counters is not None else ScanCounters()
    decode = decode_value
    encoded = prefix.encode("utf-8")
    # A --where keeps few sessions: the store may read the TTLs of those alone.
    for items in store.scan(encoded, batch=batch) if where is None else store.scan_values(encoded, batch=batch):
        counters.scanned += len(items)
        selected = []
        for item in items:
            if item.kind != STRING:
                counters.other_types[item.kind] = counters.other_types.get(item.kind, 0) + 1
                continue
            name, data = decode(item.value, serializer)  # type: ignore[arg-type]
            if data is None:
                counters.undecodable += 1
            if where is None:
                counters.matched += 1
                yield Decoded(item, name, data)
                continue
            if data is None:
                continue
            try:
                if not isolated(where, data):
                    continue
            except UndecodableValue:
                counters.undecodable += 1  # its values cannot even be compared: it cannot match
                continue
            selected.append(Decoded(item, name, data))
        if selected:
            store.read_ttls([d.item for d in selected])
            selected = [d for d in selected if d.item.kind != MISSING]  # gone since
            counters.matched += len(selected)
            yield from selected
        if on_batch is not None:
            on_batch(len(items))


def iter_plain_records(
    store: Store,
    prefix: str,
    *,
    serializer: str = "auto",
    counters: ScanCounters | None = None,
    batch: int = DEFAULT_BATCH,
    limit: int | None = None,
    on_batch: t.Callable[[int], None] | None = None,
) -> RecordBatches:
    """Records without data for every session under ``prefix``: the plain ``list``.

    The same records as ``iter_records(iter_decoded(...))``, built a store batch
    at a time in one tight loop, because this is the path that runs over millions
    of keys (``output`` encodes each batch with one call).
    """
    counters = counters if counters is not None else ScanCounters()
    return RecordBatches(_plain_batches(store, prefix, serializer, counters, batch, limit, on_batch))


def _plain_batches(
    store: Store,
    prefix: str,
    serializer: str,
    counters: ScanCounters,
    batch: int,
    limit: int | None,
    on_batch: t.Callable[[int], None] | None,
) -> t.Iterator[list[dict[str, t.Any]]]:
    decode = decode_value
    prefix_length = sid_start(store, prefix)
    left = limit
    for keys, values, pttls, kinds in store.scan_columns(prefix.encode("utf-8"), batch=batch):
        counters.scanned += len(keys)
        for kind in kinds.values():
            counters.other_types[kind] = counters.other_types.get(kind, 0) + 1
        records = []
        unknown = 0
        for key_bytes, value, pttl in zip(keys, values, pttls, strict=True):
            if value is None:
                continue
            try:
                key = key_bytes.decode("utf-8")
            except UnicodeDecodeError:
                key = key_text(key_bytes)
            name = decode(value, serializer)[0]
            if name == UNKNOWN:
                unknown += 1
            records.append(
                {
                    "sid": None if prefix_length is None else key[prefix_length:],
                    "key": key,
                    "ttl": None if pttl < 0 else (pttl + 500) // 1000,
                    "size": len(value),
                    "serializer": name,
                }
            )
        counters.matched += len(records)
        if left is not None and len(records) > left:
            unknown = sum(record["serializer"] == UNKNOWN for record in records[:left])
            records = records[:left]
        if left is not None:
            left -= len(records)
        counters.undecodable += unknown
        yield records
        if on_batch is not None:
            on_batch(len(keys))
        if left == 0:
            return


def iter_records(
    decoded: t.Iterable[Decoded],
    prefix: str,
    *,
    with_data: bool = False,
    sort: str | None = None,
    limit: int | None = None,
    counters: ScanCounters | None = None,
    ids: bool = True,
) -> t.Iterator[dict[str, t.Any]]:
    """Contract records for ``decoded``, optionally sorted and limited.

    :param ids: whether the keys reveal the sids (see :func:`~sesstool.ops.records.sid_start`).

    A session whose data cannot be rendered is reported as ``unknown`` and counted
    in ``counters.undecodable`` (the ones nothing decodes were counted on the way in).
    """
    prefix_length = len(prefix) if ids else None
    counters = counters if counters is not None else ScanCounters()

    def record(d: Decoded) -> dict[str, t.Any]:
        made = make_record(d, prefix_length, with_data=with_data)
        if with_data and was_unrenderable(d, made):
            counters.undecodable += 1
        return made

    if sort is None:
        records = (record(d) for d in decoded)
        return itertools.islice(records, limit) if limit is not None else records
    if sort not in SORT_FIELDS:
        raise InvalidInput(f"cannot sort by {sort!r}: choose {', '.join(SORT_FIELDS)}")
    keyed = ((_sort_key(d, sort), index, d) for index, d in enumerate(decoded))
    chosen = heapq.nsmallest(limit, keyed) if limit is not None else sorted(keyed)
    return (record(d) for _, _, d in chosen)


def _sort_key(decoded: Decoded, field: str) -> t.Any:
    item = decoded.item
    if field == "key":
        return item.key
    if field == "size":
        return item.size
    # Sessions without expiry sort after every session that has one.
    return (item.ttl is None, item.ttl or 0)


def get_decoded(store: Store, key: bytes, serializer: str = "auto") -> Decoded:
    """One session by its full key.

    :raises NotFound: when the key does not exist.
    :raises UndecodableValue: when the key holds another type than a string value.
    """
    item = store.get(key)
    if item is None:
        raise NotFound(f"no session {key.decode('utf-8', 'backslashreplace')!r} in {store.describe()}")
    if item.kind != STRING:
        raise UndecodableValue(
            f"key {key.decode('utf-8', 'backslashreplace')!r} holds a Redis {item.kind}, not a session"
        )
    return decode_item(item, serializer)
