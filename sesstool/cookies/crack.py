"""Find the secret key that signed a cookie, from a wordlist, on every core.

Each candidate costs two one-shot HMACs and nothing else: the derived key
``HMAC(candidate, salt)`` and the signature ``HMAC(derived, signed value)``, compared
with the cookie's signature decoded once. ``hmac.digest`` runs both inside OpenSSL,
and ``map`` searched by ``operator.indexOf`` keeps the loop itself in C, so a core checks
several hundred thousand candidates a second. The wordlist is streamed in chunks
cut at line ends and handed to worker processes, a few chunks in flight at a time,
so memory stays bounded however large the list is.

Wordlists: one candidate a line, taken as it is (only the line end removed). Lines
in flask-unsign's quoted form (``'key'``, ``"key"``, ``b'\\x00key'``: Python
literals) are also tried as the key they spell, and lines with spaces around them
also stripped, so lists written for flask-unsign work unchanged.
"""

from __future__ import annotations

import collections
import hmac
import operator
import os
import re
import time
import typing as t
from dataclasses import dataclass
from itertools import repeat

from sesstool.cookies.format import DEFAULT_DIGEST, parse_cookie
from sesstool.errors import InvalidInput

CHUNK_SIZE = 1 << 20
MAX_LINE = 64 << 20
_SPECIAL = re.compile(rb"^(?:[ \t\f\v].*|[bBrRuU]{0,2}['\"].*|.*[ \t\f\v])$", re.MULTILINE)
_LITERAL = re.compile(rb"[bBrRuU]{0,2}(['\"]).*\1", re.DOTALL)


class Target(t.NamedTuple):
    """What a candidate key must reproduce: ``HMAC(HMAC(key, salt), signed) == signature``."""

    signed: bytes
    signature: bytes
    salt: bytes
    digest: str


@dataclass
class CrackResult:
    secret_key: str | bytes | None  #: str when the key is UTF-8 text, else bytes
    candidates: int
    seconds: float


@dataclass
class Progress:
    candidates: int
    done_bytes: int
    total_bytes: int | None
    seconds: float

    @property
    def rate(self) -> float:
        return self.candidates / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left, from the share of the wordlist read so far."""
        if not self.total_bytes or not self.done_bytes or self.seconds <= 0:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) * self.seconds / self.done_bytes)


def target_for(cookie_value: str, *, salt: str | None = None, digest: str = DEFAULT_DIGEST) -> Target:
    """The target of a flask-cookie or signed-sid (its salt by default: see cookies).

    :raises InvalidInput: for a malformed cookie.
    """
    from sesstool.cookies.format import _b64decode

    cookie = parse_cookie(cookie_value)
    signature = _b64decode(cookie.signature, "signature")
    return Target(cookie.signed, signature, (salt or cookie.default_salt).encode("utf-8"), digest)


def _one_shot(digest: str) -> t.Callable[[bytes, bytes, str], bytes]:
    """``hmac.digest``, or OpenSSL's function it delegates to when that serves ``digest``."""
    try:
        import _hashlib

        fast = t.cast(t.Callable[[bytes, bytes, str], bytes], _hashlib.hmac_digest)
        if fast(b"k", b"m", digest) == hmac.digest(b"k", b"m", digest):
            return fast
    except (ImportError, AttributeError, ValueError, TypeError):
        pass
    return hmac.digest


def search_chunk(target: Target, chunk: bytes) -> tuple[str | bytes | None, int]:
    """Try every line of ``chunk``; return (the key or None, candidates tried)."""
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    words = chunk.split(b"\n")
    if b"" in words:
        words = [word for word in words if word]
    mac = _one_shot(target.digest)
    salt, signed, name = target.salt, target.signed, target.digest
    macs = map(mac, map(mac, words, repeat(salt), repeat(name)), repeat(signed), repeat(name))
    try:
        index = operator.indexOf(macs, target.signature)  # the whole loop runs in C
    except ValueError:
        pass
    else:
        return _as_key(words[index]), len(words)
    if b"'" in chunk or b'"' in chunk or b" " in chunk or b"\t" in chunk:
        for variant in _variants(chunk):
            key = variant.encode("utf-8") if isinstance(variant, str) else variant
            if key and mac(mac(key, salt, name), signed, name) == target.signature:
                return variant, len(words)
    return None, len(words)


def _as_key(word: bytes) -> str | bytes:
    try:
        return word.decode("utf-8")
    except UnicodeDecodeError:
        return word


def _variants(chunk: bytes) -> t.Iterator[str | bytes]:
    """Other readings of unusual lines: stripped, and as flask-unsign's Python literals."""
    import ast
    import warnings

    for match in _SPECIAL.finditer(chunk):
        line = match.group(0)
        stripped = line.strip()
        if stripped != line:
            yield _as_key(stripped)
        if _LITERAL.fullmatch(stripped):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = ast.literal_eval(stripped.decode("utf-8"))
            except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
                continue
            if isinstance(value, (str, bytes)) and value != line:
                yield value


def read_chunks(stream: t.BinaryIO, size: int | None = None) -> t.Iterator[bytes]:
    """Blocks of about ``size`` bytes of whole lines (no final newline), streamed."""
    size = size or CHUNK_SIZE
    rest = b""
    while True:
        block = stream.read(size)
        if not block:
            break
        if rest:
            block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            if len(block) > MAX_LINE:
                raise InvalidInput(f"wordlist has a line longer than {MAX_LINE >> 20} MiB")
            rest = block
            continue
        rest = block[cut + 1 :]
        yield block[:cut]
    if rest:
        yield rest


# Worker processes: the target is set once, by the pool's initializer.
_TARGET: Target | None = None


def _init_worker(target: Target) -> None:
    import signal

    global _TARGET
    _TARGET = target
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _search_in_worker(chunk: bytes) -> tuple[str | bytes | None, int]:
    assert _TARGET is not None
    return search_chunk(_TARGET, chunk)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def crack(
    target: Target,
    wordlist: t.BinaryIO,
    *,
    jobs: int | None = None,
    total_bytes: int | None = None,
    progress: t.Callable[[Progress], None] | None = None,
    chunk_size: int | None = None,
) -> CrackResult:
    """Search ``wordlist`` for the key of ``target`` with ``jobs`` processes (default: all cores).

    :param total_bytes: the wordlist's size, for the ETA, when known.
    :param progress: called after each chunk with the running totals.
    """
    jobs = jobs or default_jobs()
    chunk_size = chunk_size or CHUNK_SIZE
    if total_bytes is not None and total_bytes <= 2 * chunk_size:
        jobs = 1  # starting processes would cost more than it saves
    started = time.perf_counter()
    candidates = done = 0
    chunks = read_chunks(wordlist, chunk_size)

    def finish(key: str | bytes | None) -> CrackResult:
        return CrackResult(key, candidates, time.perf_counter() - started)

    def report() -> None:
        if progress is not None:
            shown = min(done, total_bytes) if total_bytes else done  # no newline after the last line
            progress(Progress(candidates, shown, total_bytes, time.perf_counter() - started))

    if jobs == 1:
        for chunk in chunks:
            key, count = search_chunk(target, chunk)
            candidates += count
            done += len(chunk) + 1
            if key is not None:
                return finish(key)
            report()
        return finish(None)

    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(jobs, _init_worker, (target,)) as pool:
        pending: collections.deque[tuple[t.Any, int]] = collections.deque()
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * jobs:
                block = next(chunks, None)
                if block is None:
                    exhausted = True
                else:
                    pending.append((pool.apply_async(_search_in_worker, (block,)), len(block) + 1))
            if not pending:
                break
            job, size = pending.popleft()
            key, count = job.get()
            candidates += count
            done += size
            if key is not None:
                pool.terminate()
                return finish(key)
            report()
    return finish(None)
