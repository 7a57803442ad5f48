"""The byte-level pieces of the RDB format: exact buffered reads feeding the CRC64,
LZF and module type names.

Kept apart from the reader (:mod:`~sesstool.stores.rdb_format`) so that each can be
tested (and fuzzed) on its own.
"""

from __future__ import annotations

import functools
import typing as t

#: bytes read from the file at a time
CHUNK = 1 << 20


class RdbCorrupt(Exception):
    """The file is not a snapshot this reader can read; ``offset`` is where it failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset:,})")
        self.offset = offset


class Source:
    """Exact reads from a file, buffered, each byte counted into the CRC64 once."""

    def __init__(self, fh: t.BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size
        self.buf, self.pos, self.base = b"", 0, 0
        self.crc, self.crc_from = 0, 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def crc_now(self) -> int:
        self.crc = crc64(self.crc, memoryview(self.buf)[self.crc_from : self.pos])
        self.crc_from = self.pos
        return self.crc

    def _fill(self) -> None:
        self.crc_now()
        self.base += len(self.buf)
        self.buf, self.pos, self.crc_from = self.fh.read(CHUNK), 0, 0
        if not self.buf:
            raise RdbCorrupt("the file ends early (truncated?)", self.offset)

    def _check(self, n: int) -> None:
        # Before any allocation: a length the file cannot hold is corruption.
        if n > self.size - self.offset:
            raise RdbCorrupt(f"a length of {n:,} bytes runs past the end of the file", self.offset)

    def read(self, n: int) -> bytes:
        self._check(n)
        end = self.pos + n
        if end <= len(self.buf):
            out = self.buf[self.pos : end]
            self.pos = end
            return out
        parts = []
        while n:
            if self.pos == len(self.buf):
                self._fill()
            take = min(n, len(self.buf) - self.pos)
            parts.append(self.buf[self.pos : self.pos + take])
            self.pos += take
            n -= take
        return b"".join(parts)

    def skip(self, n: int) -> None:
        self._check(n)
        while n:
            if self.pos == len(self.buf):
                self._fill()
            take = min(n, len(self.buf) - self.pos)
            self.pos += take
            n -= take

    def byte(self) -> int:
        if self.pos == len(self.buf):
            self._fill()
        self.pos += 1
        return self.buf[self.pos - 1]



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
