"""Build, check and copy out the values the restricted unpickler makes.

:class:`Builder` makes the hashed containers within the budget while the pickle is
read. The result may share objects (the memo), hold stand-ins and the odd
allow-listed object that is no session value. :class:`Shape` then checks, at the cost of
what the pickle holds, that copying it out fits the budget and the depth limit;
:func:`plain` then copies it into the plain values and OpaqueObjects every part of
sesstool can show.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import pickle
import typing as t
import uuid

from sesstool.codecs.budget import (
    ENTRY_COST,
    MAX_BYTES,
    MAX_DEPTH,
    OBJECT_COST,
    SLOT_COST,
    Budget,
    BudgetExceeded,
    too_deep,
)
from sesstool.codecs.safecalls import Allowed
from sesstool.codecs.standins import StandIn
from sesstool.codecs.values import Markup, OpaqueObject


class Builder:
    """Making tuples, frozensets, sets and dicts for the unpickler within the budget.

    Hashing a tuple or a frozenset walks all of it, and a pickle can make one that
    holds the one below it twice, 40 times over: so the size each would expand to
    and its height are kept (by id, the objects kept alive so that an id is never
    reused) and bounded as it is made. Sets and dicts are filled one item at a time,
    so that items whose hashes collide (each insertion then compares with all
    before it) meet the clock instead of running for minutes in one C call.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._hashed: dict[int, tuple[int, int]] = {}
        self._keep: list[t.Any] = []

    def charge(self, nbytes: int) -> None:
        self.budget.charge(nbytes)

    def charge_items(self, count: int) -> None:
        self.budget.charge(OBJECT_COST + SLOT_COST * count)

    def make_tuple(self, items: list[t.Any]) -> tuple[t.Any, ...]:
        if not items:
            return ()
        made = tuple(items)
        if _HASHED.isdisjoint(map(type, made)):  # most tuples: nothing inside to walk
            size = OBJECT_COST + SLOT_COST * len(made)
            self.budget.charge(size)
            self._hashed[id(made)] = (size, 1)
            self._keep.append(made)
            return made
        self._remember_hashed(made, items)
        return made

    def make_frozenset(self, items: list[t.Any]) -> frozenset[t.Any]:
        members: set[t.Any] = set()
        self.add_to_set(members, items)
        made = frozenset(members)  # copies the stored hashes: no item is hashed again
        self._remember_hashed(made, members)
        return made

    def _remember_hashed(self, made: t.Any, items: t.Iterable[t.Any]) -> None:
        size, height, hashed = OBJECT_COST, 0, self._hashed
        for item in items:
            kind = type(item)
            if kind is tuple or kind is frozenset:
                item_size, item_height = hashed.get(id(item), (OBJECT_COST, 1))
                size += item_size
                height = max(height, item_height)
            elif kind is str or kind is bytes:
                size += SLOT_COST + len(item)
            else:
                size += SLOT_COST
        if height >= MAX_DEPTH:
            raise too_deep()
        if size > MAX_BYTES:
            raise BudgetExceeded("the pickle's shared references expand too far")
        self.charge_items(len(made))
        hashed[id(made)] = (size, height + 1)
        self._keep.append(made)

    def add_to_set(self, target: set[t.Any], items: t.Iterable[t.Any]) -> None:
        # One at a time, so that items whose hashes collide (each insertion then
        # compares with all before it) meet the clock instead of running for minutes.
        members = list(items)
        budget = self.budget
        budget.charge(ENTRY_COST * len(members))
        for count, item in enumerate(members, 1):
            target.add(item)
            if not count & 31:
                budget.check_clock()

    def set_items(self, target: dict[t.Any, t.Any], flat: list[t.Any]) -> None:
        if len(flat) % 2:
            raise pickle.UnpicklingError("odd number of items for SETITEMS")
        budget = self.budget
        budget.charge(ENTRY_COST * (len(flat) // 2))
        for i in range(0, len(flat), 2):
            target[flat[i]] = flat[i + 1]
            if i & 63 == 62:  # every 32 items
                budget.check_clock()


_HASHED = frozenset({tuple, frozenset})

# Values that hold nothing else: kept as they are.
_LEAVES = frozenset(
    {
        str, int, float, bool, type(None), bytes, bytearray, complex, decimal.Decimal,
        datetime.datetime, datetime.date, datetime.time, datetime.timedelta, Markup,
    }
)  # fmt: skip
_SIZED = frozenset({str, bytes, bytearray, Markup})


def _children(value: t.Any) -> t.Iterable[t.Any]:
    kind = type(value)
    if kind is dict or kind is collections.OrderedDict:
        for key, item in value.items():
            yield key
            yield item
    elif kind in (list, tuple, set, frozenset):
        yield from value
    elif isinstance(value, StandIn):
        yield from (value.args, value.state, value.items, value.calls)
        for key, item in value.dict_items:
            yield key
            yield item


class Shape:
    """Check that a built value is a tree that fits in what is left of the budget,
    copied out (shared references repeated, as showing it repeats them), and is at
    most :data:`MAX_DEPTH` deep, before copying it.

    Sizes are kept per object, so a subtree shared a million times is measured once:
    the check costs what the pickle holds, not what it would expand to.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.known: dict[int, tuple[int, int]] = {}  # id -> (expanded bytes, height)
        self.active: set[int] = set()  # ids of the containers being measured: a cycle check

    def measure(self, value: t.Any, depth: int = 0) -> tuple[int, int]:
        """The bytes ``value`` expands to and its height; raise when either is too large."""
        kind = type(value)
        if kind in _LEAVES:
            return (SLOT_COST + len(value) if kind in _SIZED else SLOT_COST), 0
        key = id(value)  # every object stays alive in the tree while it is measured
        known = self.known.get(key) or self._measure(value, key, depth)
        if depth + known[1] > MAX_DEPTH:  # also a shared subtree met deeper than before
            raise too_deep()
        return known

    def _measure(self, value: t.Any, key: int, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise too_deep()
        if key in self.active:
            raise pickle.UnpicklingError("the pickle holds a reference cycle")
        self.active.add(key)
        self.budget.tick()
        size, height, limit = OBJECT_COST, 0, self.budget.left
        for child in _children(value):
            kind = type(child)
            if kind in _LEAVES:  # most children: measured here, without a call
                size += SLOT_COST + len(child) if kind in _SIZED else SLOT_COST
                continue
            child_size, child_height = self.measure(child, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
            if size > limit:
                raise BudgetExceeded("the pickle's shared references expand too far")
        if size > limit:
            raise BudgetExceeded("the pickle's shared references expand too far")
        self.active.discard(key)
        self.known[key] = (size, height)
        return size, height


def plain(value: t.Any, budget: Budget) -> t.Any:
    """Turn what the unpickler built into plain values and OpaqueObjects.

    Stand-ins become plain OpaqueObjects (so they compare and print simply), and the
    odd allow-listed objects that are no session value (a bare ``object()``, a
    ``timezone``) become OpaqueObjects naming their class, so every result can be
    shown in the tagged form. :class:`Shape` has checked the value first, so this
    recursion is bounded; the clock still runs, since OpaqueObjects compare by
    content and a set of them may collide.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value
    budget.tick()
    # Leaves are kept without a call: most of a session is leaves.
    if kind is dict:
        return {
            k if type(k) in _LEAVES else plain(k, budget): v if type(v) in _LEAVES else plain(v, budget)
            for k, v in value.items()
        }
    if kind is list:
        return [item if type(item) in _LEAVES else plain(item, budget) for item in value]
    if kind is tuple:
        return tuple([item if type(item) in _LEAVES else plain(item, budget) for item in value])
    if kind is set or kind is frozenset:
        members = set()
        for item in value:
            members.add(plain(item, budget))
            budget.tick()
        return members if kind is set else frozenset(members)
    if kind is collections.OrderedDict:
        return collections.OrderedDict([(plain(k, budget), plain(v, budget)) for k, v in value.items()])
    if isinstance(value, StandIn):
        return OpaqueObject(
            class_path=value.class_path,
            args=plain(value.args, budget),
            state=plain(value.state, budget),
            items=plain(value.items, budget),
            dict_items=[(plain(k, budget), plain(v, budget)) for k, v in value.dict_items],
            new=value.new,
            calls=[plain(args, budget) for args in value.calls],
        )
    if kind is uuid.UUID:
        # NEWOBJ makes an empty UUID; only BUILD with a real 128-bit int fills it.
        if not hasattr(value, "int"):
            raise pickle.UnpicklingError("the pickle holds a UUID without a valid number")
        return value
    if kind is datetime.timezone:
        return OpaqueObject(class_path="datetime.timezone", args=list(value.__getinitargs__()))
    if kind is uuid.SafeUUID:
        return OpaqueObject(class_path="uuid.SafeUUID", args=[value.value])
    if kind is object:
        return OpaqueObject(class_path="builtins.object", new=True)
    if kind is Allowed or isinstance(value, type):
        # A pickled reference to a class or function itself, not to an object.
        path = getattr(value, "path", None) or getattr(value, "class_path_of_type", "?")
        raise pickle.UnpicklingError(f"the pickle holds a bare reference to {path}")
    raise pickle.UnpicklingError(f"the pickle made a {kind.__name__}, which sesstool cannot show")
