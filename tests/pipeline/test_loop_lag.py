"""The event-loop lag monitor: what it records and logs, and that it sees a blocked loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from pipeline import Histogram, LoopLagMonitor


def monitor(**options: float) -> LoopLagMonitor:
    return LoopLagMonitor(Histogram((1, 10, 100, 1000)), **options)


def test_a_wake_up_on_time_is_recorded_and_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    lag = monitor(warn_ms=50)
    with caplog.at_level(logging.WARNING):
        assert lag.observe(0.05, 0.0502, 0.0001) == pytest.approx(0.0002)
        assert lag.observe(0.05, 0.049, 0.0) == 0.0  # early counts as on time
    snapshot = lag.histogram.snapshot()
    assert snapshot.count == 2 and snapshot.counts[0] == 2  # both within 1 ms
    assert lag.stalls == 0
    assert not caplog.records


def test_a_late_wake_up_is_logged_with_the_cpu_used_meanwhile(
        caplog: pytest.LogCaptureFixture) -> None:
    lag = monitor(warn_ms=50)
    with caplog.at_level(logging.WARNING):
        assert lag.observe(0.05, 0.2, 0.004) == pytest.approx(0.15)
    assert lag.stalls == 1
    assert lag.histogram.snapshot().counts == (0, 0, 0, 1, 1)  # 150 ms: in the 1000 bucket
    message = caplog.records[-1].getMessage()
    assert message == ("event loop ran 150 ms late: this process used 4 ms of CPU in those "
                       "200 ms (2 %)")


def hold_the_loop(seconds: float) -> None:
    """A long synchronous call, as a slow handler would make: nothing else runs meanwhile."""
    time.sleep(seconds)


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        monitor(interval_s=0)


async def test_it_sees_a_blocked_loop_and_stops_cleanly(
        caplog: pytest.LogCaptureFixture) -> None:
    lag = monitor(interval_s=0.01, warn_ms=50)
    with caplog.at_level(logging.WARNING):
        lag.start()
        await asyncio.sleep(0.03)  # a few on-time wake-ups
        hold_the_loop(0.2)  # the monitor's timer cannot run meanwhile
        await asyncio.sleep(0.03)
        await lag.stop()
        await lag.stop()  # twice is harmless
    assert lag.stalls >= 1
    assert lag.histogram.snapshot().count >= 2
    assert any("event loop ran" in r.getMessage() for r in caplog.records)
