"""A Redis snapshot file (``rdb:///path/to/dump.rdb[?db=N]``) as a read-only store.

What it is: the keys of one database of a dump, as the live server held them when
the dump was written. Facts:

- Read-only: no capability but :attr:`Capability.ENUMERABLE_IDS`; every write
  raises :class:`~sesstool.errors.Unsupported` naming the store as read-only.
- TTL is measured from when the dump was written: its ``ctime`` field, else the
  file's modification time. Redis writes keys that are past their expiry but not
  yet reclaimed; those are held in the file, so they are listed with ``ttl`` 0 (the
  contract's "past its expiry but still held"), never hidden.
- Every call is one streaming pass over the file in constant memory (one batch
  held at a time): ``scan``/``scan_keys`` yield as they read; ``get`` and
  ``fetch`` of any number of keys read the whole file once (so ``show`` costs
  one pass; ``doctor``, which reads a few times, a few).
- Keys of other types are reported by their kind (``hash``, ``list``, ``set``,
  ``zset``, ``stream``, or a module's type name) as Redis' SCAN reports them.
- A file that cannot be read (missing, a directory, not a snapshot, truncated, a
  length it cannot hold, a damaged checksum) is one :class:`StoreError` (exit 3);
  a single value that cannot be read (corrupt LZF data, over the value budget) is
  reported as an empty value, which no serializer decodes (``unknown``), with a
  warning, and the rest of the file reads on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import typing as t
from urllib.parse import parse_qs, unquote, urlsplit

from sesstool.errors import InvalidInput, StoreError
from sesstool.stores.base import MISSING, STRING, Capability, Store, StoredItem, python_warning, show_key
from sesstool.stores.rdb_format import Budget, KeyRecord, RdbCorrupt, RdbReader


class RdbStore(Store):
    """The keys of database ``db`` of the snapshot at ``path``, read offline."""

    capabilities = frozenset({Capability.ENUMERABLE_IDS})
    expired_purge = None

    def __init__(
        self, path: str, db: int = 0, *, warn: t.Callable[[str], None] | None = None, budget: Budget | None = None
    ) -> None:
        self.path, self.db = path, db
        self.warn = warn or python_warning
        self.budget = budget or Budget()
        with self._reader() as reader:
            aux = reader.header()
            self.version = reader.version
        self.written_at = _written_at(aux, self._stat().st_mtime)

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> RdbStore:
        """``rdb:///path/to/dump.rdb[?db=N]`` (an app's client has no use here).

        :raises InvalidInput: for a malformed URL.
        :raises StoreError: for a file that cannot be read as a snapshot.
        """
        path, db = parse_rdb_url(url)
        return cls(path, db, warn=warn)

    def describe(self) -> str:
        return f"rdb://{self.path}" + (f"?db={self.db}" if self.db else "")

    def close(self) -> None:
        pass  # every pass opens and closes the file itself

    # -- reading -----------------------------------------------------------------

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        items: list[StoredItem] = []
        for entry in self._entries(lambda key: key.startswith(prefix), values=True):
            items.append(self._item(entry))
            if len(items) >= batch:
                yield items
                items = []
        if items:
            yield items

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        keys: list[bytes] = []
        for entry in self._entries(lambda key: key.startswith(prefix), values=False):
            keys.append(entry.key)
            if len(keys) >= batch:
                yield keys
                keys = []
        if keys:
            yield keys

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        """One pass for all ``keys``, however many."""
        if not keys:
            return []
        wanted = set(keys)
        found: dict[bytes, StoredItem] = {}
        for entry in self._entries(wanted.__contains__, values=True):
            found.setdefault(entry.key, self._item(entry))
        return [found.get(key) or StoredItem(key, None, None, kind=MISSING) for key in keys]

    def get(self, key: bytes) -> StoredItem | None:
        item = self.fetch([key])[0]
        return None if item.kind == MISSING else item

    # -- helpers -----------------------------------------------------------------

    def _item(self, entry: KeyRecord) -> StoredItem:
        ttl = self._ttl(entry.expire_ms)
        if entry.kind != STRING:
            return StoredItem(entry.key, None, ttl, kind=entry.kind)
        if entry.problem is not None:
            self.warn(f"{self.describe()}: the value of {show_key(entry.key)} cannot be read ({entry.problem}); "
                      "it is reported as unknown")  # fmt: skip
            return StoredItem(entry.key, b"", ttl)
        return StoredItem(entry.key, entry.value, ttl)

    def _ttl(self, expire_ms: int | None) -> int | None:
        if expire_ms is None:
            return None
        left = expire_ms - self.written_at
        # Redis' own rounding of PTTL to TTL; a key past its expiry is still in the file
        return 0 if left <= 0 else (left + 500) // 1000

    def _entries(self, want: t.Callable[[bytes], bool], *, values: bool) -> t.Iterator[KeyRecord]:
        with self._reader() as reader:
            yield from reader.entries(self.db, want, values=values)
        if reader.oversized_keys:
            many = "keys" if reader.oversized_keys > 1 else "key"
            self.warn(f"{self.describe()}: skipped {reader.oversized_keys:,} {many} longer than "
                      f"{self.budget.key_limit:,} bytes (no session key is that long)")  # fmt: skip

    def _stat(self) -> os.stat_result:
        try:
            info = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"{self.describe()}: cannot open the snapshot: {_reason(e)}") from e
        if stat.S_ISDIR(info.st_mode):
            raise StoreError(f"{self.describe()}: is a directory, not a snapshot file")
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{self.describe()}: is not a regular file")
        return info

    @contextlib.contextmanager
    def _reader(self) -> t.Iterator[RdbReader]:
        self._stat()  # before opening: a FIFO would block the open
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 (closed below, after the pass)
        except OSError as e:
            raise StoreError(f"{self.describe()}: cannot open the snapshot: {_reason(e)}") from e
        with fh:
            # The size of the file opened, not of the path stat'ed: a server's SAVE may
            # have renamed a new dump over it meanwhile.
            size = os.fstat(fh.fileno()).st_size
            try:  # the whole pass: what the body reads through the reader fails here too
                yield RdbReader(fh, size, self.budget)
            except RdbCorrupt as e:
                raise StoreError(f"{self.describe()}: not a readable Redis snapshot: {e}") from e
            except OSError as e:
                raise StoreError(f"{self.describe()}: cannot read the file: {_reason(e)}") from e


def parse_rdb_url(url: str) -> tuple[str, int]:
    """The path and database number of ``rdb:///path[?db=N]``.

    :raises InvalidInput: for a host part, a relative or empty path, or a bad ``db``.
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(f"invalid store URL {url!r}: an rdb:// URL names a local file, "
                           "rdb:///absolute/path/dump.rdb (three slashes)")  # fmt: skip
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise InvalidInput(f"invalid store URL {url!r}: give the snapshot's path, rdb:///path/to/dump.rdb")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"db"})
    if unknown or parts.fragment:
        raise InvalidInput(f"invalid store URL {url!r}: rdb:// takes only ?db=N")
    db_values = query.get("db", ["0"])
    if len(db_values) != 1 or not db_values[0].isdigit() or not db_values[0].isascii() or len(db_values[0]) > 9:
        raise InvalidInput(f"invalid store URL {url!r}: db must be a database number (0, 1, ...)")
    return path, int(db_values[0])


def _written_at(aux: dict[bytes, bytes], mtime: float) -> int:
    """When the dump was written, in Unix milliseconds: its ``ctime``, else ``mtime``."""
    ctime = aux.get(b"ctime", b"")
    if ctime.isdigit() and len(ctime) <= 12:
        return int(ctime) * 1000
    return int(mtime * 1000)


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
