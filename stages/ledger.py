"""The ledger stage: group commit, one round trip and one commit per micro-batch."""

from __future__ import annotations

from ledger.records import PaymentRecord
from ledger.repository import Ledger
from stages.screening import Screening


class LedgerStage:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def __call__(self, batch: list[Screening]) -> list[object]:
        outcomes = await self._ledger.post_payments([item.request for item in batch])
        results: list[object] = []
        for item, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PaymentRecord):
                item.record = outcome
                results.append(item)
            else:
                results.append(outcome)
        return results
