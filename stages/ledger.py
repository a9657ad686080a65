"""The ledger stage: group commit, one round trip and one commit per micro-batch.

A call slower than `slow_ms` is logged with its size and the pool's state: at a few ms a call,
one that takes hundreds stalls every payment queued behind it (deadline_exceeded 503s), and the
log line is what tells a lock or a starved database apart from an empty pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ledger.records import PaymentRecord
from ledger.repository import Ledger
from stages.screening import Screening

log = logging.getLogger(__name__)


class LedgerStage:
    def __init__(self, ledger: Ledger, *, slow_ms: float = 250.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger = ledger
        self._slow_s = slow_ms / 1000
        self._clock = clock
        self.slow_calls = 0

    async def __call__(self, batch: list[Screening]) -> list[object]:
        started = self._clock()
        outcomes = await self._ledger.post_payments([item.request for item in batch])
        took = self._clock() - started
        if took > self._slow_s:
            self.slow_calls += 1
            size, idle = self._ledger.pool_state()
            log.warning("slow ledger call: %d payments took %.0f ms (pool: %d connections, "
                        "%d idle)", len(batch), took * 1000, size, idle)
        results: list[object] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PaymentRecord):
                item.record = outcome
                results.append(item)
            else:
                results.append(outcome)
        return results
