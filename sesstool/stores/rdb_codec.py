"""The byte-level pieces of the RDB format: CRC64, LZF and module type names.

Pure functions over bytes, kept apart from the reader so that each can be tested
(and fuzzed) on its own.
"""

from __future__ import annotations

import functools
import typing as t


def crc64(crc: int, data: bytes | memoryview) -> int:
    """Redis' CRC64 (CRC-64/Jones, as ``crc64.c``) of ``data``, continuing from ``crc``
    (0 to start). In C (anycrc): every byte of a snapshot passes through here, and a
    table loop in Python ran at 25 MB/s, more than all the parsing."""
    return int(_redis_crc64().calc(data, crc))


@functools.cache
def _redis_crc64() -> t.Any:
    import anycrc

    return anycrc.Model("CRC64-REDIS")


def lzf_decompress(data: bytes, length: int) -> bytes:
    """LZF ``data`` expanded to exactly ``length`` bytes, never more.

    The caller has bounded ``length``; output past it (a bomb, or plain corruption)
    stops at once.

    :raises ValueError: for data that is not LZF of that length.
    """
    out = bytearray()
    i, end = 0, len(data)
    while i < end:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if i + run > end or len(out) + run > length:
                raise ValueError("a literal run past the end")
            out += data[i : i + run]
            i += run
            continue
        run = ctrl >> 5
        if run == 7:
            if i >= end:
                raise ValueError("a back reference cut short")
            run += data[i]
            i += 1
        run += 2
        if i >= end:
            raise ValueError("a back reference cut short")
        start = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        if start < 0:
            raise ValueError("a back reference before the start")
        if len(out) + run > length:
            raise ValueError("more output than declared")
        distance = len(out) - start
        if distance >= run:
            out += out[start : start + run]
        else:  # overlapping: the last `distance` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (run // distance + 1))[:run]
    if len(out) != length:
        raise ValueError(f"{len(out):,} bytes where {length:,} were declared")
    return bytes(out)


_MODULE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def module_type_name(module_id: int) -> str:
    """The 9-character type name a module value's 64-bit id encodes (what Redis'
    TYPE reports, e.g. ``ReJSON-RL``); the low 10 bits are the encoding version."""
    return "".join(_MODULE_CHARSET[(module_id >> (58 - 6 * j)) & 63] for j in range(9))
