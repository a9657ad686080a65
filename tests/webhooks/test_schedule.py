"""Retry schedules, Retry-After and job headers: pure logic."""

from __future__ import annotations

import random

import pytest

from webhooks.http_client import MAX_RETRY_AFTER_S, retry_after_s
from webhooks.schedule import (
    DEFAULT_ALERT_SCHEDULE,
    DEFAULT_WEBHOOK_SCHEDULE,
    JITTER,
    ScheduleError,
    delay_for,
    jittered_ms,
    parse_schedule,
    total_ms,
)
from webhooks.topology import JobQueues


def test_parse_units_and_order():
    assert parse_schedule("5s, 30s,2m,10m,1h") == (5_000, 30_000, 120_000, 600_000, 3_600_000)
    assert parse_schedule("250ms,1.5s,1d") == (250, 1_500, 86_400_000)
    assert parse_schedule("") == ()


def test_the_default_spans_about_a_day_in_eight_attempts():
    schedule = parse_schedule(DEFAULT_WEBHOOK_SCHEDULE)
    assert len(schedule) + 1 == 8
    assert 24 * 3_600_000 <= total_ms(schedule) <= 30 * 3_600_000
    assert list(schedule[:3]) == sorted(schedule[:3])  # seconds, then minutes, then hours
    assert parse_schedule(DEFAULT_ALERT_SCHEDULE)


@pytest.mark.parametrize("text", ["5", "5x", "s5", "-1s", "1s,,2s", "0ms", "8d", "1e3s"])
def test_bad_steps_are_named(text):
    with pytest.raises(ScheduleError, match="retry schedule step"):
        parse_schedule(text)


def test_delay_for_walks_the_schedule_then_stops():
    schedule = (100, 200, 400)
    assert [delay_for(schedule, attempt) for attempt in (1, 2, 3, 4)] == [100, 200, 400, None]
    assert delay_for((), 1) is None


def test_retry_after_moves_to_the_first_later_tier_that_waits_long_enough():
    schedule = (1_000, 5_000, 60_000)
    assert delay_for(schedule, 1, retry_after_s=3) == 5_000
    assert delay_for(schedule, 1, retry_after_s=0.5) == 1_000  # never earlier than scheduled
    assert delay_for(schedule, 2, retry_after_s=3600) == 60_000  # capped at the longest tier
    assert delay_for(schedule, 4, retry_after_s=1) is None  # no attempt left, whatever it says


def test_jitter_stays_within_bounds_and_varies():
    rng = random.Random(7)
    values = {jittered_ms(10_000, rng) for _ in range(200)}
    assert min(values) >= 10_000 * (1 - JITTER) and max(values) <= 10_000 * (1 + JITTER)
    assert len(values) > 50
    assert jittered_ms(1, rng) >= 1


def test_retry_after_header_forms():
    assert retry_after_s("120") == 120.0
    assert retry_after_s("99999999") == MAX_RETRY_AFTER_S
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now_s=1445412470.0) == 10.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now_s=1445412490.0) == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_queue_names_per_delay_tier():
    queues = JobQueues("p", "webhooks", (5_000, 30_000, 5_000))
    assert queues.work == "p.webhooks" and queues.dead == "p.webhooks.dead"
    assert queues.names() == ["p.webhooks", "p.webhooks.dead", "p.webhooks.delay.5000ms",
                              "p.webhooks.delay.30000ms"]
