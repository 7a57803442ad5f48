"""Read pickled sessions without running anything the pickle asks for.

Flask-Session up to 0.6 stored ``pickle.dumps(dict(session))``. A plain
``pickle.loads`` of bytes from a store would run whatever the bytes name (a
REDUCE of ``os.system`` runs a command), so sesstool never calls it on stored data.

:class:`SafeUnpickler` resolves only an allow-list of harmless classes
(containers, scalars, date and time types, ``uuid.UUID``, ``decimal.Decimal``,
``markupsafe.Markup``, ``collections.OrderedDict``). Every other global becomes a
stand-in class that records how the pickle would have built the object and
builds an :class:`~sesstool.values.OpaqueObject` instead: nothing is imported and
nothing is called.

What comes back is always a tree of plain values that :func:`sesstool.tagged.to_tagged`
can show: reference cycles, nesting deeper than :data:`MAX_DEPTH` and shared
references that would expand far beyond the pickle's size (a few hundred bytes can
describe 10**10 values) are refused as undecodable.
"""

from __future__ import annotations

import _compat_pickle
import builtins
import collections
import datetime
import decimal
import io
import pickle
import typing as t
import uuid

from sesstool.values import Markup, OpaqueObject

#: Values nested deeper than this are refused: nothing legitimate nests so deep, and
#: showing such a value would exhaust Python's recursion limit further on.
MAX_DEPTH = 200

# How many values a pickle may expand to (shared references are copied): at least
# this many, and beyond that a few per byte of pickle, which no honest pickle reaches.
_MIN_BUDGET = 100_000
_BUDGET_PER_BYTE = 4


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol 0-2 pickle bytes as _codecs.encode(text, "latin1"); only that is allowed,
    # since other codecs (zlib, base64, rot13...) turn the call into a decompressor.
    if encoding not in ("latin1", "latin-1") or type(text) is not str:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _bytes_arg(args: tuple[t.Any, ...], what: str) -> bytes:
    # Pickles call bytes() and bytearray() with nothing, bytes, or (str, "latin-1").
    # An int would allocate that many zero bytes: bytes(10**10) is a 10 GB pickle of 30 bytes.
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin1")
    raise pickle.UnpicklingError(f"{what}() with these arguments is not allowed")


def _make_bytes(*args: t.Any) -> bytes:
    return _bytes_arg(args, "bytes")


def _make_bytearray(*args: t.Any) -> bytearray:
    return bytearray(_bytes_arg(args, "bytearray"))


def _reconstruct(cls: t.Any, base: t.Any, state: t.Any) -> t.Any:
    # copyreg._reconstructor, used by protocols 0 and 1 for plain objects.
    if isinstance(cls, type) and issubclass(cls, _StandIn):
        return cls(*(() if state is None else (state,)))
    allowed = _ALLOWED_CLASSES
    if cls not in allowed or base not in allowed or not isinstance(cls, type):
        raise pickle.UnpicklingError("copyreg._reconstructor with a class outside the allow-list")
    # What copyreg._reconstructor does, for allow-listed classes only.
    if base is object:
        return object.__new__(cls)
    obj = base.__new__(cls, state)
    if base.__init__ != object.__init__:
        base.__init__(obj, state)
    return obj


_ALLOWED_CLASSES: frozenset[type] = frozenset(
    {
        dict, list, tuple, set, frozenset, str, int, float, complex, bool, object,
        datetime.date, datetime.timedelta, datetime.timezone, uuid.UUID, uuid.SafeUUID,
        decimal.Decimal, Markup, collections.OrderedDict,
    }
)  # fmt: skip


class _StandIn(OpaqueObject):
    """Base of the stand-in classes made for globals outside the allow-list."""

    class_path_of_type: t.ClassVar[str] = ""

    def __new__(cls, *args: t.Any, **kwargs: t.Any) -> _StandIn:
        # NEWOBJ calls only __new__, REDUCE calls the class: both must end up recorded.
        self = object.__new__(cls)
        OpaqueObject.__init__(self, class_path=cls.class_path_of_type, args=list(args), new=True)
        if kwargs:
            self.state = {"kwargs": kwargs}
        return self

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        # Only a call of the class (REDUCE, INST, OBJ) runs __init__ after __new__.
        self.new = False

    def __call__(self, *args: t.Any) -> _StandIn:
        # getattr(...)(...) chains call what an earlier call returned: record the call
        # on a copy (the callee may be shared through the memo), never run anything.
        result = object.__new__(type(self))
        OpaqueObject.__init__(
            result,
            class_path=self.class_path,
            args=self.args,
            state=self.state,
            items=self.items,
            dict_items=self.dict_items,
            new=self.new,
            calls=[*self.calls, list(args)],
        )
        return result

    def __setstate__(self, state: t.Any) -> None:
        self.state = state

    # What APPENDS and SETITEMS do on list and dict subclasses.
    def append(self, item: t.Any) -> None:
        self.items.append(item)

    def extend(self, items: t.Iterable[t.Any]) -> None:
        self.items.extend(items)

    def __setitem__(self, key: t.Any, value: t.Any) -> None:
        self.dict_items.append((key, value))

    def __reduce__(self) -> t.NoReturn:
        raise pickle.PicklingError(f"{self.class_path} is an opaque object: sesstool cannot re-create it")


def _stand_in_class(path: str) -> type[_StandIn]:
    name = path.rpartition(".")[2] or path
    return type(name, (_StandIn,), {"class_path_of_type": path, "__slots__": ()})


# A datetime or time whose tzinfo is an object outside the allow-list (pytz, zoneinfo,
# dateutil) cannot be built; it is kept as an opaque datetime so the rest of the
# session still decodes.
_OpaqueDatetime = _stand_in_class("datetime.datetime")
_OpaqueTime = _stand_in_class("datetime.time")


def _make_datetime(*args: t.Any) -> t.Any:
    if any(isinstance(arg, _StandIn) for arg in args):
        return _OpaqueDatetime(*args)
    return datetime.datetime(*args)


def _make_time(*args: t.Any) -> t.Any:
    if any(isinstance(arg, _StandIn) for arg in args):
        return _OpaqueTime(*args)
    return datetime.time(*args)


ALLOWED: dict[tuple[str, str], t.Any] = {
    **{
        ("builtins", name): getattr(builtins, name)
        for name in (
            "dict", "list", "tuple", "set", "frozenset", "str",
            "int", "float", "complex", "bool", "object",
        )
    },
    ("builtins", "bytes"): _make_bytes,
    ("builtins", "bytearray"): _make_bytearray,
    ("datetime", "datetime"): _make_datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): _make_time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("uuid", "UUID"): uuid.UUID,
    ("uuid", "SafeUUID"): uuid.SafeUUID,
    ("decimal", "Decimal"): decimal.Decimal,
    ("markupsafe", "Markup"): Markup,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("copyreg", "_reconstructor"): _reconstruct,
}  # fmt: skip

# Protocol 0-2 pickles name things as Python 2 did (__builtin__.unicode, copy_reg,
# commands.check_call for subprocess.check_call); Python 3's own unpickler maps
# them back for those protocols, so the app sees, and sesstool shows, the Python 3 name.
_PY2_NAMES: dict[tuple[str, str], tuple[str, str]] = _compat_pickle.NAME_MAPPING
_PY2_MODULES: dict[str, str] = _compat_pickle.IMPORT_MAPPING


class SafeUnpickler(pickle._Unpickler):
    """An unpickler that imports only the allow-list and never calls anything else.

    It is built on Python's pure-Python unpickler, not the C one: the C unpickler
    sizes its memo by the largest index a pickle names, so ``LONG_BINPUT 2**30`` (a
    20-byte pickle) makes it allocate and zero 8 GB. The pure-Python one keeps the
    memo in a dict. It is slower (some 20 microseconds for a typical session), which
    is the price of reading hostile bytes safely.
    """

    def __init__(self, file: t.IO[bytes]) -> None:
        super().__init__(file, encoding="latin1")
        # Per unpickler, so that names chosen by a pickle never pile up in the process.
        self._stand_ins: dict[str, type[_StandIn]] = {}

    def find_class(self, module: str, name: str) -> t.Any:
        # self.proto is what the pickle's PROTO opcode said (0 when it has none); the
        # Python 2 names apply below protocol 3, as in Python's own find_class.
        if getattr(self, "proto", 0) < 3:  # set by load_proto; typeshed does not declare it
            module, name = _PY2_NAMES.get((module, name), (module, name))
            module = _PY2_MODULES.get(module, module)
        allowed = ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        path = f"{module}.{name}"
        stand_in = self._stand_ins.get(path)
        if stand_in is None:
            stand_in = self._stand_ins[path] = _stand_in_class(path)
        return stand_in

    def persistent_load(self, pid: t.Any) -> t.NoReturn:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes) -> t.Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`; objects outside the allow-list
    come back as :class:`OpaqueObject` instances.

    :raises pickle.UnpicklingError: (and the other errors unpickling raises) for
        bytes that are not a whole pickle, and for values sesstool cannot show:
        reference cycles, nesting deeper than :data:`MAX_DEPTH`, shared references
        that expand far beyond the pickle's size, bare references to classes.
    """
    stream = io.BytesIO(data)
    value = SafeUnpickler(stream).load()
    if stream.read(1):
        raise pickle.UnpicklingError("trailing bytes after the pickle")
    _Shape(max(_MIN_BUDGET, _BUDGET_PER_BYTE * len(data))).measure(value)
    return _plain(value)


# Values that hold nothing else: kept as they are.
_LEAVES = frozenset(
    {
        str, int, float, bool, type(None), bytes, bytearray, complex, decimal.Decimal,
        datetime.datetime, datetime.date, datetime.time, datetime.timedelta, Markup,
    }
)  # fmt: skip


def _children(value: t.Any) -> t.Iterable[t.Any]:
    kind = type(value)
    if kind is dict or kind is collections.OrderedDict:
        for key, item in value.items():
            yield key
            yield item
    elif kind in (list, tuple, set, frozenset):
        yield from value
    elif isinstance(value, _StandIn):
        yield from (value.args, value.state, value.items, value.calls)
        for key, item in value.dict_items:
            yield key
            yield item


class _Shape:
    """Check that a built value is a tree of bounded size and depth, before copying it.

    Sizes are kept per object, so a subtree shared a million times is measured once:
    the check costs what the pickle holds, not what it would expand to.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.known: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
        self.active: set[int] = set()  # ids of the containers being measured: a cycle check

    def measure(self, value: t.Any, depth: int = 0) -> tuple[int, int]:
        """The size ``value`` expands to and its height; raise when either is too large."""
        kind = type(value)
        if kind in _LEAVES:
            return 1, 0
        key = id(value)  # every object stays alive in the tree while it is measured
        known = self.known.get(key) or self._measure(value, key, depth)
        if depth + known[1] > MAX_DEPTH:  # also a shared subtree met deeper than before
            raise pickle.UnpicklingError(f"the pickle nests values more than {MAX_DEPTH} deep")
        return known

    def _measure(self, value: t.Any, key: int, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            raise pickle.UnpicklingError(f"the pickle nests values more than {MAX_DEPTH} deep")
        if key in self.active:
            raise pickle.UnpicklingError("the pickle holds a reference cycle")
        self.active.add(key)
        size, height = 1, 0
        for child in _children(value):
            child_size, child_height = self.measure(child, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
            if size > self.budget:
                raise pickle.UnpicklingError("the pickle's shared references expand to too many values")
        self.active.discard(key)
        self.known[key] = (size, height)
        return size, height


def _plain(value: t.Any) -> t.Any:
    """Turn what the unpickler built into plain values and OpaqueObjects.

    Stand-ins become plain OpaqueObjects (so they compare and print simply), and the
    odd allow-listed objects that are no session value (a bare ``object()``, a
    ``timezone``) become OpaqueObjects naming their class, so every result can be
    shown in the tagged form. :class:`_Shape` has checked the value first, so this
    recursion is bounded.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict:
        return {_plain(k): _plain(v) for k, v in value.items()}
    if kind is list:
        return [_plain(item) for item in value]
    if kind is tuple:
        return tuple([_plain(item) for item in value])
    if kind is set:
        return {_plain(item) for item in value}
    if kind is frozenset:
        return frozenset([_plain(item) for item in value])
    if kind is collections.OrderedDict:
        return collections.OrderedDict([(_plain(k), _plain(v)) for k, v in value.items()])
    if isinstance(value, _StandIn):
        return OpaqueObject(
            class_path=value.class_path,
            args=_plain(value.args),
            state=_plain(value.state),
            items=_plain(value.items),
            dict_items=[(_plain(k), _plain(v)) for k, v in value.dict_items],
            new=value.new,
            calls=[_plain(args) for args in value.calls],
        )
    if kind is uuid.UUID:
        # NEWOBJ + BUILD fill a UUID's slots with whatever the pickle says; only a
        # real 128-bit int makes a UUID that can be printed.
        number = getattr(value, "int", None)
        if type(number) is not int or not 0 <= number < 1 << 128:
            raise pickle.UnpicklingError("the pickle holds a UUID without a valid number")
        return value
    if kind is datetime.timezone:
        return OpaqueObject(class_path="datetime.timezone", args=list(value.__getinitargs__()))
    if kind is uuid.SafeUUID:
        return OpaqueObject(class_path="uuid.SafeUUID", args=[value.value])
    if kind is object:
        return OpaqueObject(class_path="builtins.object", new=True)
    if isinstance(value, type) or callable(value):
        # A pickled reference to a class or function itself, not to an object.
        path = getattr(value, "class_path_of_type", None) or getattr(value, "__qualname__", "?")
        raise pickle.UnpicklingError(f"the pickle holds a bare reference to {path}")
    raise pickle.UnpicklingError(f"the pickle made a {kind.__name__}, which sesstool cannot show")
