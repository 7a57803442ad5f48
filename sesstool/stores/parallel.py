"""Read several servers at once: each source in its own thread, batches merged as they come.

A Redis Cluster scan (or a listing over several memcached servers) read one node
after the other leaves every other node idle while one answers, and the client idle
while each node thinks. Threads overlap those waits (the GIL is released during
socket I/O), so N nodes list close to N times as fast as one when the client keeps up.

Memory stays bounded: each source may run at most ``depth`` batches ahead of the
consumer, then waits. Closing the merged iterator early (``--limit``, an error, a
deadline) tells every source to stop after its round trip in flight.
"""

from __future__ import annotations

import queue
import threading
import time
import typing as t

T = t.TypeVar("T")

#: how long a source blocked on a full queue waits before checking for a stop
_POLL = 0.1
#: how long closing waits for sources to finish their round trip in flight
_JOIN = 5.0


class _End:
    """A source's last word: it finished, or it failed with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def merged(sources: t.Sequence[t.Callable[[], t.Iterator[T]]], *, depth: int = 2) -> t.Generator[T, None, None]:
    """Every item of every source, in the order they arrive.

    A failure in any source stops the others and is raised here, in the consumer's
    thread, unchanged (so a store's own error translation still applies).
    """
    if len(sources) == 1:  # no thread for the common case of one server
        yield from sources[0]()
        return
    out: queue.Queue[T | _End] = queue.Queue(maxsize=max(1, depth) * len(sources))
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def run(source: t.Callable[[], t.Iterator[T]]) -> None:
        iterator = source()
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as e:  # handed to the consumer, which raises it
            put(_End(e))
            return
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()
        put(_End())

    threads = [threading.Thread(target=run, args=(source,), name="sesstool-scan", daemon=True) for source in sources]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = out.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        end = time.monotonic() + _JOIN  # one wait for all: a stalled node must not multiply it
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
