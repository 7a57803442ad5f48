"""How many examples property tests run: bounded in CI, more on demand.

Every hypothesis test takes its settings from :func:`examples`, so one knob scales
them all: ``SESSTOOL_PROPERTY_SCALE=50 scripts/test --only pytest`` runs fifty times
the examples of the default run (which CI uses, derandomized, so it is repeatable).
"""

from __future__ import annotations

import os
import typing as t

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("SESSTOOL_PROPERTY_SCALE", "1")))


def examples(count: int) -> t.Any:
    """Settings for ``count`` examples (times the scale), without a per-example deadline."""
    return settings(max_examples=count * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
