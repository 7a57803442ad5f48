"""Stand-ins for what a pickle names outside the allow-list, and the allow-list itself.

A pickle may name any class or function of the app (or ``os.system``). The
restricted unpickler never imports it: :func:`stand_in_class` makes a class, private
to one unpickler, whose instances record how the pickle would have built the
object (arguments, state, items) and become :class:`~sesstool.codecs.values.OpaqueObject`
values. The stand-ins keep everything on the instance: nothing a pickle does to one
reaches any other value or any other session.

:data:`ALLOWED` maps the names a pickle may really use to checked builders
(:mod:`sesstool.codecs.safecalls`, plus the datetime and copyreg ones here, which must know
about stand-ins).
"""

from __future__ import annotations

import datetime
import pickle
import typing as t
import uuid

from sesstool.codecs.safecalls import ALLOWED as _CHECKED
from sesstool.codecs.safecalls import Allowed, Args, Kwargs, refuse, time_type
from sesstool.codecs.values import Markup, OpaqueObject

if t.TYPE_CHECKING:
    from sesstool.codecs.safepickle import SafeUnpickler


class StandIn(OpaqueObject):
    """Base of the stand-in classes made for globals outside the allow-list."""

    class_path_of_type: t.ClassVar[str] = ""

    # While a pickle is read, a stand-in is only ever itself: comparing two by their
    # contents (a set of a million stand-ins of one class all collide) would cost
    # time the budget cannot stop inside one C call.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __new__(cls, *args: t.Any, **kwargs: t.Any) -> StandIn:
        # NEWOBJ calls only __new__, REDUCE calls the class: both must end up recorded.
        self = object.__new__(cls)
        OpaqueObject.__init__(self, class_path=cls.class_path_of_type, args=list(args), new=True)
        if kwargs:
            self.state = {"kwargs": kwargs}
        return self

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        # Only a call of the class (REDUCE, INST, OBJ) runs __init__ after __new__.
        self.new = False

    def __call__(self, *args: t.Any) -> StandIn:
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

    def __reduce__(self) -> t.NoReturn:
        raise pickle.PicklingError(f"{self.class_path} is an opaque object: sesstool cannot re-create it")


def stand_in_class(path: str) -> type[StandIn]:
    name = path.rpartition(".")[2] or path
    return type(name, (StandIn,), {"class_path_of_type": path, "__slots__": ()})


# A datetime or time whose tzinfo is an object outside the allow-list (pytz, zoneinfo,
# dateutil) cannot be built; it is kept as an opaque datetime so the rest of the
# session still decodes.
_OpaqueDatetime = stand_in_class("datetime.datetime")
_OpaqueTime = stand_in_class("datetime.time")
def _reconstruct(u: SafeUnpickler, args: Args, kwargs: Kwargs) -> t.Any:
    """copyreg._reconstructor(cls, base, state), how protocols 0 and 1 make plain
    objects: a stand-in records it; of the allow-list only ``Markup`` (a str
    subclass) and ``UUID`` (filled by BUILD) are made this way."""
    if len(args) != 3 or kwargs:
        raise refuse("copyreg._reconstructor()")
    cls, base, state = args
    if isinstance(cls, type) and issubclass(cls, StandIn):
        return u.call(cls, () if state is None else (state,), {})
    path = (getattr(cls, "path", None), getattr(base, "path", None))
    if path == ("markupsafe.Markup", "builtins.str") and type(state) is str:
        return Markup(state)
    if path == ("uuid.UUID", "builtins.object") and state is None:
        return object.__new__(uuid.UUID)
    raise pickle.UnpicklingError("copyreg._reconstructor with a class outside the allow-list")


ALLOWED: dict[tuple[str, str], Allowed] = {
    **_CHECKED,
    ("datetime", "datetime"): Allowed("datetime.datetime", time_type(datetime.datetime, "datetime()", _OpaqueDatetime)),
    ("datetime", "time"): Allowed("datetime.time", time_type(datetime.time, "time()", _OpaqueTime)),
    ("copyreg", "_reconstructor"): Allowed("copyreg._reconstructor", _reconstruct),
}
