"""cachelib's ``FileSystemCache`` file format, parsed and written without unpickling.

A file is a 4-byte expiry, ``struct.pack("I", ...)`` (native byte order, so little
endian on every machine Flask runs on; ``0`` never expires), then
``pickle.dump(value, f, pickle.HIGHEST_PROTOCOL)``. Its name is the hex digest of
the cache key (Flask-Session's ``SESSION_KEY_PREFIX`` + sid): sha256 from cachelib
0.10 on, md5 before (Flask-Session 0.5's cachelib 0.13 still defaults to md5).

What the pickle holds: every Flask-Session version that uses this format (0.2 to
0.8, ``filesystem`` and ``cachelib`` types alike) stores ``dict(session)``; 0.7+'s
``SESSION_SERIALIZATION_FORMAT`` is not used by these backends. So the pickle after
the header *is* the session value, byte for byte what Flask-Session <= 0.6 wrote to
Redis: the store yields it as it is, and the codec layer's auto-detection decodes it
with the budgeted :class:`~sesstool.codecs.safepickle.SafeUnpickler`, like any
pickled session. The store itself never unpickles a session.

A value that is not a pickle (an import of msgpack bytes, the contract suite's
``b"v001"``) cannot be written as it is: cachelib would fail to load it. It is
written the way cachelib writes a ``bytes`` value, as a pickled ``bytes`` object,
and read back unwrapped. So that reading always inverts writing, a value that is
itself such a wrapper is wrapped once more. Unwrapping is a byte parser of the
exact opcodes ``pickle.dumps(b"...", 3..5)`` emits, not an unpickler.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import struct
import time

from sesstool.codecs.budget import MAX_BYTES

#: the expiry header: cachelib's ``struct.pack("I", ...)``, native order, 4 bytes
HEADER = struct.Struct("=I")
#: the largest expiry the header holds (2106-02-07)
MAX_EXPIRY = 2**32 - 1
#: files larger than this are skipped: a pickle this big is past the decoding budget
#: (:func:`~sesstool.codecs.safepickle.safe_loads` charges twice its length)
MAX_FILE = MAX_BYTES // 2
#: what cachelib names its temporary files, and so ignores; ours too
TEMP_SUFFIX = ".__wz_cache"
#: cachelib's item-count file key (its name is the hash of this, without prefix)
COUNT_KEY = b"__wz_cache_count"
#: write protocol: what cachelib's ``FileSystemSerializer`` uses on Python 3.8+
PROTOCOL = 5

HASHES = ("sha256", "md5")
_HEX = frozenset(b"0123456789abcdef")


def digest(method: str, key: bytes) -> str:
    """The file name cachelib gives ``key`` with ``method`` (``sha256`` or ``md5``)."""
    if method == "md5":  # a file name, not a security use (FIPS builds allow this)
        return hashlib.md5(key, usedforsecurity=False).hexdigest()
    return hashlib.sha256(key).hexdigest()


COUNT_FILES = frozenset(digest(method, COUNT_KEY) for method in HASHES)


def file_name_hash(name: bytes) -> str | None:
    """``sha256`` or ``md5`` when ``name`` has the shape of a cachelib file name
    (64 or 32 lowercase hex digits), else ``None``."""
    if len(name) not in (32, 64) or not _HEX.issuperset(name):
        return None
    return "sha256" if len(name) == 64 else "md5"


def expiry_for(ttl: int | None, now: float | None = None) -> int:
    """The header for ``ttl`` seconds from now (``None``: never), as cachelib
    computes it (``int(time()) + timeout``).

    :raises OverflowError: past what the header holds.
    """
    if ttl is None:
        return 0
    expiry = int(time.time() if now is None else now) + ttl
    if expiry > MAX_EXPIRY:
        raise OverflowError(f"an expiry {ttl:,}s from now is past what cachelib's 4-byte header holds (2106)")
    return max(expiry, 1)  # 0 would mean "never"


def ttl_of(expiry: int, now: float | None = None) -> int | None:
    """The store contract's TTL for a header: ``None`` for 0 (never), whole seconds
    left rounded up, ``0`` once passed (cachelib still serves it up to ``expiry``)."""
    if expiry == 0:
        return None
    left = expiry - (time.time() if now is None else now)
    return max(0, math.ceil(left))


class BadFile(ValueError):
    """A file that is not a cachelib entry sesstool reads (the message says why)."""


def parse(content: bytes) -> tuple[int, bytes]:
    """``(expiry, value)`` of a file's bytes: the value unwrapped when it is a pickled
    ``bytes`` object, else the pickle as it is.

    :raises BadFile: for a short header or nothing after it.
    """
    if len(content) < HEADER.size + 1:
        raise BadFile(f"{len(content)} bytes: shorter than a header and a value")
    (expiry,) = HEADER.unpack_from(content)
    body = content[HEADER.size :]
    unwrapped = unwrap(body)
    return expiry, body if unwrapped is None else unwrapped


def build(expiry: int, value: bytes) -> bytes:
    """The file bytes for ``value``: the inverse of :func:`parse`."""
    return HEADER.pack(expiry) + wrap(value)


def wrap(value: bytes) -> bytes:
    """``value`` as the pickle stored after the header (see the module docstring)."""
    if _looks_like_pickle(value) and unwrap(value) is None:
        return value
    return pickle.dumps(value, PROTOCOL)  # pickling bytes runs nothing


def _looks_like_pickle(value: bytes) -> bool:
    return len(value) >= 3 and value[0] == 0x80 and 2 <= value[1] <= 5 and value[-1] == 0x2E


# SHORT_BINBYTES, BINBYTES, BINBYTES8 and the width of their length fields
_BYTES_OPS = {0x43: 1, 0x42: 4, 0x8E: 8}
# MEMOIZE, BINPUT, LONG_BINPUT and the width of their arguments
_MEMO_OPS = {0x94: 0, 0x71: 1, 0x72: 4}


def unwrap(body: bytes) -> bytes | None:
    """The bytes a pickle of one ``bytes`` object holds, for exactly the opcodes
    ``pickle.dumps(b, 3..5)`` writes (PROTO, an optional FRAME covering the rest, one
    BINBYTES, an optional memo opcode, STOP); ``None`` for anything else."""
    if len(body) < 4 or body[0] != 0x80 or not 3 <= body[1] <= 5:
        return None
    at = 2
    if body[at] == 0x95:  # FRAME: must cover exactly the rest
        if len(body) < at + 9 or int.from_bytes(body[at + 1 : at + 9], "little") != len(body) - at - 9:
            return None
        at += 9
    width = _BYTES_OPS.get(body[at]) if at < len(body) else None
    if width is None:
        return None
    size = int.from_bytes(body[at + 1 : at + 1 + width], "little")
    start = at + 1 + width
    end = start + size
    if start > len(body) or end >= len(body):  # at least STOP must follow
        return None
    at = end
    memo = _MEMO_OPS.get(body[at])
    if memo is not None:
        at += 1 + memo
    if at != len(body) - 1 or body[at] != 0x2E:
        return None
    return body[start:end]
