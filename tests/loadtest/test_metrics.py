"""Prometheus text parsing and the per-stage shares from two scrapes of /metrics."""

from __future__ import annotations

import pytest

from loadtest.metrics import delta, parse, screening_mean_ms, stage_names, stage_times


def _scrape(*, items: int, wait_sum: float, service_sum: float, batches: int,
            screening_sum: float) -> str:
    """The shape http_edge.metrics renders: two stages, a screening histogram."""
    lines = ["# HELP sentinel_screening_ms time to answer a screening",
             "# TYPE sentinel_screening_ms histogram",
             f'sentinel_screening_ms_bucket{{le="+Inf"}} {items}',
             f"sentinel_screening_ms_sum {screening_sum}",
             f"sentinel_screening_ms_count {items}"]
    for stage, factor in (("idempotency", 1), ("ledger", 3)):
        labels = f'stage="{stage}"'
        lines += [f'sentinel_stage_queue_wait_ms_bucket{{{labels},le="0.5"}} 0',
                  f"sentinel_stage_queue_wait_ms_sum{{{labels}}} {wait_sum * factor}",
                  f"sentinel_stage_queue_wait_ms_count{{{labels}}} {items}",
                  f"sentinel_stage_service_ms_sum{{{labels}}} {service_sum * factor}",
                  f"sentinel_stage_service_ms_count{{{labels}}} {batches}",
                  f"sentinel_stage_batch_size_sum{{{labels}}} {items}",
                  f"sentinel_stage_batch_size_count{{{labels}}} {batches}"]
    return "\n".join(lines) + "\n"


def test_parse_reads_names_labels_and_values() -> None:
    samples = parse('# HELP x y\n# TYPE x counter\n'
                    'sentinel_http_requests_total{method="POST",route="/v1/transactions",'
                    'status="200"} 12\n'
                    'up 1\n'
                    'odd{path="a\\"b\\\\c",le="+Inf"} 2.5e3\n')
    assert samples[("up", ())] == 1.0
    assert samples[("sentinel_http_requests_total", (
        ("method", "POST"), ("route", "/v1/transactions"), ("status", "200")))] == 12.0
    assert samples[("odd", (("le", "+Inf"), ("path", 'a"b\\c')))] == 2500.0
    assert len(samples) == 3


def test_delta_subtracts_the_earlier_scrape() -> None:
    before = parse("a 5\nb 1\n")
    after = parse("a 8\nb 1\nc 4\n")
    assert delta(before, after) == {("a", ()): 3.0, ("b", ()): 0.0, ("c", ()): 4.0}


def test_stage_times_from_the_difference_of_two_scrapes() -> None:
    before = parse(_scrape(items=100, wait_sum=50.0, service_sum=80.0, batches=50,
                           screening_sum=1000.0))
    after = parse(_scrape(items=300, wait_sum=250.0, service_sum=480.0, batches=100,
                          screening_sum=5000.0))
    change = delta(before, after)
    assert stage_names(change) == ["idempotency", "ledger"]
    assert screening_mean_ms(change) == pytest.approx(20.0)  # 4000 ms over 200 screenings
    idempotency, ledger = stage_times(change)
    assert idempotency.items == 200
    assert idempotency.batch_mean == pytest.approx(4.0)  # 200 items in 50 batches
    assert idempotency.queue_wait_ms == pytest.approx(1.0)  # 200 ms over 200 items
    assert idempotency.service_ms == pytest.approx(8.0)  # 400 ms over 50 batches
    assert idempotency.share == pytest.approx(9.0 / 20.0)
    assert (ledger.queue_wait_ms, ledger.service_ms) == pytest.approx((3.0, 24.0))


def test_no_screening_in_the_interval_gives_zero_shares() -> None:
    scrape = parse(_scrape(items=10, wait_sum=1.0, service_sum=1.0, batches=5,
                           screening_sum=10.0))
    change = delta(scrape, scrape)
    assert screening_mean_ms(change) == 0.0
    assert all(s.share == 0.0 and s.queue_wait_ms == 0.0 for s in stage_times(change))
