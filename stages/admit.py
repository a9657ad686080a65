"""The admission stage: rate limits, idempotency claims and enrichment, one Redis round trip.

Per micro-batch, one Redis pipeline carries the rate-limit script (GCRA per client and per
card, which also claims the Idempotency-Key of every allowed request: `stages/ratelimit.py`)
and the reads the live rules and the model need (velocity windows and the card-history
summaries: `stages/velocity.py`). They were three stages with a round trip each; one round
trip and no hand-offs between them cost the edge less CPU per payment (BENCHMARKS.md).

The outcome of each request, in this order of precedence:
- its Idempotency-Key already known -> answered from it below, consuming no rate limit (a
  client retrying an answered payment gets its answer, never a 429);
- over its client's or card's limit -> `RateLimited` (429); it claimed no key;
- an unknown account -> `UnknownAccount` (404); it claimed no key either;
- a known key -> a replay (`Finish`), `RequestInFlight` (409) or `IdempotencyKeyReused`
  (422), as the earlier request's record says;
- otherwise it goes on to the rules with its profile, velocity features and history.

Profiles come from PostgreSQL through a small in-process cache (one query per batch for the
misses). Redis is only the fast path: when it fails the batch goes on unlimited (counted in
`statistics().failed_open`), without claims (the ledger's UNIQUE (client, key) decides), with
velocity unknown (rules that need it do not match) and the history unknown (NaN, imputed by
the model); for the next `retry_after_failure_s` no batch waits on Redis, so a dead Redis costs
one timeout a second, not one per batch.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np
from redis.exceptions import RedisError

from ledger.errors import IdempotencyKeyReused, UnknownAccount
from ledger.records import AccountState
from ledger.repository import Ledger
from model.history import HISTORY_FIELDS
from model.scorer import ModelHolder
from pipeline import Finish
from rules.engine import RuleSetHolder
from stages.idempotency import CachedOutcome, IdempotencyCache
from stages.lua import run_pipeline
from stages.ratelimit import (
    SCOPES,
    Claim,
    Quota,
    RateLimitCheck,
    RateLimited,
    RateLimiter,
    RateLimitStatistics,
)
from stages.resp import Commands, RedisPipelines
from stages.screening import RequestInFlight, Screening
from stages.velocity import ReadPlan, VelocityStore

log = logging.getLogger(__name__)


class ProfileCache:
    """Cardholder profiles by account id: the `max_entries` most recently used, per process.

    What screening reads of a profile (currency, home, opening date) never changes: accounts
    are neither updated (registering one again with other values is a 409) nor deleted. So an
    entry never goes stale and leaves only to make room; until session 6 of issue 6 entries
    expired after 60 s, and every card paying less often than that cost its admission batch a
    PostgreSQL query. The cached balance is the one first read and nothing uses it: the ledger
    decides on the live balance. Unknown accounts are not cached."""

    def __init__(self, ledger: Ledger, *, max_entries: int = 100_000) -> None:
        self._ledger = ledger
        self._max_entries = max_entries
        self._entries: OrderedDict[str, AccountState] = OrderedDict()

    async def get_many(self, account_ids: set[str]) -> dict[str, AccountState]:
        entries = self._entries
        found: dict[str, AccountState] = {}
        missing = []
        for account_id in account_ids:
            state = entries.get(account_id)
            if state is None:
                missing.append(account_id)
            else:
                entries.move_to_end(account_id)
                found[account_id] = state
        if missing:
            for state in await self._ledger.get_accounts(missing):
                entries[state.account_id] = state
                found[state.account_id] = state
            while len(entries) > self._max_entries:
                entries.popitem(last=False)  # the least recently used
        return found


class AdmitStage:
    """Pipeline handler: RateLimitCheck in; its Screening, ready for the rules, out (or the
    request's answer: 429, 404, a replay, 409, 422)."""

    def __init__(self, client: RedisPipelines, limiter: RateLimiter, cache: IdempotencyCache,
                 profiles: ProfileCache, velocity: VelocityStore, rules: RuleSetHolder,
                 models: ModelHolder | None = None, *, retry_after_failure_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._limiter = limiter
        self._cache = cache
        self._profiles = profiles
        self._velocity = velocity
        self._rules = rules
        self._models = models or ModelHolder()
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._redis_failed_s = -float("inf")  # when Redis last failed us
        self._allowed = self._failed_open = self._known_key = 0
        self._denied = {"client": 0, "card": 0}
        self._decode = msgspec.msgpack.Decoder(CachedOutcome).decode

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(allowed=self._allowed, client_denied=self._denied["client"],
                                   card_denied=self._denied["card"],
                                   failed_open=self._failed_open, known_key=self._known_key)

    async def __call__(self, batch: list[RateLimitCheck]) -> list[object]:
        items = [check.screening for check in batch]
        profiles = await self._profiles.get_many({s.request.account_id for s in items})
        for item in items:
            item.account = profiles.get(item.request.account_id)
            item.marker = (b"" if item.account is None
                           else self._cache.new_marker(item.request.fingerprint))
        known = [s for s in items if s.account is not None]
        plan = ReadPlan.of(self._rules.current.velocity,
                           history=self._models.current is not None)
        if self._clock() - self._redis_failed_s < self._retry_after_failure_s:
            return self._without_redis(batch, known, plan)
        try:
            admitted, reads = await self._ask_redis(items, known, plan)
        except RedisError as exc:
            self._redis_failed_s = self._clock()
            log.warning("Redis unavailable: %d requests go on without rate limits, "
                        "idempotency claims (the ledger decides) or velocity, and Redis is "
                        "left alone for %g s: %s", len(batch), self._retry_after_failure_s, exc)
            return self._without_redis(batch, known, plan)
        features, summaries = plan.parse(reads, [s.request for s in known])
        for item, values in zip(known, features, strict=True):
            item.velocity = values
        for item, summary in zip(known, summaries, strict=False):
            item.history = summary
        return [self._decide(check, admitted[4 * i:4 * i + 4])
                for i, check in enumerate(batch)]

    async def _ask_redis(self, items: Sequence[Screening], known: Sequence[Screening],
                         plan: ReadPlan) -> tuple[list[Any], list[Any]]:
        """One pipeline: the rate-limit script with the claims, then the reads' script.
        Returns the rate-limit script's reply and the read script's replies."""
        requests = [(s.request.client_id, s.request.card_id) for s in items]
        claims = [Claim(s.cache_key, s.marker) if s.marker else None for s in items]
        known_requests = [s.request for s in known]

        def queue_all(pipe: Commands) -> None:
            self._limiter.queue(pipe, requests, claims)
            self._velocity.queue_reads(pipe, known_requests, plan)

        replies: list[Any] = await run_pipeline(
            self._client, queue_all, (self._limiter.script, *self._velocity.scripts))
        return list(replies[0]), replies[1:]

    def _without_redis(self, batch: Sequence[RateLimitCheck], known: Sequence[Screening],
                       plan: ReadPlan) -> list[object]:
        self._failed_open += len(batch)
        unknown_velocity = dict.fromkeys(vk for keys in plan.by_entity.values() for vk in keys)
        for item in known:
            item.marker = b""
            item.velocity = dict(unknown_velocity)
            if plan.history:
                item.history = np.full(len(HISTORY_FIELDS), np.nan)
        return [check.screening if check.screening.account is not None
                else UnknownAccount(check.screening.request.account_id) for check in batch]

    def _decide(self, check: RateLimitCheck, result: list[Any]) -> object:
        scope, first, reset_us, prior = result
        item = check.screening
        if scope:
            item.marker = b""  # nothing was claimed: nothing to release
            name = SCOPES[scope - 1]
            self._denied[name] += 1
            return RateLimited(name, Quota(self._limiter.limits[scope - 1], 0, reset_us), first)
        client_limit = self._limiter.limits[0]
        if client_limit.enabled:
            check.quota = Quota(client_limit, first, reset_us)
        if prior is None:
            self._allowed += 1
        else:
            self._known_key += 1
            item.marker = b""  # the key was not ours to claim, nor to release
        if item.account is None:
            return UnknownAccount(item.request.account_id)
        if prior is None:
            return item  # claimed: ours to screen
        earlier = self._decode(prior)
        if earlier.fingerprint != item.request.fingerprint:
            return IdempotencyKeyReused()
        if earlier.record is None:
            return RequestInFlight()
        return Finish(msgspec.structs.replace(earlier.record, replayed=True))
