"""``stats``' percentiles in bounded memory: exact while values repeat, then within 0.1%."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from sesstool.ops.distribution import RELATIVE_ERROR, Distribution
from tests.properties import examples


def nearest_rank(values: list[int], pct: float) -> int:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def filled(values: list[int], exact_values: int) -> Distribution:
    spread = Distribution(exact_values=exact_values)
    for value in values:
        spread.add(value)
    return spread


@examples(200)
@given(values=st.lists(st.integers(-10, 10**12), min_size=1, max_size=300), pct=st.sampled_from([1, 50, 95, 100]))
def test_percentiles_are_exact_while_the_values_fit(values: list[int], pct: int) -> None:
    spread = filled(values, exact_values=len(values))
    assert spread.percentile(pct) == nearest_rank(values, pct)
    assert (spread.count, spread.total, spread.min, spread.max) == (len(values), sum(values), min(values),
                                                                    max(values))


@examples(200)
@given(values=st.lists(st.integers(0, 10**12), min_size=1, max_size=300), pct=st.sampled_from([1, 50, 95, 100]))
def test_past_the_exact_values_a_percentile_is_within_the_relative_error(values: list[int], pct: int) -> None:
    spread = filled(values, exact_values=3)  # buckets almost from the start
    exact, found = nearest_rank(values, pct), spread.percentile(pct)
    assert found is not None and min(values) <= found <= max(values)
    assert abs(found - exact) <= max(1, exact * RELATIVE_ERROR * 1.01)  # integer rounding at the edges
    assert (spread.total, spread.min, spread.max) == (sum(values), min(values), max(values))


def test_a_million_distinct_values_stay_in_a_few_thousand_counts() -> None:
    spread = Distribution()
    for value in range(1, 1_000_001):
        spread.add(value * 3)
    assert len(spread._counts) < 10_000  # not a million: memory does not grow with the store
    median = spread.percentile(50)
    assert median is not None and abs(median - 1_500_000) <= 1_500_000 * RELATIVE_ERROR
    assert spread.percentile(100) == 3_000_000 and spread.percentile(0) == 3


def test_an_empty_distribution_has_no_percentile() -> None:
    spread = Distribution()
    assert spread.percentile(50) is None and spread.min is None and spread.total == 0
