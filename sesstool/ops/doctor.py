"""``doctor``: a checklist of the store, the stored sessions and the app's session settings.

Each :class:`Check` says what it found and what to do about it. Checks never raise
for what they find: an unreachable store is a failed check, and session data (written
by whoever holds a session) goes through :func:`~sesstool.ops.records.decode_item`,
which isolates every decoding failure. Reading is bounded: at most
:data:`SAMPLE_LIMIT` sessions, and :mod:`sesstool.ops.discovery`'s bounds for the
rest of the keyspace.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field

from sesstool.deadline import DeadlineExceeded
from sesstool.durations import format_duration
from sesstool.errors import StoreError
from sesstool.ops.discovery import survey
from sesstool.ops.records import UNKNOWN, decode_item
from sesstool.stores.base import STRING, Store

OK, WARN, FAIL = "ok", "warn", "fail"
#: Sessions read at most.
SAMPLE_LIMIT = 10_000
#: How near a store's value limit (memcached's item size) a value is "near" it.
NEAR_FRACTION = 0.9


@dataclass
class Check:
    id: str
    level: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "level": self.level, "message": self.message}


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, id: str, level: str, message: str) -> Check:
        check = Check(id, level, message)
        self.checks.append(check)
        return check

    @property
    def failed(self) -> int:
        return sum(c.level == FAIL for c in self.checks)

    def as_json(self) -> dict[str, t.Any]:
        return {"checks": [c.as_json() for c in self.checks], "failed": self.failed,
                "warnings": sum(c.level == WARN for c in self.checks)}


@dataclass
class Sample:
    """What the bounded read of the sessions under the prefix saw."""

    count: int = 0
    complete: bool = True
    serializers: dict[str, int] = field(default_factory=dict)
    no_ttl: int = 0
    near_limit: int = 0
    largest: int = 0
    ttls: list[int] = field(default_factory=list)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def check_reachable(report: Report, store: Store, prefix: str) -> bool:
    """``store.reachable``: one read, timed."""
    started = time.perf_counter()
    try:
        store.get((prefix + "sesstool-doctor-probe").encode("utf-8"))
    except (StoreError, DeadlineExceeded) as e:
        report.add("store.reachable", FAIL, f"{str(e).rstrip('.')}: check --store (or the app's SESSION_REDIS / "
                   "SESSION_MEMCACHED), that the server runs and that this host may reach it")
        return False
    ms = (time.perf_counter() - started) * 1000
    level = OK if ms < 100 else WARN
    hint = "" if level == OK else ": slow; check the network path and the server's load"
    report.add("store.reachable", level, f"{store.describe()} answered in {ms:.1f} ms{hint}")
    return True


def read_sample(store: Store, prefix: str, serializer: str, limit: int = SAMPLE_LIMIT) -> Sample:
    sample = Sample()
    near = int(store.value_limit * NEAR_FRACTION) if store.value_limit else None
    for items in store.scan(prefix.encode("utf-8"), batch=1000):
        for item in items:
            if item.kind != STRING:
                continue
            if sample.count >= limit:
                sample.complete = False
                return sample
            sample.count += 1
            name = decode_item(item, serializer).serializer
            sample.serializers[name] = sample.serializers.get(name, 0) + 1
            sample.largest = max(sample.largest, item.size)
            sample.near_limit += near is not None and item.size >= near
            if item.ttl is None:
                sample.no_ttl += 1
            else:
                sample.ttls.append(item.ttl)
    return sample


def check_sessions(report: Report, store: Store, prefix: str, sample: Sample) -> None:
    """``sessions.present``: sessions under the prefix, else which prefixes hold some."""
    scope = "" if sample.complete else f" (read the first {SAMPLE_LIMIT:,})"
    if sample.count:
        report.add("sessions.present", OK, f"{_plural(sample.count, 'session')} under {prefix!r}{scope}")
        return
    keyspace = survey(store)
    others = [p for p in keyspace.prefixes if p.prefix != prefix]
    scanned = f"{keyspace.listed:,} keys listed" + ("" if keyspace.complete else ", stopped there")
    if not others:
        report.add("sessions.present", WARN, f"no sessions under {prefix!r}, nor under any other prefix "
                   f"({scanned}): a new deployment, or the app writes to another store or database")
        return
    found = ", ".join(f"{p.prefix!r} ({_plural(p.keys, 'key')})" for p in others[:5])
    report.add("sessions.present", FAIL, f"no sessions under {prefix!r}, but session-like values under "
               f"{found} ({scanned}): set --prefix (or the app's SESSION_KEY_PREFIX) to the right one")


def check_sample(report: Report, sample: Sample, value_limit: int | None, app_serializer: str | None,
                 fixed_serializer: str | None = None) -> None:  # fmt: skip
    """Serializers versus the app's (or the one the store fixes), pickle, expiry,
    sizes and undecodable values."""
    if not sample.count:
        return
    mix = ", ".join(f"{name} {n:,}" for name, n in sorted(sample.serializers.items(), key=lambda kv: -kv[1]))
    if fixed_serializer is not None:
        _check_fixed_serializer(report, sample, mix, fixed_serializer)
    else:
        _check_serializers(report, sample, mix, app_serializer)
    _check_contents(report, sample, value_limit)


def _check_fixed_serializer(report: Report, sample: Sample, mix: str, fixed: str) -> None:
    others = {k: n for k, n in sample.serializers.items() if k not in (fixed, UNKNOWN)}
    if others:
        report.add("serializers", WARN, f"found {mix}: the app reads only {fixed} sessions from this store, so "
                   "the others are lost sessions to it")
    else:
        report.add("serializers", OK, f"found {mix}: the {fixed} this store's Flask-Session backend writes")
    if fixed == "pickle":
        report.add("sessions.pickle", OK, "this store holds pickled sessions by design (sesstool decodes them "
                   "without running them); nothing to migrate")


def _check_serializers(report: Report, sample: Sample, mix: str, app_serializer: str | None) -> None:
    expected = app_serializer or "msgpack"
    others = {k: n for k, n in sample.serializers.items() if k not in (expected, UNKNOWN, "pickle")}
    if app_serializer is None:
        report.add("serializers", OK, f"found {mix} (give --app to compare with SESSION_SERIALIZATION_FORMAT)")
    elif others:
        report.add("serializers", WARN, f"found {mix}, the app writes {expected}: Flask-Session 0.8 still reads "
                   f"the others and rewrites each on its next save; `sesstool migrate --to {expected}` does it now")
    else:
        report.add("serializers", OK, f"found {mix}; the app writes {expected}")
    pickled = sample.serializers.get("pickle", 0)
    if pickled:
        report.add("sessions.pickle", WARN, f"{_plural(pickled, 'pickled session')} (from Flask-Session < 0.7): "
                   "unpickling is unsafe for anyone who can write the store, and Flask-Session 1.0 drops the "
                   "pickle fallback; run `sesstool migrate --to msgpack --dry-run`, then without --dry-run")
    else:
        report.add("sessions.pickle", OK, "no pickled sessions")


def _check_contents(report: Report, sample: Sample, value_limit: int | None) -> None:
    unknown = sample.serializers.get(UNKNOWN, 0)
    if unknown:
        report.add("sessions.decode", WARN, f"{_plural(unknown, 'value')} under the prefix cannot be decoded: "
                   "the app starts a new session for each; `sesstool list` shows them as unknown")
    if sample.no_ttl:
        verb = "expires" if sample.no_ttl == 1 else "expire"
        report.add("sessions.expiry", WARN, f"{_plural(sample.no_ttl, 'session')} never {verb}: they stay until "
                   "deleted; `sesstool purge --expired --dry-run` counts the idle ones")
    else:
        report.add("sessions.expiry", OK, "every session has an expiry")
    largest = f"largest value {sample.largest:,} bytes"
    if value_limit is None:
        report.add("sessions.size", OK, largest)
        return
    limit = f"the store's {_bytes(value_limit)} item limit"
    if sample.near_limit:
        report.add("sessions.size", WARN, f"{_plural(sample.near_limit, 'value')} near {limit} "
                   f"(largest {sample.largest:,} bytes): past it the app's save fails; "
                   "`sesstool stats --fields` shows what makes them big")
    else:
        report.add("sessions.size", OK, f"{largest}, well under {limit}")


def _bytes(size: int) -> str:
    # memcached's default item size is 1 MiB: say it the way its -I option does
    return f"{size // 2**20:,} MiB" if size % 2**20 == 0 else f"{size:,} bytes"


def check_lifetime(report: Report, sample: Sample, lifetime: int | None) -> None:
    """``app.lifetime``: ``PERMANENT_SESSION_LIFETIME`` versus the TTLs stored."""
    if lifetime is None or not sample.ttls:
        return
    # A second of slack: a TTL is rounded from milliseconds.
    longer = [ttl for ttl in sample.ttls if ttl > lifetime + 1]
    setting = f"PERMANENT_SESSION_LIFETIME ({format_duration(lifetime)})"
    if longer:
        verb = "lives" if len(longer) == 1 else "live"
        report.add("app.lifetime", WARN, f"{_plural(len(longer), 'session')} {verb} longer than the app's {setting}, "
                   f"up to {format_duration(max(longer))}: written under an older, longer setting; they expire on "
                   "their own, or purge them")
    else:
        report.add("app.lifetime", OK, f"stored TTLs (up to {format_duration(max(sample.ttls))}) fit {setting}")
