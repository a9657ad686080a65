"""Velocity windows read live from Redis equal the backtest's offline ones (rules/backtest.py)
over the same history, for every function, both entities and several windows at once; and
recording keeps each entity's history within the retention."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import redis.asyncio as redis

from ledger.records import PaymentRequest
from model.history import RETENTION_MS
from rules import VelocityKey
from rules.backtest import EntityHistory, HistoryRow, velocity_features
from stages.resp import RedisPipelines
from stages.velocity import HISTORY_S, VelocityStore, event_ms
from tests.conftest import unique

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, tzinfo=UTC)
DAY_S = 86_400
WANTED = frozenset(
    VelocityKey(function, entity, window_s)
    for function in ("count", "sum", "avg_amount", "distinct_countries")
    for entity in ("card", "account")
    for window_s in (600, DAY_S, 30 * DAY_S, 60 * DAY_S))


def random_rows(seed: int, n: int = 160) -> list[HistoryRow]:
    rng = random.Random(seed)
    cards, accounts = [unique("card") for _ in range(3)], [unique("acct") for _ in range(2)]
    at, rows = START, []
    for i in range(n):
        # Ties, bursts, ordinary gaps and pauses, so every window holds a different count.
        at += timedelta(seconds=rng.choice([0, 1, 45, 400, 3_600, 10 * 3_600, 2 * DAY_S]))
        rows.append(HistoryRow(
            transaction_id=f"t{i}-{rng.randrange(10**6)}", account_id=rng.choice(accounts),
            card_id=rng.choice(cards), merchant_id="m", merchant_category="grocery_pos",
            amount_minor=rng.choice([1, 99, 1234, 50_000]), currency="EUR",
            country=rng.choice(["DE", "DE", "FR", "US"]), lat=None, lon=None, event_time=at,
            home_country="DE", home_lat=None, home_lon=None, account_created_at=START,
            risk_score=0.0, label=None))
    return rows


def request_of(row: HistoryRow) -> PaymentRequest:
    return PaymentRequest(
        client_id="c", idem_key="k", fingerprint="f", transaction_id=row.transaction_id,
        account_id=row.account_id, card_id=row.card_id, merchant_id=row.merchant_id,
        amount_minor=row.amount_minor, currency=row.currency,
        merchant_category=row.merchant_category, country=row.country, lat=None, lon=None,
        event_time=row.event_time)


@pytest.mark.parametrize("seed", [1, 2])
async def test_live_windows_equal_the_offline_ones(redis_pipelines: RedisPipelines, seed: int):
    rows = random_rows(seed)
    assert event_ms(rows[-1].event_time) - event_ms(rows[0].event_time) < RETENTION_MS
    store = VelocityStore(redis_pipelines, prefix=unique("vel-test"))
    requests = [request_of(row) for row in rows]
    for start in range(0, len(requests), 7):  # recorded in micro-batches, as live
        await store.record(requests[start:start + 7])
    histories: dict[tuple[str, str], EntityHistory] = {}
    for row in rows:  # the whole history: each window sees only what precedes it
        for key in (("card", row.card_id), ("account", row.account_id)):
            histories.setdefault(key, EntityHistory()).events.append(
                (event_ms(row.event_time), row.amount_minor, row.country))
    live, _ = await store.read(requests, WANTED, history=False)
    offline = [velocity_features(row, WANTED, histories) for row in rows]
    assert live == offline
    # Not trivially equal: windows hold different, non-zero values.
    counts = {vk.window_s: [f[vk] for f in offline] for vk in WANTED
              if vk.function == "count" and vk.entity == "card"}
    assert max(counts[600]) >= 2 and sum(counts[60 * DAY_S]) > sum(counts[DAY_S]) > 0
    assert max(f[VelocityKey("distinct_countries", "account", 30 * DAY_S)]
               for f in offline) == 3
    sums = [f[VelocityKey("sum", "card", 60 * DAY_S)] for f in offline]
    assert all(isinstance(v, Decimal) for v in sums) and max(sums) > Decimal("500")  # type: ignore[operator]


async def test_windows_and_summary_read_together_and_apart_agree(
        redis_pipelines: RedisPipelines):
    rows = random_rows(3, 80)
    store = VelocityStore(redis_pipelines, prefix=unique("vel-test"))
    requests = [request_of(row) for row in rows]
    await store.record(requests)
    wanted = frozenset(vk for vk in WANTED if vk.window_s <= DAY_S)
    both, with_windows = await store.read(requests, wanted, history=True)
    alone, _ = await store.read(requests, wanted, history=False)
    _, summaries = await store.read(requests, (), history=True)
    assert both == alone
    np.testing.assert_array_equal(with_windows, summaries)
    assert summaries[:, 3].max() > 5  # the card profiles are not empty


async def test_old_members_without_category_and_hour_still_count(
        redis_pipelines: RedisPipelines, redis_client: redis.Redis):
    store = VelocityStore(redis_pipelines, prefix=unique("vel-test"))
    [request] = [request_of(row) for row in random_rows(4, 1)]
    now = event_ms(request.event_time)
    await redis_client.zadd(store.key("card", request.card_id),
                            {"old-1|250|FR": now - 60_000, "old-2|750|DE": now - 7_200_000})
    count, total = VelocityKey("count", "card", 600), VelocityKey("sum", "card", DAY_S)
    [features], summaries = await store.read([request], {count, total}, history=True)
    assert features == {count: 1, total: Decimal("10.00")}
    count_24h, night_24h, last_ms, count_30d, _, same_category = summaries[0]
    assert (count_24h, night_24h, last_ms, count_30d, same_category) == (
        2, 0, now - 60_000, 2, 0)


async def test_recording_trims_what_the_newest_payment_no_longer_needs(
        redis_pipelines: RedisPipelines, redis_client: redis.Redis):
    store = VelocityStore(redis_pipelines, prefix=unique("vel-test"))
    [old, new] = [request_of(row) for row in random_rows(5, 2)]
    new = PaymentRequest(**{**{f: getattr(new, f) for f in new.__struct_fields__},
                            "card_id": old.card_id, "account_id": old.account_id,
                            "event_time": old.event_time + timedelta(seconds=HISTORY_S + 1)})
    await store.record([old])
    key = store.key("card", old.card_id)
    assert await redis_client.zcard(key) == 1
    await store.record([new, old])  # the old one again, in the same batch: trimmed all the same
    assert [m.decode().split("|")[0] for m in await redis_client.zrange(key, 0, -1)] == [
        new.transaction_id]
    assert 0 < await redis_client.pttl(key) <= (HISTORY_S + 86_400) * 1000
