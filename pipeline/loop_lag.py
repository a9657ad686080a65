"""How late the event loop runs a timer: every request in flight waits as long.

A task sleeps `interval_s` over and over and records how much later than asked it woke. A lag
above `warn_ms` is logged with the CPU time this process used meanwhile, which tells the two
kinds of stall apart: CPU close to the time that passed means our own code held the loop (a
long synchronous call, a collection); little means the process did not run (the machine was
busy with other processes, or paused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pipeline.histogram import Histogram

log = logging.getLogger(__name__)


class LoopLagMonitor:
    def __init__(self, histogram: Histogram, *, interval_s: float = 0.05,
                 warn_ms: float = 50.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.histogram = histogram
        self.stalls = 0  # lags above warn_ms
        self._interval_s = interval_s
        self._warn_s = warn_ms / 1000
        self._task: asyncio.Task[None] | None = None

    def observe(self, asked_s: float, slept_s: float, cpu_s: float) -> float:
        """Record one wake-up: `slept_s` passed (and `cpu_s` of process CPU) where `asked_s`
        was asked for; returns the lag in seconds."""
        lag = max(0.0, slept_s - asked_s)
        self.histogram.observe(lag * 1000)
        if lag > self._warn_s:
            self.stalls += 1
            log.warning("event loop ran %.0f ms late: this process used %.0f ms of CPU in "
                        "those %.0f ms (%.0f %%)", lag * 1000, cpu_s * 1000, slept_s * 1000,
                        100 * cpu_s / slept_s if slept_s > 0 else 0.0)
        return lag

    async def run(self) -> None:
        interval = self._interval_s
        while True:
            started, cpu = time.monotonic(), time.process_time()
            await asyncio.sleep(interval)
            self.observe(interval, time.monotonic() - started, time.process_time() - cpu)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
