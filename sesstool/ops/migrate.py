"""``migrate --to msgpack|json``: re-encode sessions in place, keeping their TTL.

Flask-Session 0.7 replaced pickle with msgpack (or json). It still reads pickled
sessions for now, but that fallback is going away, and a pickle can name any class.
Migrate rewrites each session that is not yet in the target format, atomically per
session (compare-and-set keeps the TTL, and a session the app wrote meanwhile is
read again and converted afresh).

A session holding a value the target cannot hold exactly (see
:mod:`sesstool.codecs.fidelity`: a datetime, Markup, tuple, ...) is left as it is and its
values are listed, unless ``lossy`` asks for the documented conversion. With
``dry_run`` nothing is written: the report is the pre-upgrade check, counting
sessions per serializer and naming every value the target cannot hold.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from sesstool.codecs.fidelity import Problem, encode_exact, find_problems, make_holdable
from sesstool.errors import StoreError, UndecodableValue, Unsupported
from sesstool.ops.pacing import DEFAULT_BATCH, Pacer
from sesstool.ops.records import UNKNOWN, decode_value, isolated, key_text
from sesstool.stores.base import MISSING, STRING, Store, StoredItem

TARGETS = ("msgpack", "json")
#: How many example sessions each problem names.
EXAMPLES = 3
#: How often one session is read again when the app keeps writing it.
RETRIES = 3


@dataclass
class ProblemCount:
    sessions: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class MigrateReport:
    target: str
    dry_run: bool
    lossy: bool = False
    scanned: int = 0
    serializers: dict[str, int] = field(default_factory=dict)
    already: int = 0
    convertible: int = 0
    migrated: int = 0
    converted_lossily: int = 0
    blocked: int = 0
    changed: int = 0
    problems: dict[Problem, ProblemCount] = field(default_factory=dict)
    other_types: dict[str, int] = field(default_factory=dict)

    def note_problems(self, key: bytes, problems: t.Iterable[Problem]) -> None:
        for problem in dict.fromkeys(problems):
            count = self.problems.setdefault(problem, ProblemCount())
            count.sessions += 1
            if len(count.examples) < EXAMPLES:
                count.examples.append(key_text(key))

    def as_json(self) -> dict[str, t.Any]:
        return {
            "to": self.target,
            "dry_run": self.dry_run,
            "lossy": self.lossy,
            "scanned": self.scanned,
            "serializers": dict(sorted(self.serializers.items(), key=lambda kv: (-kv[1], kv[0]))),
            "already": self.already,
            "convertible": self.convertible,
            "migrated": self.migrated,
            "converted_lossily": self.converted_lossily,
            "blocked": self.blocked,
            "undecodable": self.serializers.get(UNKNOWN, 0),
            "changed_meanwhile": self.changed,
            "problems": [
                {"path": p.path, "type": p.kind, "sessions": c.sessions, "examples": c.examples}
                for p, c in sorted(self.problems.items(), key=lambda pc: (-pc[1].sessions, pc[0]))
            ],
        }


def migrate(
    store: Store,
    prefix: str,
    target: str,
    *,
    serializer: str = "auto",
    dry_run: bool = False,
    lossy: bool = False,
    batch: int = DEFAULT_BATCH,
    pacer: Pacer | None = None,
    on_batch: t.Callable[[MigrateReport], None] | None = None,
) -> MigrateReport:
    """Re-encode every session under ``prefix`` that is not ``target`` yet.

    :raises StoreError: when the store fails, saying how many were migrated before.
    """
    if target not in TARGETS:
        raise ValueError(target)
    if store.value_serializer is not None and store.value_serializer != target:
        raise Unsupported(f"{store.describe()}: the app reads only {store.value_serializer} sessions from this "
                          f"store; migrate --to {target} would make every session unreadable to it")
    report = MigrateReport(target, dry_run, lossy)
    try:
        for items in store.scan(prefix.encode("utf-8"), batch=batch):
            report.scanned += len(items)
            writes = [w for w in (_plan(item, report, serializer) for item in items) if w is not None]
            if writes and not dry_run:
                _write(store, writes, report, serializer)
            if pacer is not None:
                pacer.pace(len(items))
            if on_batch is not None:
                on_batch(report)
    except StoreError as e:
        raise StoreError(f"{e.message.rstrip('.')}; migrate stopped after re-encoding {report.migrated:,} sessions; "
                         "run it again to finish", done={"migrated": report.migrated}) from e
    return report


def _plan(
    item: StoredItem, report: MigrateReport, serializer: str, *, count: bool = True
) -> tuple[StoredItem, bytes] | None:
    """The new value for one session, or ``None`` when it stays as it is."""
    if item.kind != STRING or item.value is None:
        if count and item.kind not in (STRING, MISSING):
            report.other_types[item.kind] = report.other_types.get(item.kind, 0) + 1
        return None
    name, data = decode_value(item.value, serializer)
    if data is not None and name != report.target:
        try:
            planned = isolated(_convert, data, report.target, report.lossy)
        except UndecodableValue:
            # Decoded, but its data breaks the conversion itself: one odd session
            # is reported as undecodable and left as it is, never a crash.
            name, data = UNKNOWN, None
    if count:
        report.serializers[name] = report.serializers.get(name, 0) + 1
    if data is None:
        return None
    if name == report.target:
        if count:
            report.already += 1
        return None
    raw, problems, lossy = planned
    if problems:
        if count:
            report.blocked += 1
            report.note_problems(item.key, problems)
        return None
    if count:
        report.convertible += 1
        report.converted_lossily += lossy
    return item, t.cast(bytes, raw)


def _convert(data: dict[t.Any, t.Any], target: str, lossy: bool) -> tuple[bytes | None, list[Problem], bool]:
    """``data`` encoded as ``target`` (``None`` and the problems when it cannot be held),
    and whether the documented lossy conversion was used."""
    problems = find_problems(data, target)
    converted = False
    if problems and lossy:
        data, _, problems = make_holdable(data, target)
        converted = True
    if problems:
        return None, problems, converted
    try:
        return encode_exact(data, target), [], converted
    except UndecodableValue:
        return None, [Problem("", "a value " + target + " would change")], converted


def _write(store: Store, writes: list[tuple[StoredItem, bytes]], report: MigrateReport, serializer: str) -> None:
    for _ in range(RETRIES + 1):
        results = store.compare_and_set_many(writes)
        report.migrated += sum(results)
        stale = [item.key for (item, _), ok in zip(writes, results, strict=True) if not ok]
        if not stale:
            return
        # The app wrote these meanwhile: convert what it wrote (it may be msgpack now).
        writes = [w for w in (_plan(item, report, serializer, count=False) for item in store.fetch(stale)) if w]
        if not writes:
            return
    report.changed += len(writes)
