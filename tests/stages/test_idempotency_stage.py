"""The idempotency stage against the real Redis: claim, replay, conflict, fallback, release."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.errors import IdempotencyKeyReused
from ledger.records import PaymentRecord, PaymentRequest
from ops.application import open_redis
from pipeline import Finish
from stages.idempotency import IdempotencyCache, IdempotencyStage
from stages.respond import RespondStage
from stages.screening import RequestInFlight, Screening
from tests.conftest import unique


def screening(cache: IdempotencyCache, key: str, fingerprint: str = "f1") -> Screening:
    request = PaymentRequest(
        client_id="c", idem_key=key, fingerprint=fingerprint, transaction_id=unique("t"),
        account_id="a", card_id="card", merchant_id="m", amount_minor=100, currency="EUR",
        merchant_category="misc", country="DE", lat=None, lon=None,
        event_time=datetime(2026, 1, 1, tzinfo=UTC))
    return Screening(request=request, cache_key=cache.key("c", key))


def record(txn: str) -> PaymentRecord:
    return PaymentRecord(transaction_id=txn, decision="approve", risk_score=0.0, reasons=[],
                         balance_after_minor=900, currency="EUR", rules_version=None,
                         model_version=None, recorded_at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def cache(redis_client, settings) -> IdempotencyCache:
    return IdempotencyCache(redis_client, prefix=settings.redis_prefix + "-stage", ttl_s=60,
                            inflight_ttl_s=60)


async def test_claim_then_conflict_then_replay(cache):
    stage, respond = IdempotencyStage(cache), RespondStage(cache)
    key = unique("k")
    first = screening(cache, key)
    [outcome] = await stage([first])
    assert outcome is first and first.marker

    twin, other = screening(cache, key), screening(cache, key, fingerprint="f2")
    assert [type(o) for o in await stage([twin, other])] == [RequestInFlight,
                                                            IdempotencyKeyReused]

    first.record = record(first.request.transaction_id)
    assert await respond([first]) == [first.record]
    [replay] = await stage([screening(cache, key)])
    assert isinstance(replay, Finish)
    assert replay.value.replayed is True
    assert replay.value.transaction_id == first.request.transaction_id


async def test_same_key_twice_in_one_batch(cache):
    key = unique("k")
    a, b = screening(cache, key), screening(cache, key)
    outcomes = await IdempotencyStage(cache)([a, b])
    assert outcomes[0] is a
    assert isinstance(outcomes[1], RequestInFlight)


async def test_release_only_drops_our_own_marker(cache, redis_client):
    key = unique("k")
    item = screening(cache, key)
    await IdempotencyStage(cache)([item])
    stranger = screening(cache, key)
    stranger.marker = cache.new_marker("f1")
    await cache.release(stranger)
    assert await redis_client.exists(item.cache_key) == 1
    await cache.release(item)
    assert await redis_client.exists(item.cache_key) == 0


async def test_redis_down_lets_every_item_through_to_the_ledger(settings):
    dead = open_redis("redis://127.0.0.1:1/0")
    cache = IdempotencyCache(dead, prefix="x", ttl_s=60, inflight_ttl_s=60)
    items = [screening(cache, unique("k")) for _ in range(3)]
    assert await IdempotencyStage(cache)(items) == items
    assert all(item.marker == b"" for item in items)
    for item in items:
        item.record = record(item.request.transaction_id)
    # The respond stage still answers: Redis is only the fast path.
    assert await RespondStage(cache)(items) == [item.record for item in items]
    await dead.aclose()
