"""Write pickle-era sessions back as pickles, without importing the app or markupsafe.

Flask-Session up to 0.6 stored ``pickle.dumps(dict(session))``. When sesstool edits
or imports such a session it keeps pickle, with the protocol of the original value
when it can tell (:func:`protocol_of`), else Python's default.

Every value :mod:`sesstool.codecs.safepickle` reads back is a real Python object (dict,
datetime, tuple, UUID, ...) that pickles as itself, with two exceptions:

- :class:`sesstool.codecs.values.Markup` is written as ``markupsafe.Markup``, exactly as
  pickling a real Markup would (same opcodes, same bytes), so the app gets its
  Markup back. sesstool does not need markupsafe installed for this.
- :class:`sesstool.codecs.values.OpaqueObject` (an object of one of the app's classes that
  sesstool never imports) cannot be re-created: :func:`dumps` refuses it, naming
  where it sits, instead of writing something the app would misread.
"""

from __future__ import annotations

import collections
import io
import pickle
import typing as t

from sesstool.codecs.tagged import MsgpackExt
from sesstool.codecs.values import Markup, OpaqueObject
from sesstool.errors import UndecodableValue


class _Markup(str):
    """Stands for ``markupsafe.Markup`` while pickling: same layout, same reduce."""

    __slots__ = ()


_Markup.__module__ = "markupsafe"
_Markup.__qualname__ = _Markup.__name__ = "Markup"


# The pure-Python pickler: its output is the C pickler's, byte for byte, and unlike
# the C one it lets a subclass decide how one class is named (typeshed leaves its
# internals untyped, hence Any).
_PurePickler: t.Any = pickle._Pickler


class _Pickler(_PurePickler):  # type: ignore[misc]
    """Names :class:`_Markup` ``markupsafe.Markup`` without importing markupsafe."""

    def save_global(self, obj: t.Any, name: str | None = None) -> None:
        if obj is not _Markup:
            super().save_global(obj, name)
            return
        if self.proto >= 4:
            self.save("markupsafe")
            self.save("Markup")
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + b"markupsafe\nMarkup\n")
        self.memoize(obj)


def protocol_of(raw: bytes) -> int | None:
    """The pickle protocol ``raw`` was written with, or ``None`` when it is not a pickle.

    Protocols 2 and later start with a PROTO opcode; protocol 0 is text opcodes
    (a dict starts ``(dp``), protocol 1 binary ones without PROTO.
    """
    if len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= pickle.HIGHEST_PROTOCOL:
        return raw[1]
    if raw[:3] == b"(dp":
        return 0
    if raw[:1] == b"}":
        return 1
    return None


def dumps(data: dict[t.Any, t.Any], protocol: int | None = None) -> bytes:
    """Pickle a session as Flask-Session < 0.7 did: ``pickle.dumps(dict(session))``.

    :param protocol: the pickle protocol; ``None`` for Python's default.
    :raises UndecodableValue: when ``data`` holds a value sesstool cannot re-create
        (an object of the app's own classes, read as an opaque stand-in).
    """
    prepared = _prepare(data, "")
    out = io.BytesIO()
    try:
        _Pickler(out, pickle.DEFAULT_PROTOCOL if protocol is None else protocol).dump(prepared)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise UndecodableValue(f"cannot write this session as a pickle: {e}") from e
    return out.getvalue()


def _prepare(value: t.Any, path: str) -> t.Any:
    """A copy of ``value`` in which sesstool's stand-ins become what the app pickled."""
    kind = type(value)
    if kind is dict:
        return {_prepare(k, path): _prepare(v, _join(path, k)) for k, v in value.items()}
    if kind is list:
        return [_prepare(item, _join(path, i)) for i, item in enumerate(value)]
    if kind is Markup:
        return _Markup(value)
    if isinstance(value, OpaqueObject):
        raise UndecodableValue(
            f"cannot write back {_where(path)}: it holds a pickled {value.class_path} object, "
            "which sesstool reads without importing the app and cannot re-create"
        )
    if isinstance(value, MsgpackExt):
        raise UndecodableValue(f"cannot write back {_where(path)}: a msgpack extension value has no pickle form")
    if kind is tuple:
        return tuple(_prepare(item, _join(path, i)) for i, item in enumerate(value))
    if kind is set:
        return {_prepare(item, path) for item in value}
    if kind is frozenset:
        return frozenset(_prepare(item, path) for item in value)
    if kind is collections.OrderedDict:
        return collections.OrderedDict((_prepare(k, path), _prepare(v, _join(path, k))) for k, v in value.items())
    if type(value).__module__.startswith("sesstool"):
        raise UndecodableValue(f"cannot write back {_where(path)}: {type(value).__name__} is sesstool's own type")
    return value


def _join(path: str, part: t.Any) -> str:
    return f"{path}.{part}" if path else str(part)


def _where(path: str) -> str:
    return f"the value at {path!r}" if path else "the session"
