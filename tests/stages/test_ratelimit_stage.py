"""The rate-limit stage against the real Redis: the Lua script matches the Python reference,
bursts and steady rates, client isolation, the card limit, TTLs, failing open."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as redis
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.records import PaymentRequest
from ops.application import open_redis
from stages.gcra import Limit, admit
from stages.ratelimit import RateLimitCheck, RateLimited, RateLimiter, RateLimitStage
from stages.screening import Screening
from tests.conftest import unique

T0 = 1_700_000_000_000_000  # µs, for the tests that replace Redis's clock
S = 1_000_000
OFF = Limit(0, 0)


def check(client_id: str, card_id: str = "card") -> RateLimitCheck:
    request = PaymentRequest(
        client_id=client_id, idem_key=unique("k"), fingerprint="f", transaction_id=unique("t"),
        account_id="a", card_id=card_id, merchant_id="m", amount_minor=100, currency="EUR",
        merchant_category="misc", country="DE", lat=None, lon=None,
        event_time=datetime(2026, 1, 1, tzinfo=UTC))
    return RateLimitCheck(Screening(request=request, cache_key="unused"))


def triples(flat: list[int]) -> list[tuple[int, int, int]]:
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


@pytest.fixture
def limiter_for(redis_client, settings):
    def make(client: Limit = OFF, card: Limit = OFF) -> RateLimiter:
        return RateLimiter(redis_client, prefix=f"{settings.redis_prefix}-{unique('rl')}",
                           client_limit=client, card_limit=card)
    return make


# -- the script against the reference ---------------------------------------------------------

limits = st.one_of(st.just(OFF), st.builds(
    Limit, per_s=st.sampled_from([0.25, 0.5, 1.0, 2.0]), burst=st.integers(1, 4)))
batches = st.lists(st.tuples(
    st.integers(0, 3 * S),  # µs since the previous batch
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=8)),
    min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(client=limits, card=limits, batches=batches)
async def test_the_script_decides_like_the_reference(redis_client: redis.Redis, client: Limit,
                                                     card: Limit, batches):
    # Intervals of >= 500 ms keep every key alive (TTL = until its TAT) for the whole example,
    # whose injected clock runs far faster than Redis's own.
    limiter = RateLimiter(redis_client, prefix=unique("rl-prop"), client_limit=client,
                          card_limit=card)
    tats: dict[str, int] = {}
    now = T0
    try:
        for step_us, requests in batches:
            now += step_us
            pairs = [(f"client-{c}", f"card-{k}") for c, k in requests]
            got = triples(await limiter.check(pairs, now_us=now))
            expected = []
            for client_id, card_id in pairs:
                decision = admit(
                    tats, now,
                    (limiter.key("client", client_id), client) if client.enabled else None,
                    (limiter.key("card", card_id), card) if card.enabled else None)
                if decision.scope is None:
                    expected.append((0, decision.remaining, decision.reset_us))
                else:
                    code = 1 if decision.scope == "client" else 2
                    expected.append((code, decision.retry_after_us, decision.reset_us))
            assert got == expected
        for key, tat in tats.items():
            if tat > now:
                assert int(await redis_client.get(key)) == tat
    finally:
        if tats:
            await redis_client.delete(*tats)


# -- the stage ------------------------------------------------------------------------------

async def test_burst_in_one_instant_then_denied_with_retry_after_and_reset(limiter_for):
    stage = RateLimitStage(limiter_for(client=Limit(per_s=0.5, burst=3)))
    batch = [check("gw") for _ in range(4)]
    outcomes = await stage(batch)  # one script call: one instant on Redis's clock
    assert outcomes[:3] == [c.screening for c in batch[:3]]
    assert [(c.quota.remaining, c.quota.reset_us) for c in batch[:3]] == [
        (2, 2 * S), (1, 4 * S), (0, 6 * S)]
    denied = outcomes[3]
    assert isinstance(denied, RateLimited)
    assert (denied.code, denied.scope, denied.retry_after_s) == ("client_rate_limited",
                                                                 "client", 2)
    assert (denied.quota.remaining, denied.quota.reset_us) == (0, 6 * S)
    assert batch[3].quota is None
    assert stage.statistics().allowed == 3 and stage.statistics().client_denied == 1


async def test_steady_rate_after_the_burst(limiter_for):
    limiter = limiter_for(client=Limit(per_s=10, burst=2))
    burst = triples(await limiter.check([("gw", "x")] * 3, now_us=T0))
    assert [r[0] for r in burst] == [0, 0, 1]
    assert burst[2] == (1, 100_000, 200_000)
    # One request per interval: each allowed, with nothing left over.
    for i in range(1, 20):
        [(code, remaining, _)] = triples(await limiter.check([("gw", "x")],
                                                             now_us=T0 + i * 100_000))
        assert (code, remaining) == (0, 0)
    [(code, wait_us, _)] = triples(await limiter.check([("gw", "x")], now_us=T0 + 1_999_999))
    assert (code, wait_us) == (1, 1)


async def test_clients_are_isolated(limiter_for):
    stage = RateLimitStage(limiter_for(client=Limit(per_s=1, burst=1)))
    outcomes = await stage([check("alpha"), check("alpha"), check("beta")])
    assert [type(o) for o in outcomes] == [Screening, RateLimited, Screening]


async def test_card_limit_without_charging_the_client(limiter_for):
    limiter = limiter_for(client=Limit(per_s=1, burst=10), card=Limit(per_s=1, burst=2))
    stage = RateLimitStage(limiter)
    batch = [check("gw", "card-a") for _ in range(4)] + [check("gw", "card-b")]
    outcomes = await stage(batch)
    assert [type(o) for o in outcomes] == [Screening, Screening, RateLimited, RateLimited,
                                           Screening]
    denied = outcomes[2]
    assert isinstance(denied, RateLimited)
    assert (denied.code, denied.retry_after_s) == ("card_rate_limited", 1)
    assert denied.quota.limit == Limit(per_s=1, burst=2)
    # Three requests consumed the client's budget of ten; the two denied ones did not.
    assert batch[4].quota is not None and batch[4].quota.remaining == 7
    stats = stage.statistics()
    assert (stats.allowed, stats.client_denied, stats.card_denied) == (3, 0, 2)


async def test_client_denial_does_not_charge_the_card(limiter_for, redis_client):
    limiter = limiter_for(client=Limit(per_s=1, burst=1), card=Limit(per_s=1, burst=1))
    results = triples(await limiter.check([("a", "shared"), ("b", "other"), ("a", "third")],
                                          now_us=T0))
    assert [r[0] for r in results] == [0, 0, 1]
    # "third" was refused by its client's limit, so its card is still untouched.
    assert await redis_client.get(limiter.key("card", "third")) is None
    assert await redis_client.get(limiter.key("card", "shared")) is not None


async def test_keys_live_under_the_prefix_until_their_tat(limiter_for, redis_client,
                                                          settings):
    limiter = limiter_for(client=Limit(per_s=2, burst=4), card=Limit(per_s=1, burst=1))
    await RateLimitStage(limiter)([check("gw", "c1")])
    client_key, card_key = limiter.key("client", "gw"), limiter.key("card", "c1")
    assert client_key.startswith(settings.redis_prefix) and client_key.endswith(":rl:client:gw")
    assert 0 < await redis_client.pttl(client_key) <= 500
    assert 0 < await redis_client.pttl(card_key) <= 1000


async def test_limits_off_never_call_redis():
    dead = open_redis("redis://127.0.0.1:1/0")
    stage = RateLimitStage(RateLimiter(dead, prefix="x", client_limit=OFF, card_limit=OFF))
    batch = [check("gw"), check("gw")]
    assert await stage(batch) == [c.screening for c in batch]
    assert stage.statistics().failed_open == 0
    await dead.aclose()


async def test_redis_down_fails_open():
    dead = open_redis("redis://127.0.0.1:1/0")
    stage = RateLimitStage(RateLimiter(dead, prefix="x", client_limit=Limit(1, 1),
                                       card_limit=Limit(1, 1)))
    batch = [check("gw"), check("gw"), check("gw")]
    assert await stage(batch) == [c.screening for c in batch]
    assert all(c.quota is None for c in batch)  # no RateLimit-* headers without an answer
    assert stage.statistics().failed_open == 3
    await dead.aclose()


async def test_after_a_failure_redis_is_left_alone_for_a_while(redis_client, settings,
                                                                monkeypatch):
    now = [100.0]
    limiter = RateLimiter(redis_client, prefix=f"{settings.redis_prefix}-{unique('rl')}",
                          client_limit=Limit(1, 1), card_limit=OFF)
    stage = RateLimitStage(limiter, retry_after_failure_s=1.0, clock=lambda: now[0])
    calls = 0

    async def failing_check(*args, **kwargs):
        nonlocal calls
        calls += 1
        raise redis.ConnectionError("Redis is down")
    monkeypatch.setattr(limiter, "check", failing_check)
    await stage([check("gw")])
    now[0] += 0.9
    await stage([check("gw"), check("gw")])  # within the second: not even tried
    assert calls == 1 and stage.statistics().failed_open == 3
    monkeypatch.undo()
    now[0] += 0.1
    outcomes = await stage([check("gw"), check("gw")])  # Redis is asked again, and limits
    assert [type(o) for o in outcomes] == [Screening, RateLimited]
