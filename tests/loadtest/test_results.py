"""Percentiles, per-second buckets and the merge of the sender processes' samples."""

from __future__ import annotations

import math
from array import array

import pytest

from loadtest.results import Samples, latency_of, per_second, percentile, summarise


@pytest.mark.parametrize(("q", "expected"), [(0.5, 50), (0.95, 95), (0.99, 99), (0.999, 100),
                                             (1.0, 100), (0.0, 1), (0.001, 1), (0.011, 2)])
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    assert percentile([float(v) for v in range(1, 101)], q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 0.5))


def test_latency_summary() -> None:
    latency = latency_of([4.0, 1.0, 3.0, 2.0])
    assert (latency.p50, latency.p99, latency.max, latency.mean) == (2.0, 4.0, 4.0, 2.5)
    assert math.isnan(latency_of([]).p50)


def test_per_second_buckets_by_due_time() -> None:
    seconds = per_second([0.1, 0.9, 1.5, 3.2], [10.0, 30.0, 5.0, 7.0])
    assert [(s.second, s.count, s.p50, s.p99) for s in seconds] == [
        (0, 2, 10.0, 30.0), (1, 1, 5.0, 5.0), (3, 1, 7.0, 7.0)]


def _samples(latencies: list[float], errors: dict[str, int], last_done_s: float) -> Samples:
    offsets = array("d", [i * 0.1 for i in range(len(latencies))])
    return Samples(offsets, array("d", latencies), errors, last_done_s, cpu_s=0.5)


def test_open_loop_throughput_counts_until_the_last_answer() -> None:
    run = summarise([_samples([1.0] * 10, {}, 9.0), _samples([3.0] * 10, {"timeout": 2}, 10.0)],
                    label="x", target="edge", mode="open", seconds=5.0, rate=4.0)
    assert (run.sent, run.ok, run.errors) == (20, 18, {"timeout": 2})
    assert run.achieved_rps == pytest.approx(2.0)  # 20 answers over 10 s, not 5
    assert run.ok_rps == pytest.approx(1.8)
    assert run.latency.p50 == 1.0 and run.latency.max == 3.0
    assert run.sender_cpu_s == pytest.approx(1.0)
    assert run.error_share == pytest.approx(0.1)


def test_open_loop_never_claims_more_than_the_window() -> None:
    run = summarise([_samples([1.0] * 10, {}, 4.5)], label="x", target="edge", mode="open",
                    seconds=5.0, rate=2.0)
    assert run.achieved_rps == pytest.approx(2.0)


def test_closed_loop_throughput_is_over_the_window() -> None:
    run = summarise([_samples([1.0] * 10, {"HTTP 503 overloaded": 1}, 30.0)], label="x",
                    target="edge", mode="closed", seconds=5.0, concurrency=4)
    assert run.achieved_rps == pytest.approx(2.0)
    assert run.errors == {"HTTP 503 overloaded": 1}
