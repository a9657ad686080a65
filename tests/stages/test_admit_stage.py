"""The admission stage against the real Redis and PostgreSQL: the rate-limit script matches
the Python reference, bursts and steady rates, client isolation, the card limit, TTLs; claims,
replays and conflicts; a limited or unknown-account request claims nothing; velocity read in
the same round trip; Redis losing its scripts; failing open."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis.asyncio as redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from ledger.errors import IdempotencyKeyReused, UnknownAccount
from ledger.records import AccountSpec, PaymentRecord, PaymentRequest
from pipeline import Finish
from rules import VelocityKey
from stages.admit import AdmitStage, ProfileCache
from stages.gcra import Limit, admit, standing
from stages.idempotency import IdempotencyCache
from stages.ratelimit import Claim, RateLimitCheck, RateLimited, RateLimiter
from stages.resp import RedisPipelines
from stages.respond import RespondStage
from stages.screening import RequestInFlight, Screening
from stages.velocity import VelocityStore
from tests.conftest import unique

T0 = 1_700_000_000_000_000  # µs, for the tests that replace Redis's clock
S = 1_000_000
OFF = Limit(0, 0)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
COUNT_10M = VelocityKey("count", "card", 600)


def quads(flat: list) -> list[tuple]:
    return [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]


def triples(flat: list) -> list[tuple]:
    return [q[:3] for q in quads(flat)]


class World:
    """One account in the ledger, a Redis prefix of its own, and stages built over them."""

    def __init__(self, redis_client: redis.Redis, pipelines: RedisPipelines, ledger,
                 prefix: str, account: str) -> None:
        self.redis = redis_client  # to look at what the stages wrote
        self.pipelines = pipelines
        self.ledger = ledger
        self.prefix = prefix
        self.account = account
        self.cache = IdempotencyCache(redis_client, prefix=prefix, ttl_s=60, inflight_ttl_s=60)
        self.velocity = VelocityStore(pipelines, prefix=prefix)

    def limiter(self, client: Limit = OFF, card: Limit = OFF) -> RateLimiter:
        return RateLimiter(prefix=self.prefix, client_limit=client, card_limit=card,
                           claim_ttl_ms=60_000)

    def stage(self, client: Limit = OFF, card: Limit = OFF, *, velocity=frozenset(),
              pipelines: RedisPipelines | None = None, **options) -> AdmitStage:
        rules = SimpleNamespace(current=SimpleNamespace(velocity=velocity))
        return AdmitStage(pipelines or self.pipelines, self.limiter(client, card), self.cache,
                          ProfileCache(self.ledger), self.velocity, rules,  # type: ignore[arg-type]
                          **options)

    def check(self, client_id: str = "gw", card_id: str = "card", *, key: str | None = None,
              fingerprint: str = "f1", account: str | None = None,
              at: datetime = NOW) -> RateLimitCheck:
        key = key or unique("k")
        request = PaymentRequest(
            client_id=client_id, idem_key=key, fingerprint=fingerprint,
            transaction_id=unique("t"), account_id=account or self.account, card_id=card_id,
            merchant_id="m", amount_minor=100, currency="EUR", merchant_category="misc",
            country="DE", lat=None, lon=None, event_time=at)
        return RateLimitCheck(Screening(request=request,
                                        cache_key=self.cache.key(client_id, key)))


@pytest.fixture
async def world(redis_client, redis_pipelines, ledger, settings) -> World:
    account = unique("adm")
    await ledger.create_account(AccountSpec(account_id=account, currency="EUR",
                                            home_country="DE"))
    return World(redis_client, redis_pipelines, ledger,
                 f"{settings.redis_prefix}-{unique('adm')}", account)


def record(txn: str) -> PaymentRecord:
    return PaymentRecord(transaction_id=txn, decision="approve", risk_score=0.0, reasons=[],
                         balance_after_minor=900, currency="EUR", rules_version=None,
                         model_version=None, recorded_at=NOW)


# -- the script against the reference ---------------------------------------------------------

limits = st.one_of(st.just(OFF), st.builds(
    Limit, per_s=st.sampled_from([0.25, 0.5, 1.0, 2.0]), burst=st.integers(1, 4)))
batches = st.lists(st.tuples(
    st.integers(0, 3 * S),  # µs since the previous batch
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=8)),
    min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(client=limits, card=limits, batches=batches)
async def test_the_script_decides_like_the_reference(redis_client: redis.Redis,
                                                     redis_pipelines: RedisPipelines,
                                                     client: Limit, card: Limit, batches):
    # Intervals of >= 500 ms keep every key alive (TTL = until its TAT) for the whole example,
    # whose injected clock runs far faster than Redis's own.
    limiter = RateLimiter(prefix=unique("rl-prop"), client_limit=client, card_limit=card)
    tats: dict[str, int] = {}
    now = T0
    try:
        for step_us, requests in batches:
            now += step_us
            pairs = [(f"client-{c}", f"card-{k}") for c, k in requests]
            got = quads(await limiter.check(redis_pipelines, pairs, now_us=now))
            expected = []
            for client_id, card_id in pairs:
                decision = admit(
                    tats, now,
                    (limiter.key("client", client_id), client) if client.enabled else None,
                    (limiter.key("card", card_id), card) if card.enabled else None)
                if decision.scope is None:
                    expected.append((0, decision.remaining, decision.reset_us, None))
                else:
                    code = 1 if decision.scope == "client" else 2
                    expected.append((code, decision.retry_after_us, decision.reset_us, None))
            assert got == expected
        for key, tat in tats.items():
            if tat > now:
                assert int(await redis_client.get(key)) == tat
    finally:
        if tats:
            await redis_client.delete(*tats)


async def test_steady_rate_after_the_burst(world):
    limiter, r = world.limiter(client=Limit(per_s=10, burst=2)), world.pipelines
    burst = triples(await limiter.check(r, [("gw", "x")] * 3, now_us=T0))
    assert [b[0] for b in burst] == [0, 0, 1]
    assert burst[2] == (1, 100_000, 200_000)
    # One request per interval: each allowed, with nothing left over.
    for i in range(1, 20):
        [(code, remaining, _)] = triples(await limiter.check(r, [("gw", "x")],
                                                             now_us=T0 + i * 100_000))
        assert (code, remaining) == (0, 0)
    [(code, wait_us, _)] = triples(await limiter.check(r, [("gw", "x")],
                                                       now_us=T0 + 1_999_999))
    assert (code, wait_us) == (1, 1)


async def test_client_denial_does_not_charge_the_card_nor_claim(world):
    limiter = world.limiter(client=Limit(per_s=1, burst=1), card=Limit(per_s=1, burst=1))
    claims = [Claim(f"{world.prefix}:claim:{n}", b"m") for n in range(3)]
    results = quads(await limiter.check(
        world.pipelines, [("a", "shared"), ("b", "other"), ("a", "third")], claims, now_us=T0))
    assert [r[0] for r in results] == [0, 0, 1]
    # "third" was refused by its client's limit: its card is untouched, its key unclaimed.
    assert await world.redis.get(limiter.key("card", "third")) is None
    assert await world.redis.get(limiter.key("card", "shared")) is not None
    assert [await world.redis.get(c.key) for c in claims] == [b"m", b"m", None]


async def test_a_known_key_is_answered_from_it_and_consumes_nothing(world):
    client = Limit(per_s=1, burst=3)
    limiter = world.limiter(client=client, card=Limit(per_s=1, burst=1))
    key = Claim(f"{world.prefix}:claim:{unique('k')}", b"marker")
    other = Claim(f"{world.prefix}:claim:{unique('k')}", b"other")
    got = quads(await limiter.check(world.pipelines, [("gw", "card")] * 3, [key, key, other],
                                    now_us=T0))
    # The first claims its key and takes the card's only cell; the twin finds the key and
    # is answered from it without touching a limit; the third, a new key, is refused by the
    # card's limit, which the twin did not use up.
    assert got[0] == (0, 2, S, None)
    tat = int(await world.redis.get(limiter.key("client", "gw")))
    assert got[1] == (0, *standing(tat, T0, client), b"marker")
    assert got[1][1:3] == (2, S)
    assert got[2][0] == 2 and got[2][3] is None
    assert await world.redis.get(other.key) is None


async def test_keys_live_under_the_prefix_until_their_tat(world, settings):
    stage = world.stage(client=Limit(per_s=2, burst=4), card=Limit(per_s=1, burst=1))
    await stage([world.check("gw", "c1")])
    limiter = world.limiter()
    client_key, card_key = limiter.key("client", "gw"), limiter.key("card", "c1")
    assert client_key.startswith(settings.redis_prefix) and client_key.endswith(":rl:client:gw")
    assert 0 < await world.redis.pttl(client_key) <= 500
    assert 0 < await world.redis.pttl(card_key) <= 1000


# -- the stage: rate limits -------------------------------------------------------------------

async def test_burst_in_one_instant_then_denied_with_retry_after_and_reset(world):
    stage = world.stage(client=Limit(per_s=0.5, burst=3))
    batch = [world.check() for _ in range(4)]
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
    # The limited request claimed nothing: its key is free for the retry after the wait.
    assert batch[3].screening.marker == b""
    assert await world.redis.exists(batch[3].screening.cache_key) == 0
    assert await world.redis.exists(batch[0].screening.cache_key) == 1
    assert stage.statistics().allowed == 3 and stage.statistics().client_denied == 1


async def test_clients_are_isolated(world):
    stage = world.stage(client=Limit(per_s=1, burst=1))
    outcomes = await stage([world.check("alpha"), world.check("alpha"), world.check("beta")])
    assert [type(o) for o in outcomes] == [Screening, RateLimited, Screening]


async def test_card_limit_without_charging_the_client(world):
    stage = world.stage(client=Limit(per_s=1, burst=10), card=Limit(per_s=1, burst=2))
    batch = [world.check("gw", "card-a") for _ in range(4)] + [world.check("gw", "card-b")]
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


# -- the stage: idempotency -------------------------------------------------------------------

async def test_claim_then_conflict_then_replay(world):
    stage, respond = world.stage(), RespondStage(world.pipelines, world.cache)
    key = unique("k")
    first = world.check(key=key)
    [outcome] = await stage([first])
    assert outcome is first.screening and first.screening.marker
    # The in-flight marker expires by itself (a crashed edge never blocks a key for good).
    assert 0 < await world.redis.pttl(first.screening.cache_key) <= 60_000

    twin, other = world.check(key=key), world.check(key=key, fingerprint="f2")
    assert [type(o) for o in await stage([twin, other])] == [RequestInFlight,
                                                            IdempotencyKeyReused]
    assert twin.screening.marker == b"" and other.screening.marker == b""

    first.screening.record = record(first.screening.request.transaction_id)
    assert await respond([first.screening]) == [first.screening.record]
    [replay] = await stage([world.check(key=key)])
    assert isinstance(replay, Finish)
    assert replay.value.replayed is True
    assert replay.value.transaction_id == first.screening.request.transaction_id


async def test_a_replay_over_the_card_limit_is_answered_not_refused(world):
    stage, respond = world.stage(card=Limit(per_s=0.5, burst=1)), RespondStage(world.pipelines, world.cache)
    key = unique("k")
    first = world.check(key=key)
    assert await stage([first]) == [first.screening]
    first.screening.record = record(first.screening.request.transaction_id)
    await respond([first.screening])
    # The card's one cell is taken: a new payment is refused, the retry of the answered one
    # gets its answer.
    refused, retry = world.check(), world.check(key=key)
    outcomes = await stage([refused, retry])
    assert isinstance(outcomes[0], RateLimited) and outcomes[0].code == "card_rate_limited"
    assert isinstance(outcomes[1], Finish) and outcomes[1].value.replayed is True
    stats = stage.statistics()
    assert (stats.allowed, stats.card_denied, stats.known_key) == (1, 1, 1)


async def test_same_key_twice_in_one_batch(world):
    key = unique("k")
    a, b = world.check(key=key), world.check(key=key)
    outcomes = await world.stage()([a, b])
    assert outcomes[0] is a.screening
    assert isinstance(outcomes[1], RequestInFlight)


async def test_release_only_drops_our_own_marker(world):
    key = unique("k")
    item = world.check(key=key)
    await world.stage()([item])
    stranger = world.check(key=key).screening
    stranger.marker = world.cache.new_marker("f1")
    await world.cache.release(stranger)
    assert await world.redis.exists(item.screening.cache_key) == 1
    await world.cache.release(item.screening)
    assert await world.redis.exists(item.screening.cache_key) == 0


async def test_an_unknown_account_is_refused_and_claims_nothing(world):
    item = world.check(account=unique("nobody"))
    [outcome] = await world.stage()([item])
    assert isinstance(outcome, UnknownAccount)
    assert item.screening.marker == b""
    assert await world.redis.exists(item.screening.cache_key) == 0


async def test_releases_of_one_turn_go_in_one_call_and_only_ours(world):
    items = [world.check() for _ in range(40)]
    await world.stage()(items)
    screenings = [i.screening for i in items]
    stranger = world.check(key=items[0].screening.request.idem_key).screening
    stranger.marker = world.cache.new_marker("f1")  # not the marker that holds the key
    calls = []
    script = world.cache._release

    async def counting(**kwargs):
        calls.append(len(kwargs["keys"]))
        return await script(**kwargs)

    world.cache._release = counting
    await asyncio.gather(*(world.cache.release(s) for s in [stranger, *screenings[:30]]))
    assert calls == [31]
    assert await world.redis.exists(*(s.cache_key for s in screenings[:30])) == 0
    assert await world.redis.exists(*(s.cache_key for s in screenings[30:])) == 10
    # A cancelled caller does not stop the release the others wait for.
    waiting = [asyncio.ensure_future(world.cache.release(s)) for s in screenings[30:]]
    await asyncio.sleep(0)
    waiting[0].cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert calls == [31, 10]
    assert await world.redis.exists(*(s.cache_key for s in screenings[30:])) == 0


async def test_a_failed_release_is_logged_once_and_not_raised(world, caplog):
    dead = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))  # nothing listens there
    cache = IdempotencyCache(dead, prefix=world.prefix, ttl_s=60, inflight_ttl_s=30)
    screenings = [world.check().screening for _ in range(5)]
    for s in screenings:
        s.marker = cache.new_marker("f1")
    with caplog.at_level("WARNING", logger="stages.idempotency"):
        await asyncio.gather(*(cache.release(s) for s in screenings))
    [warning] = [r.getMessage() for r in caplog.records if r.name == "stages.idempotency"]
    assert warning.startswith("could not release 5 idempotency marker(s), they expire within 30 s")
    await dead.aclose()


# -- the stage: enrichment --------------------------------------------------------------------

async def test_profile_and_velocity_in_the_same_round_trip(world):
    card = unique("card")
    earlier = [world.check(card_id=card, at=NOW - timedelta(minutes=m)) for m in (1, 2, 30)]
    await world.velocity.record([c.screening.request for c in earlier])
    item = world.check(card_id=card)
    [outcome] = await world.stage(velocity=frozenset({COUNT_10M}))([item])
    assert outcome is item.screening
    assert item.screening.account is not None
    assert item.screening.account.account_id == world.account
    assert item.screening.velocity == {COUNT_10M: 2}  # 1 and 2 minutes ago, not 30


class CountingLedger:
    """The real ledger, with the account ids each profile query asked for."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.asked: list[list[str]] = []

    async def get_accounts(self, account_ids):
        self.asked.append(sorted(account_ids))
        return await self.ledger.get_accounts(account_ids)


async def test_profiles_are_kept_until_evicted_least_recently_used_first(world):
    a, b, c = world.account, unique("adm"), unique("adm")
    for account in (b, c):
        await world.ledger.create_account(AccountSpec(account_id=account, currency="EUR",
                                                      home_country="FR"))
    ledger = CountingLedger(world.ledger)
    cache = ProfileCache(ledger, max_entries=2)  # type: ignore[arg-type]
    first = await cache.get_many({a, b})
    assert sorted(first) == sorted([a, b]) and first[b].home_country == "FR"
    assert (await cache.get_many({a, b})).keys() == first.keys()
    assert ledger.asked == [sorted([a, b])]  # the second lookup asked nothing
    await cache.get_many({a})  # a is now the most recently used
    await cache.get_many({c})  # room for c: b goes
    await cache.get_many({a, c})
    assert ledger.asked == [sorted([a, b]), [c]]
    await cache.get_many({b})
    assert ledger.asked[-1] == [b]


async def test_unknown_accounts_are_asked_for_again(world):
    ledger = CountingLedger(world.ledger)
    cache = ProfileCache(ledger)  # type: ignore[arg-type]
    ghost = unique("ghost")
    for _ in range(2):
        assert await cache.get_many({ghost, world.account}) == {
            world.account: (await world.ledger.get_accounts([world.account]))[0]}
    assert ledger.asked == [sorted([ghost, world.account]), [ghost]]


async def test_redis_losing_its_scripts_runs_the_batch_once(world):
    stage = world.stage(client=Limit(per_s=0.5, burst=2), velocity=frozenset({COUNT_10M}))
    await stage([world.check()])  # the scripts are loaded now
    await world.redis.script_flush()
    batch = [world.check(), world.check()]
    outcomes = await stage(batch)
    # Run again after loading, not twice: the second request is over the burst of 2 (the
    # first batch took one), and the first claimed its key once (no 409 against itself).
    assert [type(o) for o in outcomes] == [Screening, RateLimited]
    assert batch[0].screening.velocity == {COUNT_10M: 0}


# -- the stage: Redis down --------------------------------------------------------------------

async def test_redis_down_fails_open_with_the_ledger_deciding(world):
    dead = RedisPipelines.from_url("redis://127.0.0.1:1/0")
    stage = world.stage(client=Limit(1, 1), card=Limit(1, 1), pipelines=dead,
                        velocity=frozenset({COUNT_10M}))
    batch = [world.check(), world.check(), world.check(account=unique("nobody"))]
    outcomes = await stage(batch)
    assert outcomes[:2] == [c.screening for c in batch[:2]]
    assert isinstance(outcomes[2], UnknownAccount)
    assert all(c.quota is None for c in batch)  # no RateLimit-* headers without an answer
    assert all(c.screening.marker == b"" for c in batch)  # nothing to release
    assert batch[0].screening.velocity == {COUNT_10M: None}  # unknown: rules do not match
    assert stage.statistics().failed_open == 3
    await dead.aclose()


async def test_after_a_failure_redis_is_left_alone_for_a_while(world, monkeypatch):
    now = [100.0]
    stage = world.stage(client=Limit(1, 1), retry_after_failure_s=1.0, clock=lambda: now[0])
    calls = 0

    async def failing(*args, **kwargs):
        nonlocal calls
        calls += 1
        raise redis.ConnectionError("Redis is down")
    monkeypatch.setattr(stage, "_ask_redis", failing)
    await stage([world.check()])
    now[0] += 0.9
    await stage([world.check(), world.check()])  # within the second: not even tried
    assert calls == 1 and stage.statistics().failed_open == 3
    monkeypatch.undo()
    now[0] += 0.1
    outcomes = await stage([world.check(), world.check()])  # Redis is asked again, and limits
    assert [type(o) for o in outcomes] == [Screening, RateLimited]
