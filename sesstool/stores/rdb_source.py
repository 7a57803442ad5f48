"""Exact, buffered reads from a Redis snapshot file, each byte counted into the
CRC64 its end is checked against; a length the rest of the file cannot hold is
corruption, found before anything is allocated."""

from __future__ import annotations

import typing as t

from sesstool.stores.rdb_codec import crc64

_CHUNK = 1 << 20


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
        self.buf, self.pos, self.crc_from = self.fh.read(_CHUNK), 0, 0
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

    def length(self) -> tuple[int, bool]:
        """An RDB length, and whether it is a string's special encoding instead."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return int.from_bytes(self.read(4), "big"), False
        if first == 0x81:
            return int.from_bytes(self.read(8), "big"), False
        raise RdbCorrupt(f"an unknown length encoding 0x{first:02x}", self.offset - 1)

    def short_pair(self, first_limit: int, second_limit: int) -> tuple[bytes, bytes] | None:
        """The next two strings (a record's key and value) when both have plain lengths
        under 16 KiB, within their limits, and lie whole in the buffer: sliced out at
        once, at a fraction of the cost of reading them piece by piece. ``None``, with
        nothing consumed, for anything else."""
        buf = self.buf
        first = _short_string(buf, self.pos)
        if first is None or first[1] - first[0] > first_limit:
            return None
        second = _short_string(buf, first[1])
        if second is None or second[1] - second[0] > second_limit:
            return None
        self.pos = second[1]
        return buf[first[0] : first[1]], buf[second[0] : second[1]]


def _short_string(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Where the string at ``pos`` lies in ``buf`` when its length is plain (6 or 14
    bits) and it is whole in ``buf``; ``None`` otherwise."""
    if pos + 2 > len(buf):
        return None
    first = buf[pos]
    if first < 0x40:
        start = pos + 1
        stop = start + first
    elif first < 0x80:
        start = pos + 2
        stop = start + (((first & 0x3F) << 8) | buf[pos + 1])
    else:
        return None
    return (start, stop) if stop <= len(buf) else None
