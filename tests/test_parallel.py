"""Several servers read at once (sesstool.stores.parallel): every item once, bounded, clean stops."""

from __future__ import annotations

import itertools
import threading
import typing as t

import pytest

from sesstool.errors import StoreError
from sesstool.stores.parallel import merged


class Source:
    """A source that counts what it produced and whether it was closed."""

    def __init__(self, items: t.Iterable[int], fail_after: int | None = None) -> None:
        self.items = items
        self.fail_after = fail_after
        self.produced = 0
        self.closed = threading.Event()

    def __call__(self) -> t.Iterator[int]:
        try:
            for item in self.items:
                if self.fail_after is not None and self.produced == self.fail_after:
                    raise StoreError("node went away")
                self.produced += 1
                yield item
        finally:
            self.closed.set()


def test_every_item_of_every_source_once_in_each_sources_order() -> None:
    ranges = [range(i * 1000, i * 1000 + 300) for i in range(3)]
    sources = [Source(r) for r in ranges]
    got = list(merged(sources, depth=2))
    assert sorted(got) == sorted(itertools.chain(*ranges))
    for r in ranges:
        assert [x for x in got if x in r] == list(r)
    assert all(s.closed.is_set() for s in sources)


def test_one_source_runs_in_the_callers_thread() -> None:
    seen = []

    def source() -> t.Iterator[str]:
        seen.append(threading.current_thread())
        yield "only"

    assert list(merged([source])) == ["only"]
    assert seen == [threading.main_thread()]


def test_a_failing_source_raises_its_error_here_and_stops_the_others() -> None:
    endless, failing = Source(itertools.count()), Source(range(100), fail_after=5)
    before = threading.active_count()
    with pytest.raises(StoreError, match="node went away"):
        for _ in merged([endless, failing], depth=2):
            pass
    assert endless.closed.is_set() and failing.closed.is_set()
    assert threading.active_count() == before


def test_an_early_stop_closes_every_source_and_nothing_ran_far_ahead() -> None:
    endless, other = Source(itertools.count()), Source(itertools.count(10**9))
    before = threading.active_count()
    feed = merged([endless, other], depth=2)
    taken = list(itertools.islice(feed, 50))
    feed.close()  # what --limit does
    assert len(taken) == 50
    assert endless.closed.is_set() and other.closed.is_set()
    assert threading.active_count() == before
    # Each source may be ahead by the queue (depth x sources) and the item in its hand.
    assert endless.produced + other.produced <= 50 + 2 * 2 + 2
