"""A streaming reader of Redis snapshot (RDB) files: the least that sessions need.

Why our own and not rdb-py (0.4.0, a Rust extension; the tests still use it to
cross-check this reader on real dumps): it reads what Redis 7.0 to 8.6 and Valkey
8 write (RDB 10 to 13; not Valkey 9's), but for an offline session store it falls
short in ways that matter here:

- stream keys and module values are silently omitted, so a listing could not
  report them as the live store's scan does (``kind`` ``stream``, ``vectorset``);
- every hash, list, set and sorted set is decoded into Python objects only to be
  dropped: a big non-session key costs memory the size of its contents;
- the trailing CRC64 is not verified (a flipped byte in a value goes unnoticed);
- any malformed value ends the whole iteration, so one bad session would stop a
  bulk command, and no value size can be bounded before it is materialised.

This reader keeps only string values of the keys asked for; every other value is
skipped by its encoded lengths, never decoded. Budgets: a declared length past the
end of the file is corruption, found before anything is allocated; a value kept is
at most ``value_limit`` bytes, LZF output included (a bomb inflates to no more);
longer keys than ``key_limit`` are skipped. Every byte read feeds the CRC64 that
the file's end is checked against.

Format: Redis' ``rdb.c`` and ``rdb.h`` (versions 1 to 13 under a ``REDIS`` header)
and Valkey 9's (80 under ``VALKEY``, where type 22 and opcode 0xf3 mean other
things). Tested on dumps real servers wrote: Redis 7.0's (RDB 10, written live by
the tests) and those committed in tests/data/rdb, of Redis 7.2 and Valkey 8.0 and
8.1 (RDB 11), Redis 7.4 and 8.0 (RDB 12: hashes with field TTLs; 8.0's vector
sets), Redis 8.6 (RDB 13: key metadata, streams with idempotent producers), Valkey
9.1 (RDB 80), a cluster node (slot-info records) and a module's values and aux
data. What it cannot read (another version, an unknown type, a module value of the
4.0 release candidates) is refused by name, never guessed at.
"""

from __future__ import annotations

import struct
import typing as t
from dataclasses import dataclass

from sesstool.stores.rdb_codec import lzf_decompress, module_type_name
from sesstool.stores.rdb_source import RdbCorrupt, Source

__all__ = ["Budget", "KeyRecord", "RdbCorrupt", "RdbReader"]

#: the format versions this reader knows under each header, and who writes the newest
#: (tested): Redis' numbering, which Valkey kept up to 8 (RDB 11), and Valkey's own from
#: 9 on, which starts at 80 to leave 12 to 79 to Redis. Other files are refused.
FORMATS: dict[bytes, tuple[range, str]] = {
    b"REDIS": (range(1, 14), "Redis 8.6"),
    b"VALKEY": (range(80, 81), "Valkey 9"),
}

# opcodes (rdb.h); 0xf3 is Redis 8.6's key metadata and Valkey 9's slot import
_F3, _SLOT_INFO, _FUNCTION2, _FUNCTION_PRE_GA, _MODULE_AUX = 0xF3, 0xF4, 0xF5, 0xF6, 0xF7
_IDLE, _FREQ, _AUX, _RESIZEDB, _EXPIRETIME_MS, _EXPIRETIME, _SELECTDB, _EOF = range(0xF8, 0x100)

#: Valkey 9's hash with field TTLs: its type 22, which Redis' 7.4 release candidates
#: gave another layout; read under this number, outside the file's range
_VALKEY_HASH_2 = 0x116

#: RDB value type -> what Redis' TYPE (and so SCAN's TYPE) calls it
KINDS: dict[int, str] = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset", 6: "module", 7: "module",
    9: "hash", 10: "list", 11: "set", 12: "zset", 13: "hash", 14: "list", 15: "stream", 16: "hash",
    17: "zset", 18: "list", 19: "stream", 20: "set", 21: "stream", 22: "hash", 23: "hash", 24: "hash",
    25: "hash", 26: "stream", _VALKEY_HASH_2: "hash",
}  # fmt: skip
#: :meth:`RdbReader._plain_string` cannot take this record: the general path reads it
_GENERAL = object()
_BLOBS = frozenset({9, 10, 11, 12, 13, 16, 17, 20, 23})  # one string holds the whole value
#: type number in the file -> the type read, by header
_TYPES = {b"REDIS": {n: n for n in KINDS if n != _VALKEY_HASH_2},
          b"VALKEY": {**{n: n for n in KINDS if n < 22}, 22: _VALKEY_HASH_2}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Budget:
    """What one value or key may cost in memory."""

    value_limit: int = 64 << 20
    key_limit: int = 64 << 10


@dataclass(slots=True)
class KeyRecord:
    """One key of the selected database.

    :param value: the string value when asked for and readable, else ``None``.
    :param problem: why a string value asked for could not be read (corrupt LZF data,
        over the budget); the rest of the file is still read.
    """

    key: bytes
    kind: str
    expire_ms: int | None
    value: bytes | None = None
    problem: str | None = None


class RdbReader:
    """One pass over an RDB file (the caller opens and closes ``fh``)."""

    def __init__(self, fh: t.BinaryIO, size: int, budget: Budget | None = None) -> None:
        self.src = Source(fh, size)
        self.budget = budget or Budget()
        self.aux: dict[bytes, bytes] = {}
        magic = self.src.read(9) if size >= 9 else b""
        self.header_name = b"VALKEY" if magic.startswith(b"VALKEY") else b"REDIS"
        digits = magic[len(self.header_name) :]
        if not magic.startswith(self.header_name) or not digits.isdigit():
            raise RdbCorrupt("not a Redis snapshot (no REDIS or VALKEY header)", 0)
        self.version = int(digits)
        known, self.writers = FORMATS[self.header_name]
        if self.version not in known:
            span = f"{known.start} to {known.stop - 1}" if len(known) > 1 else f"only {known.start}"
            raise RdbCorrupt(f"RDB format version {self.version} is not one this reader knows under a "
                             f"{self.header_name.decode()} header ({span}, the newest as {self.writers} "
                             "write it)", len(self.header_name))  # fmt: skip
        self.types = _TYPES[self.header_name]
        self._opcode: int | None = None
        #: keys of the selected database skipped for being over ``key_limit``
        self.oversized_keys = 0

    # -- primitives ------------------------------------------------------------------

    def length(self) -> int:
        value, encoded = self.src.length()
        if encoded:
            raise RdbCorrupt("an encoded string where a length belongs", self.src.offset)
        return value

    def count(self, per_item: int = 1) -> int:
        """A declared number of elements, each at least ``per_item`` bytes long."""
        n = self.length()
        if n * per_item > self.src.size - self.src.offset:
            raise RdbCorrupt(f"{n:,} elements declared, more than the rest of the file holds", self.src.offset)
        return n

    def string(self, limit: int) -> bytes | str:
        """A string; when longer than ``limit`` (or undecodable), it is skipped and
        the reason comes back as ``str``."""
        n, encoded = self.src.length()
        if not encoded:
            if n > limit:
                self.src.skip(n)
                return f"{n:,} bytes, over the {limit:,}-byte budget"
            return self.src.read(n)
        if n in (0, 1, 2):  # an integer stored as 1, 2 or 4 bytes, little-endian
            size = 1 << n
            return str(int.from_bytes(self.src.read(size), "little", signed=True)).encode()
        if n == 3:
            compressed, length = self.length(), self.length()
            if length > limit:
                self.src.skip(compressed)
                return f"{length:,} bytes, over the {limit:,}-byte budget"
            try:
                return lzf_decompress(self.src.read(compressed), length)
            except ValueError as e:  # framed by its lengths: the rest of the file reads on
                return f"corrupt LZF data ({e})"
        raise RdbCorrupt(f"an unknown string encoding {n}", self.src.offset)

    def skip_string(self) -> None:
        n, encoded = self.src.length()
        if not encoded:
            self.src.skip(n)
        elif n in (0, 1, 2):
            self.src.skip(1 << n)
        elif n == 3:
            compressed = self.length()
            self.length()
            self.src.skip(compressed)
        else:
            raise RdbCorrupt(f"an unknown string encoding {n}", self.src.offset)

    def _strings(self, n: int) -> None:
        for _ in range(n):
            self.skip_string()

    def _lengths(self, n: int) -> None:
        for _ in range(n):
            self.length()

    # -- the pass --------------------------------------------------------------------

    def header(self) -> dict[bytes, bytes]:
        """The auxiliary fields before the first key (``ctime``, ``redis-ver``, ...)."""
        while True:
            op = self.src.byte()
            if op != _AUX:
                self._opcode = op
                return self.aux
            self._aux()

    def _aux(self) -> None:
        key, value = self.string(1 << 10), self.string(1 << 10)
        if isinstance(key, bytes) and isinstance(value, bytes):
            self.aux[key] = value

    def entries(
        self, db: int, want: t.Callable[[bytes], bool], *, values: bool = True
    ) -> t.Iterator[KeyRecord]:
        """Every key of database ``db`` that ``want`` accepts, in file order; then the
        checksum is verified.

        :raises RdbCorrupt: where the file stops making sense, or at its end when the
            checksum does not match.
        """
        if self._opcode is None:
            self.header()
        current, expire_ms = 0, None
        op = t.cast(int, self._opcode)
        while op != _EOF:
            if op == 0:  # a string: nearly every key of a session store
                entry = self._plain_string(current == db, want, values, expire_ms)
                if entry is _GENERAL:
                    entry = self._key_value(op, current == db, want, values, expire_ms)
                if entry is not None:
                    yield t.cast(KeyRecord, entry)
                expire_ms = None
            elif op == _EXPIRETIME_MS:
                expire_ms = int.from_bytes(self.src.read(8), "little", signed=True)
            elif op == _SELECTDB:
                current = self.length()
            elif op == _EXPIRETIME:
                expire_ms = int(struct.unpack("<i", self.src.read(4))[0]) * 1000
            elif op == _RESIZEDB:
                self.length(), self.length()
            elif op == _AUX:
                self._aux()
            elif op == _IDLE:
                self.length()
            elif op == _FREQ:
                self.src.byte()
            elif op == _FUNCTION2:
                self.skip_string()
            elif op == _MODULE_AUX:
                self.length(), self.length(), self.length()
                self._module_values()
            elif op == _SLOT_INFO:
                self.length(), self.length(), self.length()
            elif op == _F3 and self.header_name == b"VALKEY":
                self.skip_string()  # a slot import: the job's name, then its slot ranges
                self._lengths(2 * self.count(2))
            elif op == _F3:
                for _ in range(self.count(5)):  # a key's metadata: per module class, its id, then typed values
                    self.src.skip(4)
                    self._module_values()
            elif op in self.types:
                entry = self._key_value(self.types[op], current == db, want, values, expire_ms)
                if entry is not None:
                    yield entry
                expire_ms = None
            else:
                raise RdbCorrupt(self._unknown(op), self.src.offset - 1)
            op = self.src.byte()
        self._verify_checksum()

    def _plain_string(
        self, in_db: bool, want: t.Callable[[bytes], bool], values: bool, expire_ms: int | None
    ) -> KeyRecord | None | object:
        """A string record the source can slice out whole (what a session is), or
        :data:`_GENERAL` (nothing consumed) for the general path to read."""
        pair = self.src.short_pair(self.budget.key_limit, self.budget.value_limit)
        if pair is None:
            return _GENERAL
        key, value = pair
        if not (in_db and want(key)):
            return None
        return KeyRecord(key, "string", expire_ms, value if values else None)

    def _key_value(
        self, kind: int, in_db: bool, want: t.Callable[[bytes], bool], values: bool, expire_ms: int | None
    ) -> KeyRecord | None:
        key = self.string(self.budget.key_limit)
        if in_db and isinstance(key, str):
            self.oversized_keys += 1
        wanted = in_db and isinstance(key, bytes) and want(key)
        if kind == 0 and wanted and values:
            value = self.string(self.budget.value_limit)
            if isinstance(value, str):
                return KeyRecord(t.cast(bytes, key), "string", expire_ms, problem=value)
            return KeyRecord(t.cast(bytes, key), "string", expire_ms, value)
        name = self._skip_value(kind)
        return KeyRecord(t.cast(bytes, key), name, expire_ms) if wanted else None

    def _skip_value(self, kind: int) -> str:
        """Skip one value of RDB type ``kind``; return its kind as Redis names it."""
        name = KINDS[kind]
        if kind == 0 or kind in _BLOBS:
            self.skip_string()
        elif kind in (1, 2, 14):
            self._strings(self.count())
        elif kind == 4:
            self._strings(2 * self.count(2))
        elif kind == 3:
            for _ in range(self.count(2)):
                self.skip_string()
                special = self.src.byte()
                if special < 253:
                    self.src.skip(special)
        elif kind == 5:
            for _ in range(self.count(9)):
                self.skip_string()
                self.src.skip(8)
        elif kind == 18:
            for _ in range(self.count(2)):
                self.length()
                self.skip_string()
        elif kind in (22, 24):
            if kind == 24:
                self.src.skip(8)
            for _ in range(self.count(3)):
                self.length()
                self._strings(2)
        elif kind == 25:
            self.src.skip(8)
            self.skip_string()
        elif kind == _VALKEY_HASH_2:
            for _ in range(self.count(10)):  # field, value, expiry in ms (-1 for none)
                self._strings(2)
                self.src.skip(8)
        elif kind == 7:
            name = module_type_name(self.length())
            self._module_values()
        elif kind == 6:
            raise RdbCorrupt("a module value in the old format (RDB type 6) cannot be skipped "
                             "without its module", self.src.offset)  # fmt: skip
        else:
            self._skip_stream(kind)
        return name

    def _module_values(self) -> None:
        # Module data written with the typed opcodes (module2, module aux): skippable.
        while True:
            op = self.length()
            if op == 0:
                return
            if op in (1, 2):
                self.length()
            elif op in (3, 4):
                self.src.skip(4 if op == 3 else 8)
            elif op == 5:
                self.skip_string()
            else:
                raise RdbCorrupt(f"an unknown module value opcode {op}", self.src.offset)

    def _skip_stream(self, kind: int) -> None:
        for _ in range(self.count(2)):
            self._strings(2)  # the node's master ID and its listpack
        self.length(), self.length(), self.length()  # length, last ID
        if kind >= 19:
            for _ in range(5):  # first ID, max deleted ID, entries added
                self.length()
        for _ in range(self.count(3)):  # consumer groups
            self.skip_string()
            self.length(), self.length()
            if kind >= 19:
                self.length()
            for _ in range(self.count(17)):  # pending entries: raw ID, delivery time, count
                self.src.skip(24)
                self.length()
            for _ in range(self.count(9)):  # consumers
                self.skip_string()
                self.src.skip(16 if kind >= 21 else 8)
                self.src.skip(16 * self.count(16))
        if kind >= 26:  # idempotent producers (8.6): two settings, each producer's ids, two counters
            self.length(), self.length()
            for _ in range(self.count(2)):
                self.skip_string()
                for _ in range(self.count(3)):
                    self.skip_string()
                    self.length(), self.length()
            self.length(), self.length()

    def _verify_checksum(self) -> None:
        if self.version < 5:
            return
        computed = self.src.crc_now()
        stored = int.from_bytes(self.src.read(8), "little")
        if stored and stored != computed:
            raise RdbCorrupt("the checksum does not match: the file is damaged", self.src.offset - 8)

    def _unknown(self, op: int) -> str:
        # Every other opcode (0xf4 to 0xff) is read above: the rest are value types.
        if op == _FUNCTION_PRE_GA:
            return ("a function library in the format of Redis 7.0's release candidates (opcode 0xf6), "
                    "which no released Redis reads either")  # fmt: skip
        header = self.header_name.decode()
        return (f"a value of RDB type {op}, which this reader does not know under a {header} header "
                f"(types 0 to {max(self.types)}, as {self.writers} write them): a newer server's format?")  # fmt: skip
