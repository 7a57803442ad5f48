"""What decoding one stored value may cost, and the checks that enforce it.

Stored values are written by whoever can write to the store, so a decoder must not
let a few hundred bytes turn into gigabytes, minutes of CPU, or a value that
crashes whatever shows it later. Every decoder (pickle, msgpack, json) works within
these limits and raises :class:`BudgetExceeded` (an
:class:`~sesstool.errors.UndecodableValue`, so ``auto`` detection reports the value
as ``unknown``) as soon as one is passed: while the value is being built, not after.

docs/budgets.md lists the limits and how they are tested.
"""

from __future__ import annotations

import time
import typing as t

from sesstool.errors import UndecodableValue

#: Most bytes decoding one value may produce: objects made, plus the size the value
#: would take once shared references are copied (showing or exporting it does that).
MAX_BYTES = 64 * 1024 * 1024
#: Most seconds decoding one value may take (checked every few hundred steps).
MAX_SECONDS = 1.0
#: Values nested deeper than this are refused: nothing legitimate nests so deep, and
#: showing such a value would exhaust Python's recursion limit further on.
MAX_DEPTH = 200
#: Largest integer kept, in bits (1,234 decimal digits): far below Python's
#: 4,300-digit limit on int-to-text conversion, so every integer can be printed.
MAX_INT_BITS = 4096


# What making one object costs at least, in bytes (a dict, a list, a set, a memo
# entry); an item slot in a container costs 8, an entry in a dict or a set some 40.
OBJECT_COST = 80
SLOT_COST = 8
ENTRY_COST = 40


class BudgetExceeded(UndecodableValue):
    """Decoding a value would pass one of the limits above (exit 4)."""


class Budget:
    """The bytes and time one decoding may still spend.

    ``charge`` is called where something is made; ``tick`` where work is done that
    makes nothing (for example inserting into a set), so that a loop of cheap steps
    still meets the clock.
    """

    __slots__ = ("deadline", "left", "steps")

    def __init__(self, max_bytes: int = MAX_BYTES, seconds: float = MAX_SECONDS) -> None:
        self.left = max_bytes
        self.deadline = time.monotonic() + seconds
        self.steps = 0

    def charge(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise BudgetExceeded(f"decoding would produce more than {MAX_BYTES >> 20} MiB")
        self.tick()

    def tick(self) -> None:
        self.steps += 1
        # A clock read costs about as much as a few steps: read it every 64th.
        if not self.steps & 63 and time.monotonic() > self.deadline:
            raise BudgetExceeded(f"decoding took more than {MAX_SECONDS:g} s")

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"decoding took more than {MAX_SECONDS:g} s")


def check_int(value: int) -> int:
    """``value``, or :class:`BudgetExceeded` when it has more than :data:`MAX_INT_BITS` bits."""
    if value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"an integer has more than {MAX_INT_BITS} bits")
    return value


def too_deep() -> BudgetExceeded:
    return BudgetExceeded(f"the value nests more than {MAX_DEPTH} deep")


# Below this size no msgpack or json value can make MAX_BYTES of objects (at most
# about 100 bytes of objects a byte of input), so the estimate below is skipped.
_SMALL_INPUT = 256 * 1024
_HIGH_BYTES = bytes(range(0x80, 0x100))


def check_msgspec_input(raw: bytes, fmt: str) -> None:
    """Refuse, before decoding, a msgpack or json value that could make more than
    :data:`MAX_BYTES` of objects; msgspec decodes in one C call that cannot be
    stopped half-way, so its output is bounded from the input.

    The estimates only over-count: in msgpack every new object starts at a byte
    of 0x80 or above (bytes below are small integers Python shares) and costs at
    most some 90 bytes; in json every value but the first follows a ``,``, ``:``
    or ``[``, and every container opens with ``{`` or ``[``. Text takes at most
    4 bytes a character; every value a slot of 8 bytes in its container.
    """
    size = len(raw)
    if size <= _SMALL_INPUT:
        return
    if fmt == "msgpack":
        high = size - len(raw.translate(None, _HIGH_BYTES))
        estimate = 12 * size + 90 * high
    else:
        containers = raw.count(b"{") + raw.count(b"[")
        values = raw.count(b",") + raw.count(b":") + raw.count(b"[") + 1
        estimate = 4 * size + 80 * containers + 58 * values
    if estimate > MAX_BYTES:
        raise BudgetExceeded(f"decoding this {size:,}-byte {fmt} value could produce more than {MAX_BYTES >> 20} MiB")


def check_tree(value: t.Any, *, ints: bool) -> None:
    """Refuse a decoded msgpack or json value nested deeper than :data:`MAX_DEPTH`
    (and, with ``ints``, one holding an integer over :data:`MAX_INT_BITS` bits).

    Iterative, so a deep value cannot exhaust the recursion limit here; msgspec
    builds only dicts, lists and (for keys) tuples as containers.
    """
    pending: list[tuple[t.Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        kind = type(item)
        if kind is dict:
            if depth >= MAX_DEPTH:
                raise too_deep()
            pending.extend((child, depth + 1) for child in item.values())
            if ints:
                pending.extend((key, depth + 1) for key in item)
        elif kind is list or kind is tuple:  # msgspec reads array keys of a map as tuples
            if depth >= MAX_DEPTH:
                raise too_deep()
            pending.extend((child, depth + 1) for child in item)
        elif ints and kind is int:
            check_int(item)
