"""Read pickled sessions without running anything the pickle asks for.

Flask-Session up to 0.6 stored ``pickle.dumps(dict(session))``. A plain
``pickle.loads`` of bytes from a store would run whatever the bytes name (a
REDUCE of ``os.system`` runs a command), so sesstool never calls it on stored data.

:class:`SafeUnpickler` resolves only an allow-list of harmless classes
(containers, scalars, date and time types, ``uuid.UUID``, ``decimal.Decimal``,
``markupsafe.Markup``, ``collections.OrderedDict``). Every other global becomes a
stand-in class that records how the pickle would have built the object and
builds an :class:`~sesstool.codecs.values.OpaqueObject` instead: nothing is imported and
nothing is called.

Reading works within the decoding budget (:mod:`sesstool.codecs.budget`), charged as the
value is built: a few hundred bytes of memo references can describe 10**10 values,
and allow-listed constructors applied to them (``str`` of a shared list, ``set`` of
colliding items) would expand them, so the calls a pickle may make are checked
builders (:mod:`sesstool.codecs.safecalls`), not the builtins. What comes back is always a
tree of plain values that :func:`sesstool.codecs.tagged.to_tagged` can show (checked and
copied out by :mod:`sesstool.codecs.pickletree`). Nothing a pickle does can change a
class, a module or any object other than those it made itself.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import re
import typing as t
import uuid

from sesstool.codecs.budget import (
    ENTRY_COST,
    MAX_DEPTH,
    OBJECT_COST,
    SLOT_COST,
    Budget,
    BudgetExceeded,
    check_int,
)
from sesstool.codecs.pickletree import Builder, Shape, plain
from sesstool.codecs.safecalls import Allowed, fill_uuid, refuse
from sesstool.codecs.standins import ALLOWED, StandIn, stand_in_class

__all__ = ["MAX_DEPTH", "SafeUnpickler", "safe_loads"]

# Protocol 0-2 pickles name things as Python 2 did (__builtin__.unicode, copy_reg,
# commands.check_call for subprocess.check_call); Python 3's own unpickler maps
# them back for those protocols, so the app sees, and sesstool shows, the Python 3 name.
_PY2_NAMES: dict[tuple[str, str], tuple[str, str]] = _compat_pickle.NAME_MAPPING
_PY2_MODULES: dict[str, str] = _compat_pickle.IMPORT_MAPPING

_Load = t.Callable[["SafeUnpickler"], None]
_Dispatch = dict[int, _Load]
_PureUnpickler: t.Any = pickle._Unpickler  # typeshed leaves its internals undeclared


def _checked_int(parent: _Load) -> _Load:
    def load(self: SafeUnpickler) -> None:
        parent(self)
        check_int(self.stack[-1])

    return load


# Text opcodes decode UTF-8 with "surrogatepass" (and UNICODE reads "\\ud800"), so a
# pickle can hold a lone surrogate, which no UTF-8 output (json, msgpack, the
# terminal) can write: such a value is refused rather than crash what shows it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _checked_text(parent: _Load) -> _Load:
    def load(self: SafeUnpickler) -> None:
        parent(self)
        if _SURROGATE.search(self.stack[-1]):
            raise pickle.UnpicklingError("the pickle holds text with a lone surrogate")

    return load


def _charged(parent: _Load) -> _Load:
    # Charged without a check: load() checks the budget every 256 opcodes.
    def load(self: SafeUnpickler) -> None:
        self.budget.left -= OBJECT_COST
        parent(self)

    return load


# Opcodes that only need a charge or a check around what the parent does: integers
# (LONG4 makes a 16-million-bit integer from 2 MB), text (see _SURROGATE), and what
# one byte makes: a container, a MARK's new stack, a memo entry.
_CHARGED: _Dispatch = {
    **{
        op[0]: _checked_int(_PureUnpickler.dispatch[op[0]])
        for op in (pickle.INT, pickle.LONG, pickle.LONG1, pickle.LONG4)
    },
    **{
        op[0]: _checked_text(_PureUnpickler.dispatch[op[0]]) for op in (pickle.UNICODE, pickle.BINUNICODE8)
    },
    **{
        op[0]: _charged(_PureUnpickler.dispatch[op[0]])
        for op in (pickle.EMPTY_SET, pickle.PUT, pickle.LONG_BINPUT)
    },
}  # fmt: skip


class SafeUnpickler(Builder, _PureUnpickler):  # type: ignore[misc]
    """An unpickler that imports only the allow-list, never calls anything else, and
    stops as soon as the value it builds passes the decoding budget
    (:mod:`sesstool.codecs.budget`).

    It is built on Python's pure-Python unpickler, not the C one: the C unpickler
    sizes its memo by the largest index a pickle names, so ``LONG_BINPUT 2**30`` (a
    20-byte pickle) makes it allocate and zero 8 GB, and it cannot be stopped
    half-way. Every opcode that makes, fills or calls something is replaced here by
    one that charges the budget and accepts only what honest pickles do: APPENDS
    on a list, SETITEMS on a dict, BUILD on a stand-in or a fresh UUID, calls of
    the checked builders in :mod:`sesstool.codecs.safecalls` and of stand-ins.
    """

    dispatch: t.ClassVar[_Dispatch] = {**_PureUnpickler.dispatch, **_CHARGED}

    def __init__(self, file: t.IO[bytes], budget: Budget | None = None) -> None:
        _PureUnpickler.__init__(self, file, encoding="latin1")
        Builder.__init__(self, budget or Budget())
        # Per unpickler, so that names chosen by a pickle never pile up in the process.
        self._stand_ins: dict[str, type[StandIn]] = {}

    def load(self) -> t.Any:
        # The parent's loop, with the budget's clock read every 256 opcodes.
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[list[t.Any]] = []
        self.stack: list[t.Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, budget, steps = self.read, self.dispatch, self.budget, range(256)
        try:
            while True:
                for _ in steps:
                    key = read(1)
                    if not key:
                        raise EOFError
                    dispatch[key[0]](self)
                budget.check()
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def find_class(self, module: str, name: str) -> t.Any:
        # self.proto is what the pickle's PROTO opcode said (0 when it has none); the
        # Python 2 names apply below protocol 3, as in Python's own find_class.
        if self.proto < 3:
            module, name = _PY2_NAMES.get((module, name), (module, name))
            module = _PY2_MODULES.get(module, module)
        allowed = ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        path = f"{module}.{name}"
        stand_in = self._stand_ins.get(path)
        if stand_in is None:
            self.charge(2500)  # a class takes some 2.3 KB
            stand_in = self._stand_ins[path] = stand_in_class(path)
        return stand_in

    def persistent_load(self, pid: t.Any) -> t.NoReturn:
        raise pickle.UnpicklingError("persistent ids are not allowed")

    # -- calls: of safecalls' checked builders and of stand-ins -----------------

    def call(self, callee: t.Any, args: t.Any, kwargs: t.Any, *, new: bool = False) -> t.Any:
        """``callee(*args, **kwargs)`` (or ``callee.__new__``), for the callees a pickle
        may call: checked builders and stand-ins. Anything else is refused."""
        if type(args) not in (tuple, list) or type(kwargs) is not dict:
            raise pickle.UnpicklingError("call arguments are not a tuple")
        self.budget.left -= OBJECT_COST + SLOT_COST * (len(args) + len(kwargs))  # checked every 256 opcodes
        if type(callee) is Allowed:
            return (callee.new if new else callee.build)(self, tuple(args), kwargs)
        if isinstance(callee, type) and issubclass(callee, StandIn):
            return callee.__new__(callee, *args, **kwargs) if new else callee(*args, **kwargs)
        if isinstance(callee, StandIn):
            if kwargs:
                raise refuse(callee.class_path)
            self.charge_items(len(callee.calls) + len(args))
            return callee(*args)
        raise pickle.UnpicklingError(f"the pickle calls a {type(callee).__name__}, which is not allowed")

    # -- opcodes -----------------------------------------------------------------

    # The most frequent opcodes, written out so that they cost no more than the parent's:
    # text decoded strictly (no "surrogatepass", see _SURROGATE), memo entries charged.
    def load_short_binunicode(self) -> None:
        self.append(str(self.read(self.read(1)[0]), "utf-8"))

    def load_binunicode(self) -> None:
        self.append(str(self.read(int.from_bytes(self.read(4), "little")), "utf-8"))

    def load_binput(self) -> None:
        self.budget.left -= OBJECT_COST
        self.memo[self.read(1)[0]] = self.stack[-1]

    def load_memoize(self) -> None:
        self.budget.left -= OBJECT_COST
        self.memo[len(self.memo)] = self.stack[-1]

    def load_mark(self) -> None:  # a new stack
        self.budget.left -= OBJECT_COST
        self.metastack.append(self.stack)
        self.stack = []
        self.append = self.stack.append

    def load_empty_list(self) -> None:
        self.budget.left -= OBJECT_COST
        self.append([])

    def load_empty_dictionary(self) -> None:
        self.budget.left -= OBJECT_COST
        self.append({})

    # Each takes the items first: pop_mark() replaces self.append.
    def load_tuple(self) -> None:
        items = self.pop_mark()
        self.append(self.make_tuple(items))

    def load_tuple1(self) -> None:
        self.stack[-1] = self.make_tuple(self.stack[-1:])

    def load_tuple2(self) -> None:
        self.stack[-2:] = [self.make_tuple(self.stack[-2:])]

    def load_tuple3(self) -> None:
        self.stack[-3:] = [self.make_tuple(self.stack[-3:])]

    def load_list(self) -> None:
        items = self.pop_mark()
        self.charge_items(len(items))
        self.append(items)

    def load_dict(self) -> None:
        items = self.pop_mark()
        made: dict[t.Any, t.Any] = {}
        self.set_items(made, items)
        self.append(made)

    def load_frozenset(self) -> None:
        items = self.pop_mark()
        self.append(self.make_frozenset(items))

    def load_append(self) -> None:
        value = self.stack.pop()
        self._extend(self.stack[-1], [value])

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._extend(self.stack[-1], items)

    def _extend(self, target: t.Any, items: list[t.Any]) -> None:
        self.budget.charge(SLOT_COST * len(items))
        if type(target) is list:
            target.extend(items)
        elif isinstance(target, StandIn):  # a list subclass of the app's
            target.items.extend(items)
        else:
            raise pickle.UnpicklingError(f"APPENDS to a {type(target).__name__} is not allowed")

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._set_items(self.stack[-1], [key, value])

    def load_setitems(self) -> None:
        items = self.pop_mark()
        self._set_items(self.stack[-1], items)

    def _set_items(self, target: t.Any, items: list[t.Any]) -> None:
        kind = type(target)
        if kind is dict or kind is collections.OrderedDict:
            self.set_items(target, items)
        elif isinstance(target, StandIn):  # a dict subclass of the app's
            self.budget.charge(ENTRY_COST * len(items))
            target.dict_items.extend(zip(items[::2], items[1::2], strict=True))
        else:
            raise pickle.UnpicklingError(f"SETITEMS on a {kind.__name__} is not allowed")

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise pickle.UnpicklingError(f"ADDITEMS to a {type(target).__name__} is not allowed")
        self.add_to_set(target, items)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args, {})

    def load_newobj(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args, {}, new=True)

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        self.stack[-1] = self.call(self.stack[-1], args, kwargs, new=True)

    def load_obj(self) -> None:
        args = self.pop_mark()
        callee = args.pop(0)
        self.append(self.call(callee, args, {}))

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        callee = self.find_class(module, name)
        args = self.pop_mark()
        self.append(self.call(callee, args, {}))

    def load_build(self) -> None:
        """BUILD (``__setstate__``) only on what this pickle made and only records:
        a stand-in keeps the state; an empty UUID takes its number. Applied to a
        class, a function or a shared object (an enum member, ``timezone.utc``) it
        would change them for the rest of the process, so anything else is refused."""
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, StandIn):
            self.budget.charge(OBJECT_COST)
            target.state = state
        elif type(target) is uuid.UUID and not hasattr(target, "int"):
            fill_uuid(target, state)
        else:
            raise pickle.UnpicklingError(f"BUILD on a {type(target).__name__} is not allowed")

    for _op, _load in [
        (pickle.SHORT_BINUNICODE, load_short_binunicode),
        (pickle.BINUNICODE, load_binunicode),
        (pickle.BINPUT, load_binput),
        (pickle.MEMOIZE, load_memoize),
        (pickle.MARK, load_mark),
        (pickle.EMPTY_LIST, load_empty_list),
        (pickle.EMPTY_DICT, load_empty_dictionary),
        (pickle.TUPLE, load_tuple),
        (pickle.TUPLE1, load_tuple1),
        (pickle.TUPLE2, load_tuple2),
        (pickle.TUPLE3, load_tuple3),
        (pickle.LIST, load_list),
        (pickle.DICT, load_dict),
        (pickle.FROZENSET, load_frozenset),
        (pickle.APPEND, load_append),
        (pickle.APPENDS, load_appends),
        (pickle.SETITEM, load_setitem),
        (pickle.SETITEMS, load_setitems),
        (pickle.ADDITEMS, load_additems),
        (pickle.REDUCE, load_reduce),
        (pickle.NEWOBJ, load_newobj),
        (pickle.NEWOBJ_EX, load_newobj_ex),
        (pickle.OBJ, load_obj),
        (pickle.INST, load_inst),
        (pickle.BUILD, load_build),
    ]:
        dispatch[_op[0]] = _load
    del _op, _load


def safe_loads(data: bytes) -> t.Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; objects outside the allow-list
    come back as :class:`OpaqueObject` instances.

    :raises sesstool.codecs.budget.BudgetExceeded: (an ``UndecodableValue``) when the value
        passes the decoding budget: too large once shared references are copied,
        too deep, an integer too large, or decoding too slow.
    :raises pickle.UnpicklingError: and nothing else, for bytes that are not a
        whole pickle, and for values sesstool cannot show or
        will not build: reference cycles, bare references to classes, calls and
        BUILDs outside what honest pickles do.
    """
    budget = Budget()
    budget.charge(2 * len(data))  # the bytes, and the text and bytes read from them
    stream = io.BytesIO(data)
    try:
        value = SafeUnpickler(stream, budget).load()
        if stream.read(1):
            raise pickle.UnpicklingError("trailing bytes after the pickle")
        Shape(budget).measure(value)
        return plain(value, budget)
    except (BudgetExceeded, pickle.UnpicklingError):
        raise
    except Exception as e:
        # Hostile bytes make the unpickler fail in every way there is (an empty stack,
        # struct.error, an unknown codec, decimal.InvalidOperation, MemoryError...):
        # to callers each is one thing, bytes that are no pickle sesstool can read.
        raise pickle.UnpicklingError(f"not a pickle sesstool can read ({type(e).__name__}: {e})") from e
