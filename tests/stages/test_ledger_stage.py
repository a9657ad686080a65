"""The ledger stage when PostgreSQL is gone: every item fails fast with ledger_unavailable."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from http_edge.problems import status_of
from ledger.errors import LedgerUnavailable
from ledger.records import PaymentRequest
from ledger.repository import Ledger, open_pool
from pipeline import Pipeline, Stage, StageConfig, StageFailed
from stages.ledger import LedgerStage
from stages.screening import Screening


def payment(i: int) -> PaymentRequest:
    return PaymentRequest(
        client_id="c", idem_key=f"k{i}", fingerprint="aa", transaction_id=f"t{i}",
        account_id="nobody", card_id="card", merchant_id="m", amount_minor=100, currency="EUR",
        merchant_category="misc", country="DE", lat=None, lon=None,
        event_time=datetime(2026, 1, 1, tzinfo=UTC))


async def test_lost_database_is_a_503_for_every_item(database):
    pool = await asyncpg.create_pool(database.database_url, min_size=1, max_size=1)
    await pool.close()  # as if PostgreSQL went away under a running pool
    config = StageConfig(workers=1, batch_max=8, batch_wait_ms=1, queue_max=16)
    pipeline = Pipeline([Stage("ledger", LedgerStage(Ledger(pool)), config)])
    await pipeline.start()
    items = [pipeline.submit_nowait(Screening(request=payment(i), cache_key=f"k{i}"),
                                    deadline_s=5) for i in range(3)]
    for item in items:
        with pytest.raises(StageFailed) as info:
            await item.future
        assert isinstance(info.value.__cause__, LedgerUnavailable)
        assert status_of(info.value)[:2] == (503, "ledger_unavailable")
    await pipeline.drain(1)


async def test_unreachable_database_fails_fast_at_startup():
    with pytest.raises(LedgerUnavailable):
        await open_pool("postgresql://nobody@127.0.0.1:1/none", min_size=1, max_size=1,
                        connect_timeout_s=1)


class _SlowLedger:
    """Stands in for Ledger: refuses every payment after `delay_s` on a fake clock."""

    def __init__(self, clock: list[float], delay_s: float) -> None:
        self._clock, self._delay_s = clock, delay_s

    async def post_payments(self, requests: list[PaymentRequest]) -> list[object]:
        self._clock[0] += self._delay_s
        return [LedgerUnavailable("test") for _ in requests]

    def pool_state(self) -> tuple[int, int]:
        return 12, 0


@pytest.mark.parametrize(("delay_s", "logged"), [(0.3, True), (0.1, False)])
async def test_a_slow_call_is_logged_with_its_size_and_the_pool(caplog, delay_s, logged):
    now = [100.0]
    stage = LedgerStage(_SlowLedger(now, delay_s), slow_ms=250,  # type: ignore[arg-type]
                        clock=lambda: now[0])
    batch = [Screening(request=payment(i), cache_key=f"k{i}") for i in range(3)]
    with caplog.at_level("WARNING", logger="stages.ledger"):
        outcomes = await stage(batch)
    assert all(isinstance(o, LedgerUnavailable) for o in outcomes)
    assert stage.slow_calls == int(logged)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == (["slow ledger call: 3 payments took 300 ms (pool: 12 connections, "
                         "0 idle)"] if logged else [])
