"""Retry schedules: `5s,30s,2m,10m,1h` -> the delay before each retry, with jitter.

A schedule of n delays means n + 1 attempts. Each distinct delay is one delay queue in
RabbitMQ (webhooks/topology.py), so a delay is a whole number of milliseconds. Jitter spreads
a burst of failures (a merchant down for a minute) over +-10 % of the delay so the retries do
not arrive as one burst again.
"""

from __future__ import annotations

import random
import re

# Close to Svix's schedule: seconds, then minutes, then hours; 8 attempts over ~27.6 h.
DEFAULT_WEBHOOK_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
DEFAULT_ALERT_SCHEDULE = "10s,1m,5m,30m,2h"
JITTER = 0.1
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_STEP = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


class ScheduleError(ValueError):
    """A retry schedule that cannot be parsed; the message says which step and why."""

    code = "invalid_retry_schedule"


def parse_schedule(text: str) -> tuple[int, ...]:
    """Delays in milliseconds, in order; an empty text means no retry at all."""
    steps = [step.strip() for step in text.split(",")] if text.strip() else []
    delays = []
    for step in steps:
        match = _STEP.match(step)
        if match is None:
            raise ScheduleError(f"retry schedule step {step!r} is not a number with a unit "
                                f"(ms, s, m, h or d), e.g. '5s,30s,2m,10m,1h'")
        delay_ms = round(float(match[1]) * _UNITS_MS[match[2]])
        if not 1 <= delay_ms <= 7 * 86_400_000:
            raise ScheduleError(f"retry schedule step {step!r} must be between 1 ms and 7 days")
        delays.append(delay_ms)
    return tuple(delays)


def total_ms(schedule: tuple[int, ...]) -> int:
    return sum(schedule)


def delay_for(schedule: tuple[int, ...], attempt: int, *,
              retry_after_s: float | None = None) -> int | None:
    """The delay tier before attempt `attempt + 1`, or None when `attempt` was the last.

    `retry_after_s` (a merchant's `Retry-After`) moves the retry to the first later tier that
    waits at least that long (the longest tier when none does), never to a new queue.
    """
    if attempt > len(schedule):
        return None
    delay_ms = schedule[attempt - 1]
    if retry_after_s is not None and retry_after_s * 1000 > delay_ms:
        later = [d for d in schedule[attempt - 1:] if d >= retry_after_s * 1000]
        delay_ms = min(later) if later else max(schedule)
    return delay_ms


def jittered_ms(delay_ms: int, rng: random.Random | None = None) -> int:
    """The message's own expiry: the tier's delay +-JITTER, at least 1 ms."""
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    return max(1, round(delay_ms * factor))
