"""Progress for long work, on stderr, only when a person is watching a terminal."""

from __future__ import annotations

import time
import typing as t


class Progress:
    """A single self-rewriting stderr line: counts, rate and (with a total) ETA.

    Does nothing unless ``enabled``; redraws at most every ``interval`` seconds so
    it costs nothing measurable in a hot loop.
    """

    def __init__(
        self, stream: t.TextIO, label: str, *, enabled: bool, total: int | None = None, interval: float = 0.2
    ) -> None:
        self.stream = stream
        self.label = label
        self.enabled = enabled
        self.total = total
        self.interval = interval
        self.count = 0
        self.extra = ""
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def advance(self, count: int, extra: str = "") -> None:
        self.count += count
        if extra:
            self.extra = extra
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        line = f"{self.label}: {self.count:,} ({rate:,.0f}/s)"
        if self.total:
            left = max(self.total - self.count, 0)
            eta = left / rate if rate else 0
            line += f" {100 * self.count / self.total:.1f}% ETA {eta:,.0f}s"
        if self.extra:
            line += f" {self.extra}"
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
