"""Production pacing for bulk commands: ``--rate N`` sessions per second.

A bulk command on a busy production store should not take the whole server for
itself. :class:`Pacer` sleeps between batches so that the sessions handled since the
start never run ahead of ``rate`` per second; with no rate it costs nothing.
"""

from __future__ import annotations

import time
import typing as t

#: Keys per store round trip of a bulk command, unless ``--batch`` says otherwise.
DEFAULT_BATCH = 1000
#: With a rate, a round trip carries about this many seconds' worth of it: 2 ms, 40
#: keys at 20,000 a second, a step a single-threaded server serves in about 0.1 ms.
PACED_STEP = 0.002


def batch_for(rate: int | None) -> int:
    """Keys per round trip for a command kept at ``rate`` sessions a second.

    A big batch is one long step for a single-threaded server, which every other
    client waits behind: measured beside an app-like workload (benchmarks/
    bench_gentle.py), 1,000-key steps raised its p99 latency 12-17 times, 100-key
    steps 3-5 times and 30-key steps about twice at the same rate. So a paced
    command takes small steps.
    """
    if rate is None:
        return DEFAULT_BATCH
    return max(10, min(DEFAULT_BATCH, int(rate * PACED_STEP)))


class Pacer:
    """Keep a running count of sessions at or under ``rate`` per second.

    :param rate: sessions per second, or ``None`` for no limit.
    """

    def __init__(
        self,
        rate: int | None,
        *,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._started: float | None = None
        self.count = 0

    def pace(self, count: int) -> None:
        """Account for ``count`` more sessions; sleep until the rate allows going on."""
        if self.rate is None:
            return
        now = self._clock()
        if self._started is None:
            # The first batch went out at full speed: the budget starts with it.
            self._started = now
        self.count += count
        due = self._started + self.count / self.rate
        if due > now:
            self._sleep(due - now)
