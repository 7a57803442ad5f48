"""Deadlines: no server, however slow or hostile, keeps a command waiting past ``--timeout``.

Socket timeouts alone do not bound a wait: a server that sends one byte every few
seconds never lets a read time out. So every network operation also runs under a
wall-clock deadline (``SIGALRM`` on the main thread), which interrupts whatever
blocking call is under way.

What one deadline covers:

- a single network operation of the CLI: opening a store (Redis Cluster and Sentinel
  talk to servers at once), each call on the store (a ``get``, a ``set``, one batch
  of a scan), one ``decode --url`` fetch;
- so a bulk command (``list``, ``purge`` of a million sessions) is bounded *per round
  trip*, not overall: it may run as long as it keeps making progress, and stops once
  one step stalls for longer than the deadline. Prompts and editors run outside any
  store call, so a person thinking is never timed out.

Where ``SIGALRM`` is missing (Windows) or off the main thread, only the socket
timeouts apply.
"""

from __future__ import annotations

import collections.abc
import contextlib
import signal
import threading
import time
import typing as t

from sesstool.errors import InvalidInput

if t.TYPE_CHECKING:
    from sesstool.stores.base import Store

DEFAULT_TIMEOUT = 30.0  #: seconds; ``--timeout`` / ``SESSTOOL_TIMEOUT``
MAX_TIMEOUT = 86400.0


class DeadlineExceeded(BaseException):
    """An operation ran past its deadline.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no driver's
    ``except Exception`` retries or rewraps it: it must reach the CLI, which exits 3.
    """

    def __init__(self, seconds: float, what: str) -> None:
        super().__init__(f"timed out after {seconds:g}s waiting for {what} (--timeout)")
        self.seconds = seconds
        self.what = what


def parse_timeout(text: str | float) -> float:
    """Seconds from ``--timeout`` / ``SESSTOOL_TIMEOUT``: a number above 0.

    :raises InvalidInput: for anything else.
    """
    try:
        seconds = float(text)
    except ValueError:
        raise InvalidInput(f"invalid timeout {text!r}: give seconds, e.g. 30 or 2.5") from None
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan and inf
        raise InvalidInput(f"invalid timeout {text!r}: give seconds above 0, at most {MAX_TIMEOUT:g}")
    return seconds


def _usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> t.Iterator[None]:
    """Raise :class:`DeadlineExceeded` in the block when it runs past ``seconds``.

    Nests: an inner deadline never outlives the outer one, and the outer one keeps
    counting while the inner one runs.
    """
    if not seconds or not _usable():
        yield
        return
    outer_left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    # None when the handler was not set from Python (or while the interpreter shuts
    # down and finalizes a half-read scan): restore the default then.
    outer_handler = signal.getsignal(signal.SIGALRM)
    if outer_handler is None:
        outer_handler = signal.SIG_DFL
    limit = min(seconds, outer_left) if outer_left else seconds

    def fire(signum: int, frame: t.Any) -> None:
        raise DeadlineExceeded(seconds, what)

    started = time.monotonic()
    signal.signal(signal.SIGALRM, fire if not outer_left or seconds <= outer_left else outer_handler)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            # At least a millisecond: an outer deadline that passed meanwhile fires now.
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 0.001))


class DeadlineStore:
    """A store whose every call (and every step of an iterator it returns) runs
    under :func:`deadline`: the generic hook that bounds each round trip of any
    backend, without the backend knowing.
    """

    def __init__(self, store: Store, seconds: float) -> None:
        self._store = store
        self._seconds = seconds
        self._what = store.describe()

    def __getattr__(self, name: str) -> t.Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value

        def call(*args: t.Any, **kwargs: t.Any) -> t.Any:
            with deadline(self._seconds, self._what):
                result = value(*args, **kwargs)
            if isinstance(result, collections.abc.Iterator):
                return self._steps(result)
            return result

        return call

    def _steps(self, iterator: t.Iterator[t.Any]) -> t.Iterator[t.Any]:
        try:
            while True:
                with deadline(self._seconds, self._what):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):  # a scan stopped early (--limit) releases its connection now
                with deadline(self._seconds, self._what):
                    close()
