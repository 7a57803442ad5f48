"""Python stand-ins for session values that sesstool must show without importing the app.

A pickled session may hold objects of the app's own classes. sesstool never imports
or calls them: the restricted unpickler builds an :class:`OpaqueObject` that names
the class and keeps what the pickle said about it, so it can be shown and, where
the bytes were kept, written back unchanged.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field


class Markup(str):
    """Text marked safe for HTML (``markupsafe.Markup``), kept distinct from ``str``.

    sesstool does not depend on markupsafe; this subclass carries the distinction so
    that the tagged form and re-encoding can restore a real ``Markup`` in the app.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Markup({str.__repr__(self)})"


@dataclass(eq=True)
class OpaqueObject:
    """An object of a class sesstool will not import, as the pickle described it.

    :param class_path: ``module.QualName`` of the class (or callable) the pickle named.
    :param args: the arguments the pickle would have called it with.
    :param state: what the pickle would have passed to ``__setstate__``, or ``None``.
    :param items: what the pickle appended to it (a ``list`` subclass, APPENDS).
    :param dict_items: the ``(key, value)`` pairs the pickle set on it (a ``dict``
        subclass, SETITEMS), in order.
    :param new: ``True`` when the pickle made it with ``cls.__new__(cls, *args)``
        (NEWOBJ, how protocol 2+ pickles plain objects) rather than ``cls(*args)``;
        a writer needs this to rebuild the same pickle.
    :param calls: the argument lists the built object itself was then called with,
        in order (``getattr(...)(...)`` chains); empty for an ordinary object.
    """

    class_path: str
    args: list[t.Any] = field(default_factory=list)
    state: t.Any = None
    items: list[t.Any] = field(default_factory=list)
    dict_items: list[tuple[t.Any, t.Any]] = field(default_factory=list)
    new: bool = False
    calls: list[list[t.Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<{self.class_path} object (not imported)>"

    def __hash__(self) -> int:
        return hash(self.class_path)
