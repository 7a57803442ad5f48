"""The only calls a pickle may make, each checking its arguments before it runs.

A pickle names a callable (GLOBAL) and calls it (REDUCE, NEWOBJ, OBJ, INST). The
restricted unpickler (:mod:`sesstool.codecs.safepickle`) resolves a short allow-list of
names to :class:`Allowed` entries defined here, never to the real builtins, because
an allow-listed constructor given the wrong arguments is a bomb: ``str`` of a
shared nested list writes out 2**40 elements, ``int`` of a Decimal with a huge
exponent builds a gigabyte integer, ``str(b, "punycode")`` takes quadratic time,
``set`` of colliding items takes quadratic time. Each entry accepts only the
arguments honest pickles pass (scalars, or the sequences the pickle itself built),
inserts into sets and dicts one item at a time under the decoding budget, and
returns a fresh object: nothing here can return, or change, anything shared by
the process.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import math
import pickle
import typing as t
import uuid

from sesstool.codecs.budget import check_int
from sesstool.codecs.values import Markup, OpaqueObject

if t.TYPE_CHECKING:
    from sesstool.codecs.safepickle import SafeUnpickler

Args = tuple[t.Any, ...]
Kwargs = dict[str, t.Any]
_Build = t.Callable[["SafeUnpickler", Args, Kwargs], t.Any]


class Allowed:
    """An allow-listed name as the unpickler sees it: a path and a checked builder.

    :param new: the builder for ``cls.__new__(cls, *args)`` (NEWOBJ), where that
        differs from calling the class.
    """

    __slots__ = ("build", "new", "path")

    def __init__(self, path: str, build: _Build, new: _Build | None = None) -> None:
        self.path = path
        self.build = build
        self.new = new or build

    def __repr__(self) -> str:
        return f"<allowed {self.path}>"


def refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"{what} with these arguments is not allowed")


# Leaves: what may be passed to a constructor that reads its argument whole.
_SCALARS = (str, bytes, int, float, bool, type(None))
_SEQUENCES = (list, tuple)
# Text a number constructor parses: longer is no number a session holds, and float()
# and complex() of a long digit string cost more than linear time.
_MAX_NUMBER_TEXT = 400
_TEXT_ENCODINGS = frozenset({"utf-8", "utf8", "latin1", "latin-1", "ascii"})


def _scalar_args(what: str, args: Args, kwargs: Kwargs, most: int) -> None:
    if len(args) > most or kwargs or not all(type(a) in _SCALARS for a in args):
        raise refuse(what)


def _number_text(what: str, value: t.Any) -> None:
    if type(value) in (str, bytes) and len(value) > _MAX_NUMBER_TEXT:
        raise refuse(what)


def _only_sequence(what: str, args: Args, kwargs: Kwargs) -> t.Any:
    """The one list or tuple argument, or ``()`` for none."""
    if kwargs or len(args) > 1:
        raise refuse(what)
    if not args:
        return ()
    if type(args[0]) not in (*_SEQUENCES, set, frozenset, dict):
        raise refuse(what)
    return args[0]


def _list(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> list[t.Any]:
    items = list(_only_sequence("list()", args, kwargs))
    u.charge_items(len(items))
    return items


def _tuple(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> tuple[t.Any, ...]:
    return u.make_tuple(list(_only_sequence("tuple()", args, kwargs)))


def _set(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> set[t.Any]:
    made: set[t.Any] = set()
    u.add_to_set(made, list(_only_sequence("set()", args, kwargs)))
    return made


def _frozenset(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> frozenset[t.Any]:
    return u.make_frozenset(list(_only_sequence("frozenset()", args, kwargs)))


def _pairs(what: str, source: t.Any) -> list[t.Any]:
    if type(source) is dict:
        return [item for pair in source.items() for item in pair]
    if not all(type(pair) in _SEQUENCES and len(pair) == 2 for pair in source):
        raise refuse(what)
    return [item for pair in source for item in pair]


def _dict(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> dict[t.Any, t.Any]:
    made: dict[t.Any, t.Any] = {}
    u.set_items(made, _pairs("dict()", _only_sequence("dict()", args, {})))
    u.set_items(made, [item for pair in kwargs.items() for item in pair])
    return made


def _ordered_dict(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> collections.OrderedDict[t.Any, t.Any]:
    made: collections.OrderedDict[t.Any, t.Any] = collections.OrderedDict()
    u.set_items(made, _pairs("OrderedDict()", _only_sequence("OrderedDict()", args, kwargs)))
    return made


def _str(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> str:
    # str of a container would write out every shared reference; str of bytes with
    # an encoding runs a codec, and some (punycode, idna) take quadratic time.
    if not args and not kwargs:
        return ""
    if len(args) == 1 and not kwargs and type(args[0]) in _SCALARS and type(args[0]) is not bytes:
        return str(args[0])
    # Only strict decoding: "surrogatepass" or "surrogateescape" make lone surrogates.
    if 2 <= len(args) <= 3 and not kwargs and type(args[0]) is bytes and args[2:] in ((), ("strict",)):
        if type(args[1]) is str and args[1].lower().replace("_", "-") in _TEXT_ENCODINGS:
            u.charge(4 * len(args[0]))
            return str(*args)
    raise refuse("str()")


def _int(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> int:
    _scalar_args("int()", args, kwargs, 2)
    if args and type(args[0]) is float and not math.isfinite(args[0]):
        raise refuse("int()")
    return check_int(int(*args))


def _float(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> float:
    _scalar_args("float()", args, kwargs, 1)
    _number_text("float()", args[0] if args else None)
    return float(*args)


def _complex(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> complex:
    _scalar_args("complex()", args, kwargs, 2)
    for arg in args:
        _number_text("complex()", arg)
    return complex(*args)


def _bool(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> bool:
    _scalar_args("bool()", args, kwargs, 1)
    return bool(*args)


def _object(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> object:
    if args or kwargs:
        raise refuse("object()")
    return object()


def _bytes_arg(what: str, u: SafeUnpickler, args: Args, kwargs: Kwargs) -> bytes:
    # Pickles call bytes() and bytearray() with nothing, bytes, or (str, "latin-1").
    # An int would allocate that many zero bytes: bytes(10**10) is a 10 GB pickle of 30 bytes.
    if kwargs:
        raise refuse(what)
    if not args:
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        u.charge(len(args[0]))
        return bytes(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        u.charge(len(args[0]))
        return str(args[0]).encode("latin1")
    raise refuse(what)


def _bytes(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> bytes:
    return _bytes_arg("bytes()", u, args, kwargs)


def _bytearray(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> bytearray:
    return bytearray(_bytes_arg("bytearray()", u, args, kwargs))


def _latin1_encode(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> bytes:
    # Protocol 0-2 pickle bytes as _codecs.encode(text, "latin1"); only that is allowed,
    # since other codecs (zlib, base64, rot13...) turn the call into a decompressor.
    text, encoding = (*args, "latin1")[:2] if len(args) <= 2 else (None, None)
    if kwargs or encoding not in ("latin1", "latin-1") or type(text) is not str:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    u.charge(len(text))
    return text.encode("latin1")


def _markup(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> Markup:
    if kwargs or len(args) > 1 or (args and type(args[0]) is not str):
        raise refuse("Markup()")
    return Markup(*args)


# datetime, date, time, timedelta and timezone read scalars (and a tzinfo).
_TIME_PARTS = frozenset({*_SCALARS, datetime.timedelta, datetime.timezone})


def time_type(kind: t.Callable[..., t.Any], name: str, opaque: t.Callable[..., t.Any] | None = None) -> _Build:
    """The builder for one of datetime's types.

    :param opaque: what to make instead when an argument is an object of the app's
        (a pytz or zoneinfo tzinfo, which a stand-in records): a stand-in of the
        datetime, so the rest of the session still decodes.
    """

    def build(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> t.Any:
        if len(args) + len(kwargs) > 9:
            raise refuse(name)
        for value in (*args, *kwargs.values()):
            if type(value) not in _TIME_PARTS:
                if opaque is not None and isinstance(value, OpaqueObject):
                    return opaque(*args)
                raise refuse(name)
        return kind(*args, **kwargs)

    return build


def _uuid(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> uuid.UUID:
    values = (*args, *kwargs.values())
    if len(values) > 6 or not all(type(v) in (*_SCALARS, uuid.SafeUUID) for v in values):
        raise refuse("UUID()")
    return uuid.UUID(*args, **kwargs)


def _new_uuid(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> uuid.UUID:
    # NEWOBJ: an empty UUID that BUILD then fills (see SafeUnpickler.load_build).
    if args or kwargs:
        raise refuse("UUID.__new__()")
    return object.__new__(uuid.UUID)


def _safe_uuid(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> uuid.SafeUUID:
    # Returns one of the enum's members, shared by the process: BUILD never applies to it.
    _scalar_args("SafeUUID()", args, kwargs, 1)
    return uuid.SafeUUID(*args)


def _decimal(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> decimal.Decimal:
    _scalar_args("Decimal()", args, kwargs, 1)
    if args and type(args[0]) in (bytes, bool):
        raise refuse("Decimal()")
    return decimal.Decimal(*args)


def fill_uuid(target: uuid.UUID, state: t.Any) -> None:
    # What UUID.__setstate__ does, for a state that holds what a UUID's does.
    if type(state) is not dict or not set(state) <= {"int", "is_safe"}:
        raise pickle.UnpicklingError("BUILD on a UUID with a state that is no UUID's")
    number = state.get("int")
    if type(number) is not int or not 0 <= number < 1 << 128:
        raise pickle.UnpicklingError("the pickle holds a UUID without a valid number")
    safe = state.get("is_safe", uuid.SafeUUID.unknown.value)
    if type(safe) is not int and safe is not None:
        raise pickle.UnpicklingError("the pickle holds a UUID with an invalid is_safe")
    object.__setattr__(target, "int", number)
    object.__setattr__(target, "is_safe", uuid.SafeUUID(safe))


ALLOWED: dict[tuple[str, str], Allowed] = {
    (module, name): Allowed(f"{module}.{name}", build, new)
    for (module, name), build, new in [
        (("builtins", "dict"), _dict, None),
        (("builtins", "list"), _list, None),
        (("builtins", "tuple"), _tuple, None),
        (("builtins", "set"), _set, None),
        (("builtins", "frozenset"), _frozenset, None),
        (("builtins", "str"), _str, None),
        (("builtins", "int"), _int, None),
        (("builtins", "float"), _float, None),
        (("builtins", "complex"), _complex, None),
        (("builtins", "bool"), _bool, None),
        (("builtins", "object"), _object, None),
        (("builtins", "bytes"), _bytes, None),
        (("builtins", "bytearray"), _bytearray, None),
        (("datetime", "date"), time_type(datetime.date, "date()"), None),
        (("datetime", "timedelta"), time_type(datetime.timedelta, "timedelta()"), None),
        (("datetime", "timezone"), time_type(datetime.timezone, "timezone()"), None),
        (("uuid", "UUID"), _uuid, _new_uuid),
        (("uuid", "SafeUUID"), _safe_uuid, None),
        (("decimal", "Decimal"), _decimal, None),
        (("markupsafe", "Markup"), _markup, None),
        (("collections", "OrderedDict"), _ordered_dict, None),
        (("_codecs", "encode"), _latin1_encode, None),
    ]
}
