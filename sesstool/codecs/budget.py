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

import itertools
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
    still meets the clock. Hot paths subtract from ``left`` directly and leave the
    check to a periodic :meth:`check`.
    """

    __slots__ = ("deadline", "left", "steps")

    def __init__(self) -> None:
        self.left = MAX_BYTES
        self.deadline = time.monotonic() + MAX_SECONDS
        self.steps = 0

    def charge(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise BudgetExceeded(f"decoding would produce more than {MAX_BYTES >> 20} MiB")
        self.tick()

    def tick(self) -> None:
        self.steps += 1
        # A clock read costs about as much as a few steps: read it every 64th.
        if not self.steps & 63:
            self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"decoding took more than {MAX_SECONDS:g} s")

    def check(self) -> None:
        """Raise when what has been charged without a check (``left -= n``) or the time
        spent has passed the budget."""
        self.charge(0)
        self.check_clock()


def check_int(value: int) -> int:
    """``value``, or :class:`BudgetExceeded` when it has more than :data:`MAX_INT_BITS` bits."""
    if value.bit_length() > MAX_INT_BITS:
        raise BudgetExceeded(f"an integer has more than {MAX_INT_BITS} bits")
    return value


def too_deep() -> BudgetExceeded:
    return BudgetExceeded(f"the value nests more than {MAX_DEPTH} deep")


# Below this size no msgpack or json value can make MAX_BYTES of objects (at most
# about 100 bytes of objects a byte of input), so the estimate below is skipped.
SMALL_INPUT = 256 * 1024
_HIGH_BYTES = bytes(range(0x80, 0x100))


def check_msgspec_input(raw: bytes, fmt: str) -> None:
    """Refuse, before decoding, a msgpack or json value that could make more than
    :data:`MAX_BYTES` of objects; msgspec decodes in one C call that cannot be
    stopped half-way, so its output is bounded from the input.

    A first estimate only over-counts, at C speed: in msgpack every new object
    starts at a byte of 0x80 or above (bytes below are small integers Python
    shares) and costs at most some 90 bytes; in json every value but the first
    follows a ``,``, ``:`` or ``[``, and every container opens with ``{`` or ``[``.
    Text takes at most 4 bytes a character; every value a slot of 8 bytes. A
    msgpack value the estimate refuses (a large text or binary value is mostly
    bytes it cannot tell from small integers) is then measured exactly by
    :func:`_msgpack_cost`, which reads only its headers.
    """
    size = len(raw)
    if size <= SMALL_INPUT:
        return
    if fmt == "msgpack":
        high = size - len(raw.translate(None, _HIGH_BYTES))
        if 12 * size + 90 * high <= MAX_BYTES or _msgpack_cost(raw, Budget()) <= MAX_BYTES:
            return
    else:
        containers = raw.count(b"{") + raw.count(b"[")
        values = raw.count(b",") + raw.count(b":") + raw.count(b"[") + 1
        if 4 * size + 80 * containers + 58 * values <= MAX_BYTES:
            return
    raise BudgetExceeded(f"decoding this {size:,}-byte {fmt} value could produce more than {MAX_BYTES >> 20} MiB")


# msgpack headers whose length follows in 1, 2 or 4 bytes: (length bytes, object cost,
# bytes of objects a payload byte, values the length counts (arrays 1, maps 2)).
_SIZED_HEADERS: dict[int, tuple[int, int, int, int]] = {
    0xC4: (1, 40, 1, 0), 0xC5: (2, 40, 1, 0), 0xC6: (4, 40, 1, 0),  # bin
    0xD9: (1, 56, 4, 0), 0xDA: (2, 56, 4, 0), 0xDB: (4, 56, 4, 0),  # str
    0xDC: (2, 72, 0, 1), 0xDD: (4, 72, 0, 1),  # array
    0xDE: (2, 80, 0, 2), 0xDF: (4, 80, 0, 2),  # map
}  # fmt: skip
# Headers followed by a fixed number of bytes: (bytes, object cost).
_FIXED_HEADERS: dict[int, tuple[int, int]] = {
    0xC0: (0, 8), 0xC2: (0, 8), 0xC3: (0, 8), 0xCA: (4, 32), 0xCB: (8, 32),
    **{code: (1 << (code - 0xCC), 40) for code in range(0xCC, 0xD0)},
    **{code: (1 << (code - 0xD0), 40) for code in range(0xD0, 0xD4)},
    **{code: (1 + (1 << (code - 0xD4)), 140) for code in range(0xD4, 0xD9)},  # fixext
}  # fmt: skip


_EXT_WIDTHS = {0xC7: 1, 0xC8: 2, 0xC9: 4}


def _msgpack_cost(raw: bytes, budget: Budget) -> int:
    """The bytes of objects decoding ``raw`` makes, from its headers (payloads are
    skipped); stops early past :data:`MAX_BYTES`, and within the budget's clock."""
    pos, end, pending, cost = 0, len(raw), 1, 0
    while pending and pos < end and cost <= MAX_BYTES:
        code = raw[pos]
        pos += 1
        pending -= 1
        budget.tick()
        cost += 8  # its slot in the container holding it
        if code < 0x80:
            continue
        if code < 0x90:
            pending += 2 * (code & 0x0F)
            cost += 80 + 40 * (code & 0x0F)
        elif code < 0xA0:
            pending += code & 0x0F
            cost += 72 + 8 * (code & 0x0F)
        elif code < 0xC0:
            pos += code & 0x1F
            cost += 56 + 4 * (code & 0x1F)
        elif code >= 0xE0:
            cost += 36
        elif code in _FIXED_HEADERS:
            skip, object_cost = _FIXED_HEADERS[code]
            pos += skip
            cost += object_cost
        elif code in _SIZED_HEADERS:
            width, object_cost, per_byte, per_item = _SIZED_HEADERS[code]
            length = int.from_bytes(raw[pos : pos + width], "big")
            pos += width
            pending += per_item * length
            pos += 0 if per_item else length
            cost += object_cost + per_byte * length + {0: 0, 1: 8, 2: 40}[per_item] * length
        else:  # ext 8/16/32, or 0xC1 which msgspec refuses
            ext_width = _EXT_WIDTHS.get(code)
            if ext_width is None:
                return 0
            pos += ext_width + 1 + int.from_bytes(raw[pos : pos + ext_width], "big")
            cost += 140
    return cost


def check_tree(value: t.Any, *, ints: bool, keys: bool) -> None:
    """Refuse a decoded msgpack or json value nested deeper than :data:`MAX_DEPTH`
    (and, with ``ints``, one holding an integer over :data:`MAX_INT_BITS` bits).

    A level at a time, so that a deep value cannot exhaust the recursion limit here,
    and with as much of the work as can be done by C loops: msgspec builds only
    dicts, lists and (with ``keys``: msgpack map keys that are arrays) tuples.
    """
    level: list[t.Any] = [value]
    kinds = {type(value)}
    if ints and type(value) is int:
        check_int(value)
    for _ in range(MAX_DEPTH + 1):
        containers = kinds & _CONTAINERS
        if not containers:
            return
        if len(kinds) > 1:
            level = [item for item in level if type(item) in _CONTAINERS]
        if dict not in containers:
            dicts, sequences = [], level
        elif len(containers) == 1:
            dicts, sequences = level, []
        else:
            dicts = [item for item in level if type(item) is dict]
            sequences = [item for item in level if type(item) is not dict]
        children = [child for item in dicts for child in item.values()]
        children.extend(_chain(sequences))
        if keys and dicts and tuple in {type(key) for item in dicts for key in item}:
            children.extend(key for item in dicts for key in item if type(key) is tuple)
        kinds = set(map(type, children))
        if ints and int in kinds:
            for child in children:
                if type(child) is int:
                    check_int(child)
        level = children
    raise too_deep()


_CONTAINERS = frozenset({dict, list, tuple})
_chain = itertools.chain.from_iterable
