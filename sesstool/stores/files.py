"""Flask-Session's ``filesystem`` and ``cachelib`` stores: a cachelib ``FileSystemCache`` directory.

``file:///path/to/dir[?hash=sha256|md5]``. One file a session, named by the hash of
prefix + sid (:mod:`sesstool.stores.files_format` has the format). Facts that shape
this store:

- A file name does not reveal its sid, so the store has no
  :attr:`~Capability.ENUMERABLE_IDS`: a scan yields every session file of the
  directory, whatever its prefix, keyed by its file name, and listings say
  ``sid: null``. Any other key (prefix + sid) is found by hashing it with both
  sha256 (cachelib 0.10+) and md5 (older cachelib); a key that is itself a
  cachelib file name (32 or 64 lowercase hex digits) names that file, so what a
  scan or an export yields can be read, deleted and imported back.
- Nothing is followed or trusted: every file is opened with ``O_NOFOLLOW`` (and
  ``O_NONBLOCK``, so a fifo cannot hang a scan) relative to the directory's own
  descriptor; symlinks, fifos, directories, files past :data:`MAX_FILE` and files
  with a short header are skipped with a warning, and the scan goes on.
- Every change writes a temporary file in the directory (0600, or the mode of the
  file it replaces) named like cachelib's own (``*.__wz_cache``, which cachelib
  neither counts nor prunes), then ``os.replace``-s it: readers see the old file or
  the new one, never half of either.
- cachelib keeps an item count (``__wz_cache_count``, a pickled int with expiry 0)
  to prune by; it is adjusted after every create and delete, as cachelib does.
  sesstool never prunes.

Conditional operations and their race window, honestly: cachelib takes no lock, so
nothing here can lock the app out either. ``delete_if_unchanged`` has no window: it
renames the file aside first (atomic), then checks what it moved (inode, mtime,
size, then the bytes) and puts a changed one back with ``link`` (which never
replaces a newer file). ``compare_and_set`` and the expiry changes check the file
(inode, mtime, size, bytes), write the new one, re-check the inode and mtime and
``os.replace``: an app write that lands in the microseconds between that last check
and the rename is lost, exactly as when two app processes save the same session
(cachelib: last writer wins).

No idle time: mtime is the last write and atime is unreliable (``noatime``,
``relatime``), so ``purge --idle`` is refused rather than guessed.
"""

from __future__ import annotations

import stat
import typing as t
import warnings
from urllib.parse import parse_qs, unquote, urlsplit

from sesstool.errors import InvalidInput, StoreError, UndecodableValue
from sesstool.stores.base import MISSING, Capability, Entry, ExpiredPurge, Store, StoredItem, show_key, write_ttl
from sesstool.stores.files_dir import Directory, FileVersion, ReadFile, Skips, mode_of
from sesstool.stores.files_format import (
    COUNT_FILES,
    COUNT_KEY,
    HASHES,
    HEADER,
    MAX_EXPIRY,
    MAX_FILE,
    TEMP_SUFFIX,
    BadFile,
    build,
    digest,
    expiry_for,
    file_name_hash,
    parse,
    ttl_of,
)

__all__ = ["MAX_FILE", "FileStore", "FileVersion"]


def _python_warning(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


class FileStore(Store):
    """Sessions in a cachelib ``FileSystemCache`` directory."""

    capabilities = frozenset({Capability.WRITE, Capability.PER_KEY_TTL, Capability.PERSIST,
                              Capability.COMPARE_AND_SET, Capability.CONDITIONAL_DELETE})  # fmt: skip
    expired_purge = ExpiredPurge.TTL_ZERO
    value_serializer = "pickle"  # see files_format: every Flask-Session version pickles here

    def __init__(self, directory: str, *, hash_method: str | None = None, url: str | None = None,
                 warn: t.Callable[[str], None] | None = None) -> None:  # fmt: skip
        """:param hash_method: what new files are named by (``sha256``, ``md5``);
        by default the one the directory already uses."""
        self.url = url or "file://" + directory
        self.warn = warn or _python_warning
        self.dir = Directory(directory, self.url)
        self.hash_method = hash_method or self._detect_hash()

    @classmethod
    def open(cls, url: str, *, client: t.Any = None, warn: t.Callable[[str], None] | None = None) -> FileStore:
        if client is not None:  # an app's FileSystemCache: its directory and hash
            method = getattr(getattr(client, "_hash_method", None), "__name__", "")
            return cls(str(client._path), hash_method="md5" if "md5" in method else "sha256", warn=warn)
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise InvalidInput(f"invalid store URL {url!r}: use file:///absolute/path/to/dir")
        query = parse_qs(parts.query)
        methods = query.pop("hash", [None])
        if query or len(methods) != 1 or methods[0] not in (None, *HASHES):
            raise InvalidInput(f"invalid store URL {url!r}: the only option is ?hash=sha256 or ?hash=md5")
        return cls(unquote(parts.path), hash_method=methods[0], url=url, warn=warn)

    def describe(self) -> str:
        return self.url

    def close(self) -> None:
        self.dir.close()

    def _detect_hash(self) -> str:
        """The hash new files get: the one of the count file there, else of the first
        session file, else sha256 (what cachelib has used since 0.10)."""
        for method in HASHES:
            if self.dir.lstat(digest(method, COUNT_KEY)) is not None:
                return method
        for name in self.dir.entries():
            found = file_name_hash(name.encode("utf-8", "surrogateescape"))
            if found is not None:
                return found
        return "sha256"

    def _names(self, key: bytes) -> list[str]:
        """The file names ``key`` may have: itself when it is a file name, else its hashes."""
        if file_name_hash(key) is not None:
            return [key.decode("ascii")]
        first = self.hash_method
        return [digest(first, key), *(digest(m, key) for m in HASHES if m != first)]

    def _bad(self, key: bytes, e: BadFile) -> UndecodableValue:
        return UndecodableValue(f"{self.url}: the file of {show_key(key)} is {e}")

    # -- reading ---------------------------------------------------------------------

    def _item(self, key: bytes, read: ReadFile) -> StoredItem:
        expiry, value = parse(read.content)
        return StoredItem(key, value, ttl_of(expiry), version=read.version)

    def _find(self, key: bytes) -> ReadFile | None:
        for name in self._names(key):
            found = self.dir.read(name)
            if found is not None:
                return found
        return None

    def get(self, key: bytes) -> StoredItem | None:
        try:
            found = self._find(key)
            return None if found is None else self._item(key, found)
        except BadFile as e:
            raise self._bad(key, e) from None

    def fetch(self, keys: t.Sequence[bytes]) -> list[StoredItem]:
        items = []
        for key in keys:
            try:
                found = self._find(key)
                items.append(StoredItem(key, None, None, kind=MISSING) if found is None else self._item(key, found))
            except BadFile as e:
                self.warn(f"skipped the file of {show_key(key)} in {self.url}: {e}")
                items.append(StoredItem(key, None, None, kind=MISSING))
        return items

    def scan(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[StoredItem]]:
        """Every session file in the directory (names cannot tell the prefix), read
        as ``os.scandir`` streams them; anything else is skipped with a warning."""
        skips = Skips(self.warn, self.url)
        items: list[StoredItem] = []
        for name in self.dir.entries():
            if name in COUNT_FILES or name.endswith(TEMP_SUFFIX):
                continue  # cachelib's own bookkeeping, never a session
            if file_name_hash(name.encode("utf-8", "surrogateescape")) is None:
                skips.skip(name, "not a cachelib file name")
                continue
            try:
                found = self.dir.read(name)
                if found is not None:  # else deleted since the directory was listed
                    items.append(self._item(name.encode("ascii"), found))
            except BadFile as e:
                skips.skip(name, str(e))
            if len(items) >= batch:
                yield items
                items = []
        if items:
            yield items
        skips.finish()

    def scan_keys(self, prefix: bytes, *, batch: int = 1000) -> t.Iterator[list[bytes]]:
        # The same checks as scan (a fifo or a short file is no session to count).
        for items in self.scan(prefix, batch=batch):
            yield [item.key for item in items]

    # -- writing ---------------------------------------------------------------------

    def _target(self, key: bytes) -> tuple[str, t.Any]:
        """Where a write of ``key`` goes: its existing file (and its stat), else its
        first name (and ``None``)."""
        names = self._names(key)
        for name in names:
            st = self.dir.lstat(name)
            if st is not None:
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidInput(f"{self.url}: the file of {show_key(key)} is not a regular file: left alone")
                return name, st
        return names[0], None

    def set(self, key: bytes, value: bytes, ttl: int | None) -> None:
        self.set_many([(key, value, ttl)])

    def set_many(self, entries: t.Sequence[Entry]) -> None:
        for key, _, ttl in entries:
            write_ttl(key, ttl)
        created = 0
        try:
            for key, value, ttl in entries:
                name, st = self._target(key)
                self.dir.write(name, build(_expiry(ttl), value), mode_of(st))
                created += st is None
        finally:
            self.dir.adjust_count(created, self.warn)

    def add(self, key: bytes, value: bytes, ttl: int | None) -> bool:
        return self.add_many([(key, value, ttl)])[0]

    def add_many(self, entries: t.Sequence[Entry]) -> list[bool]:
        for key, _, ttl in entries:
            write_ttl(key, ttl)
        added: list[bool] = []
        try:
            for key, value, ttl in entries:
                name, st = self._target(key)
                added.append(st is None and self.dir.write(name, build(_expiry(ttl), value), 0o600, exclusive=True))
        finally:
            self.dir.adjust_count(sum(added), self.warn)
        return added

    def delete(self, keys: t.Sequence[bytes]) -> int:
        return sum(self.delete_each(keys))

    def delete_each(self, keys: t.Sequence[bytes]) -> list[bool]:
        existed: list[bool] = []
        try:
            for key in keys:
                gone = False
                for name in self._names(key):
                    st = self.dir.lstat(name)
                    if st is not None and not stat.S_ISREG(st.st_mode):
                        self.warn(f"left {name} in {self.url} alone: not a regular file")
                    elif st is not None:
                        gone = self.dir.unlink(name) or gone
                existed.append(gone)
        finally:
            self.dir.adjust_count(-sum(existed), self.warn)
        return existed

    # -- conditional and expiry changes ----------------------------------------------

    def _current(self, item: StoredItem) -> ReadFile | None:
        """The file ``item`` was read from, if it still holds what was read."""
        version = item.version if isinstance(item.version, FileVersion) else None
        try:
            found = self.dir.read(version.name) if version is not None else self._find(item.key)
            if found is None or item.value is None or (version is not None and not version.matches(found.stat)):
                return None
            return found if parse(found.content)[1] == item.value else None
        except BadFile:
            return None

    def compare_and_set(self, item: StoredItem, value: bytes) -> bool:
        found = self._current(item)
        if found is None:
            return False
        expiry = HEADER.unpack_from(found.content)[0]  # the TTL stays
        return self.dir.write(found.name, build(expiry, value), mode_of(found.stat), expect=found.version)

    def delete_if_unchanged(self, items: t.Sequence[StoredItem]) -> int:
        deleted = 0
        try:
            for item in items:
                deleted += self._delete_one_if_unchanged(item)
        finally:
            self.dir.adjust_count(-deleted, self.warn)
        return deleted

    def _delete_one_if_unchanged(self, item: StoredItem) -> bool:
        found = self._current(item)
        if found is None:
            return False
        aside = self.dir.move_aside(found.name)
        if aside is None:
            return False
        # What moved is what was checked only if it is still the same file and bytes.
        moved = StoredItem(item.key, item.value, None, version=found.version.renamed(aside))
        if self._current(moved) is not None:
            self.dir.unlink(aside)
            return True
        self.dir.put_back(aside, found.name)
        return False

    def _set_expiry(self, key: bytes, expiry: int) -> bool:
        for _ in range(5):  # the app rewrote it meanwhile: read it again
            try:
                found = self._find(key)
            except BadFile as e:
                raise self._bad(key, e) from None
            if found is None:
                return False
            if len(found.content) <= HEADER.size:
                raise self._bad(key, BadFile("without a value after its header"))
            content = HEADER.pack(expiry) + found.content[HEADER.size :]  # the pickle stays byte for byte
            if self.dir.write(found.name, content, mode_of(found.stat), expect=found.version):
                return True
        raise StoreError(f"{self.url}: {show_key(key)} kept changing while its expiry was being set; try again")

    def expire(self, key: bytes, seconds: int) -> bool:
        return self._set_expiry(key, _expiry(seconds))

    def expire_at(self, key: bytes, timestamp: int) -> bool:
        if timestamp > MAX_EXPIRY:
            raise InvalidInput("that expiry is past what cachelib's 4-byte header holds (2106)")
        return self._set_expiry(key, max(1, int(timestamp)))

    def persist(self, key: bytes) -> bool:
        return self._set_expiry(key, 0)


def _expiry(ttl: int | None) -> int:
    try:
        return expiry_for(ttl)
    except OverflowError as e:
        raise InvalidInput(str(e)) from None
