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
from sesstool.ops.pacing import DEFAULT_BATCH
from sesstool.ops.records import (
    UNKNOWN,
    Decoded,
    RecordBatches,
    decode_item,
    decode_value,
    isolated,
    key_text,
    make_record,
    serializer_names,
    sid_start,
    was_unrenderable,
)
from sesstool.ops.selectors import Predicate
from sesstool.stores.base import MISSING, STRING, Store

SORT_FIELDS = ("key", "ttl", "size")


@dataclass
class ScanCounters:
    """What a scan saw besides the sessions it yielded, for warnings and progress."""

    scanned: int = 0
    matched: int = 0
    other_types: dict[str, int] = field(default_factory=dict)
    #: Sessions that could not be decoded or rendered (reported as ``unknown``, or
    #: left out by a ``--where``, which cannot match them).
    undecodable: int = 0


@dataclass
class Scan:
    """One read-only pass over the sessions under ``prefix``: how to decode them, how
    many keys a round trip asks for, and where it reports what it saw.

    :param on_batch: called with the number of keys of each store batch, once that
        batch is handled (a progress line, a pacer).
    """

    store: Store
    prefix: str
    serializer: str = "auto"
    batch: int = DEFAULT_BATCH
    counters: ScanCounters = field(default_factory=ScanCounters)
    on_batch: t.Callable[[int], None] | None = None


def iter_decoded(scan: Scan, where: Predicate | None = None) -> t.Iterator[Decoded]:
    """Every session of ``scan`` that ``where`` selects, decoded.

    Keys holding other Redis types are not sessions: they are counted in
    ``counters.other_types`` and skipped. Values nothing can decode are yielded
    as ``unknown`` unless a ``where`` is given (an undecodable value has no fields);
    either way they are counted in ``counters.undecodable``.
    """
    counters, serializer, on_batch = scan.counters, scan.serializer, scan.on_batch
    decode = decode_value
    store, encoded = scan.store, scan.prefix.encode("utf-8")
    # A --where keeps few sessions: the store may read the TTLs of those alone.
    reads = store.scan(encoded, batch=scan.batch) if where is None else store.scan_values(encoded, batch=scan.batch)
    for items in reads:
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


def iter_plain_records(scan: Scan, limit: int | None = None) -> RecordBatches:
    """Records without data for every session of ``scan``: the plain ``list``.

    The same records as ``iter_records(iter_decoded(...))``, built a store batch
    at a time in one tight loop, because this is the path that runs over millions
    of keys (``output`` encodes each batch with one call).
    """
    return RecordBatches(_plain_batches(scan.store, scan.prefix, scan.serializer, scan.counters, scan.batch, limit,
                                        scan.on_batch))


def _plain_batches(
    store: Store,
    prefix: str,
    serializer: str,
    counters: ScanCounters,
    batch: int,
    limit: int | None,
    on_batch: t.Callable[[int], None] | None,
) -> t.Iterator[list[dict[str, t.Any]]]:
    prefix_length = sid_start(store, prefix)
    left = limit
    for keys, values, pttls, kinds in store.scan_columns(prefix.encode("utf-8"), batch=batch):
        counters.scanned += len(keys)
        for kind in kinds.values():
            counters.other_types[kind] = counters.other_types.get(kind, 0) + 1
        if None in values:
            keys, values, pttls = _present(keys, values, pttls)
        names = serializer_names(t.cast(list[bytes], values), serializer)
        unknown = names.count(UNKNOWN)
        try:
            texts = [key.decode("utf-8") for key in keys]
        except UnicodeDecodeError:
            texts = [key_text(key) for key in keys]
        records = [
            {
                "sid": None if prefix_length is None else key[prefix_length:],
                "key": key,
                "ttl": None if pttl < 0 else (pttl + 500) // 1000,
                "size": len(value),  # type: ignore[arg-type]
                "serializer": name,
            }
            for key, value, pttl, name in zip(texts, values, pttls, names, strict=True)
        ]
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


def _present(keys: list[bytes], values: list[bytes | None],
             pttls: list[int]) -> tuple[list[bytes], list[bytes | None], list[int]]:  # fmt: skip
    """The columns without the keys that hold no value (gone, or another type)."""
    kept = [i for i, value in enumerate(values) if value is not None]
    return [keys[i] for i in kept], [values[i] for i in kept], [pttls[i] for i in kept]


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
