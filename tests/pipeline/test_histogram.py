"""Histogram maths: le buckets, cumulative counts, defaults, and a property test."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import Histogram, HistogramSnapshot
from pipeline.histogram import BATCH_SIZE_BOUNDS, LATENCY_MS_BOUNDS


def test_counts_are_cumulative_with_le_semantics() -> None:
    histogram = Histogram([1, 2, 5])
    for value in (0.5, 1, 1.5, 2, 3, 10):
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert snapshot == HistogramSnapshot(bounds=(1.0, 2.0, 5.0), counts=(2, 4, 5, 6),
                                         sum=18.0, count=6)


def test_empty_histogram() -> None:
    snapshot = Histogram([1, 2]).snapshot()
    assert snapshot.counts == (0, 0, 0)
    assert (snapshot.sum, snapshot.count) == (0.0, 0)


def test_no_bounds_means_one_inf_bucket() -> None:
    histogram = Histogram([])
    histogram.observe(3.5)
    assert histogram.snapshot().counts == (1,)


@pytest.mark.parametrize("bounds", [[2, 1], [1, 1], [1, math.nan], [math.inf]])
def test_bounds_must_strictly_increase(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="finite and strictly increasing"):
        Histogram(bounds)


def test_snapshot_is_frozen_and_detached() -> None:
    histogram = Histogram([1])
    snapshot = histogram.snapshot()
    histogram.observe(0.5)
    assert snapshot.count == 0
    with pytest.raises(AttributeError):
        snapshot.count = 3  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(snapshot), type=HistogramSnapshot) == snapshot


def test_default_bounds() -> None:
    assert LATENCY_MS_BOUNDS[0] == 0.05 and LATENCY_MS_BOUNDS[-1] == 1000
    assert list(LATENCY_MS_BOUNDS) == sorted(set(LATENCY_MS_BOUNDS))
    assert BATCH_SIZE_BOUNDS == tuple(2**i for i in range(11))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(bounds=st.lists(finite, max_size=20, unique=True).map(sorted),
       values=st.lists(finite, max_size=200))
def test_property_counts_match_observations(bounds: list[float], values: list[float]) -> None:
    histogram = Histogram(bounds)
    for value in values:
        histogram.observe(value)
    snapshot = histogram.snapshot()
    assert len(snapshot.counts) == len(bounds) + 1
    assert all(a <= b for a, b in zip(snapshot.counts, snapshot.counts[1:], strict=False))
    assert snapshot.counts[-1] == snapshot.count == len(values)
    for bound, count in zip(bounds, snapshot.counts, strict=False):
        assert count == sum(value <= bound for value in values)
    assert snapshot.sum == pytest.approx(math.fsum(values), abs=1e-6)
