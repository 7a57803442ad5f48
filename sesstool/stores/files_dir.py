"""Safe file operations in one cachelib directory, for :mod:`sesstool.stores.files`.

Everything goes through the directory's own descriptor (``*at`` calls), so a
directory swapped for a symlink after opening changes nothing; files are opened
with ``O_NOFOLLOW`` and ``O_NONBLOCK`` (a planted fifo cannot hang a read) and
checked to be regular files of bounded size before a byte is read. Every change is a
temporary file written next to its target and renamed over it.
"""

from __future__ import annotations

import errno
import os
import pickle
import secrets
import stat
import typing as t

from sesstool.errors import StoreError
from sesstool.stores.base import show_key
from sesstool.stores.files_format import COUNT_FILES, HEADER, MAX_FILE, PROTOCOL, TEMP_SUFFIX, BadFile

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: skipped files named one by one in warnings; past that only counted
NAMED_SKIPS = 10


class FileVersion(t.NamedTuple):
    """What a read saw of a file, for the conditional operations (the ctime is left
    out: a rename changes it)."""

    name: str
    dev: int
    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, name: str, st: os.stat_result) -> FileVersion:
        return cls(name, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def matches(self, st: os.stat_result) -> bool:
        return (self.dev, self.ino, self.mtime_ns, self.size) == (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def renamed(self, name: str) -> FileVersion:
        return self._replace(name=name)


class ReadFile(t.NamedTuple):
    name: str
    content: bytes
    stat: os.stat_result

    @property
    def version(self) -> FileVersion:
        return FileVersion.of(self.name, self.stat)


def mode_of(st: os.stat_result | None) -> int:
    """A rewrite keeps the file's mode; a new file is 0600."""
    return 0o600 if st is None else stat.S_IMODE(st.st_mode)


def _temp_name() -> str:
    # cachelib's suffix: cachelib neither counts nor prunes such files, nor do we.
    return f"tmp{secrets.token_hex(8)}{TEMP_SUFFIX}"


class Directory:
    """One open cache directory.

    :raises StoreError: when it does not exist or cannot be opened (exit 3).
    """

    def __init__(self, path: str, url: str) -> None:
        self.url = url
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError(f"{url}: no such directory (Flask-Session's SESSION_FILE_DIR or the "
                             "FileSystemCache cache_dir)") from None
        except NotADirectoryError:
            raise StoreError(f"{url}: not a directory") from None
        except OSError as e:
            raise StoreError(f"{url}: cannot open the directory: {e.strerror or e}") from e

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise StoreError(f"{self.url}: the store is closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def failed(self, name: str, e: OSError) -> StoreError:
        return StoreError(f"{self.url}: {name}: {e.strerror or e}")

    def entries(self) -> t.Iterator[str]:
        """The names in the directory, streamed (``os.scandir``: constant memory)."""
        try:
            with os.scandir(self.fd) as listing:
                for entry in listing:
                    yield entry.name
        except OSError as e:
            raise self.failed(".", e) from e

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self.failed(name, e) from e

    def read(self, name: str) -> ReadFile | None:
        """A file's bytes, or ``None`` when it does not exist.

        :raises BadFile: for a symlink, anything but a regular file, a file past
            :data:`MAX_FILE`.
        """
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise BadFile("a symlink, not a session file") from None
            if e.errno in (errno.EACCES, errno.EPERM):  # one file's owner or mode: skip it, not the scan
                raise BadFile(f"not readable ({e.strerror})") from None
            raise self.failed(name, e) from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise BadFile("not a regular file")
            if st.st_size > MAX_FILE:
                raise BadFile(f"{st.st_size:,} bytes, past the {MAX_FILE >> 20} MiB a session file may have")
            chunks = []
            left = MAX_FILE + 1  # bounded even if the file grows while it is read
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0:
                raise BadFile(f"grew past the {MAX_FILE >> 20} MiB a session file may have")
            return ReadFile(name, b"".join(chunks), st)
        except OSError as e:
            raise self.failed(name, e) from e
        finally:
            os.close(fd)

    def write(self, name: str, content: bytes, mode: int, *, expect: FileVersion | None = None,
              exclusive: bool = False) -> bool:  # fmt: skip
        """Write ``content`` as ``name`` through a temporary file in the directory.

        :param expect: replace only while ``name`` is still this file (checked just
            before the rename: the window left is described in :mod:`sesstool.stores.files`).
        :param exclusive: only if ``name`` does not exist (``link`` refuses otherwise).
        :returns: whether it was written.
        """
        temp = _temp_name()
        try:
            fd = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=self.fd)
            try:
                os.fchmod(fd, mode)
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            if exclusive:
                try:
                    os.link(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
                except FileExistsError:
                    return False
                return True
            if expect is not None:
                now = self.lstat(name)
                if now is None or not expect.matches(now):
                    return False
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            temp = ""
            return True
        except OSError as e:
            raise self.failed(name, e) from e
        finally:
            if temp:
                self.unlink(temp)

    def unlink(self, name: str) -> bool:
        """Remove ``name`` (a symlink itself, never its target); whether it existed."""
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self.failed(name, e) from e

    def move_aside(self, name: str) -> str | None:
        """Rename ``name`` to a fresh temporary name (atomic: whatever is there now
        moves); that name, or ``None`` when nothing was there."""
        aside = _temp_name()
        try:
            os.rename(name, aside, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self.failed(name, e) from e
        return aside

    def put_back(self, aside: str, name: str) -> None:
        """Undo :meth:`move_aside`, unless a newer file took ``name`` meanwhile (then
        the moved one, older, is dropped)."""
        try:
            os.link(aside, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as e:
            raise self.failed(name, e) from e
        finally:
            self.unlink(aside)

    def adjust_count(self, delta: int, warn: t.Callable[[str], None]) -> None:
        """Add ``delta`` to each cachelib item count file there is (cachelib keeps
        one only with a threshold); one that holds no count is left alone, with a warning."""
        if not delta:
            return
        from sesstool.codecs.safepickle import safe_loads

        for name in sorted(COUNT_FILES):
            for _ in range(5):  # the app updated it meanwhile: read it again
                try:
                    found = self.read(name)
                    if found is None:
                        break
                    count = safe_loads(found.content[HEADER.size :])
                except Exception as e:  # hostile bytes: the sessions were changed all the same
                    warn(f"left cachelib's item count {name} in {self.url} alone: {type(e).__name__}")
                    break
                if type(count) is not int or len(found.content) <= HEADER.size:
                    warn(f"left cachelib's item count {name} in {self.url} alone: it holds no count")
                    break
                content = HEADER.pack(0) + pickle.dumps(max(0, count + delta), PROTOCOL)
                if self.write(name, content, mode_of(found.stat), expect=found.version):
                    break


class Skips:
    """Files a scan skipped: the first few named in a warning each, then counted."""

    def __init__(self, warn: t.Callable[[str], None], url: str) -> None:
        self.warn, self.url, self.count = warn, url, 0

    def skip(self, name: str, why: str) -> None:
        self.count += 1
        if self.count <= NAMED_SKIPS:
            self.warn(f"skipped {show_key(name.encode('utf-8', 'surrogateescape'))} in {self.url}: {why}")

    def finish(self) -> None:
        if self.count > NAMED_SKIPS:
            self.warn(f"skipped {self.count - NAMED_SKIPS:,} more files in {self.url} that are no session files")
