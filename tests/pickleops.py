"""Write pickles opcode by opcode, for hostile values no pickler would produce.

Every helper returns protocol-4 opcode bytes; :func:`session` wraps a payload as
``{"x": payload}`` so that a decoder sees a session. Memo indices count from 0 in
the order MEMOIZE runs (the wrapping dict and key are not memoized).
"""

from __future__ import annotations

import pickle
import struct

PROTO = b"\x80\x04"
MEMOIZE = pickle.MEMOIZE
POP = pickle.POP
MARK = pickle.MARK


def text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        return pickle.SHORT_BINUNICODE + bytes([len(data)]) + data
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def raw_bytes(value: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(value)) + value


def long(value: int) -> bytes:
    data = pickle.encode_long(value)
    if len(data) < 256:
        return pickle.LONG1 + bytes([len(data)]) + data
    return pickle.LONG4 + struct.pack("<i", len(data)) + data


def get(index: int) -> bytes:
    if index < 256:
        return pickle.BINGET + bytes([index])
    return pickle.LONG_BINGET + struct.pack("<I", index)


def global_(module: str, name: str) -> bytes:
    return text(module) + text(name) + pickle.STACK_GLOBAL


def call(module: str, name: str, *args: bytes) -> bytes:
    """``module.name(*args)``, each argument given as opcodes that push one value."""
    return global_(module, name) + MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


def doubling(levels: int, leaf: bytes, *, kind: str = "tuple", first: int = 0) -> bytes:
    """A value 2**levels leaves wide in a few bytes a level: each level is a tuple
    (or list) holding the level below twice. Uses memo ``first .. first+levels``."""
    ops = [leaf, MEMOIZE, POP]
    for level in range(first, first + levels):
        if kind == "tuple":
            ops.append(get(level) + get(level) + pickle.TUPLE2 + MEMOIZE + POP)
        else:
            ops.append(pickle.EMPTY_LIST + MEMOIZE + MARK + get(level) + get(level) + pickle.APPENDS + POP)
    ops.append(get(first + levels))
    return b"".join(ops)


def session(payload: bytes) -> bytes:
    """A whole pickle of ``{"x": payload}``."""
    return PROTO + pickle.EMPTY_DICT + text("x") + payload + pickle.SETITEM + pickle.STOP
