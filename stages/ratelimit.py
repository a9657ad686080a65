"""The rate-limit stage: GCRA per API client and per card, one Redis script call per batch.

It runs first, before idempotency, so a limited request claims no Idempotency-Key (a retry
after the wait goes through) and never reaches the ledger. A request is allowed only when
both its client's and its card's limits allow it, and only then consumes from both. The time
is Redis's (`TIME`), so every edge process shares one clock. When Redis fails the stage fails
open: the batch goes on unlimited, `statistics().failed_open` counts its requests, and for the
next `retry_after_failure_s` no batch waits on Redis (a dead Redis costs one timeout a second,
not one per batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError

from stages.gcra import Limit, whole_seconds
from stages.screening import Screening

log = logging.getLogger(__name__)

# The batch form of `stages.gcra.admit`. KEYS: the batch's distinct keys. ARGV: now in µs
# ('' = Redis TIME), the client limit's interval and tolerance in µs, the card limit's, then
# per request the KEYS index of its client key and of its card key (0: that limit is off).
# Returns three integers per request: 0, then the client limit's remaining and reset (µs) when
# allowed; 1 (client) or 2 (card), then that limit's retry-after and reset (µs) when denied.
# Each key is read once and written once (with a TTL until its TAT) however often it occurs.
GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local tolerance = {tonumber(ARGV[3]), tonumber(ARGV[5])}
local tats, changed, out = {}, {}, {}
for i = 6, #ARGV, 2 do
  local keys = {tonumber(ARGV[i]), tonumber(ARGV[i + 1])}
  local scope, wait, reset, new = 0, 0, 0, {}
  for s = 1, 2 do
    local k = keys[s]
    if k > 0 then
      local tat = tats[k]
      if not tat then
        tat = tonumber(redis.call('GET', KEYS[k])) or now
        tats[k] = tat
      end
      if tat < now then tat = now end
      new[s] = tat + interval[s]
      local over = new[s] - tolerance[s] - now
      if over > wait then scope, wait, reset = s, over, tat - now end
    end
  end
  if scope == 0 then
    local remaining, left = -1, 0
    for s = 1, 2 do
      if keys[s] > 0 then
        tats[keys[s]] = new[s]
        changed[keys[s]] = true
      end
    end
    if keys[1] > 0 then
      left = new[1] - now
      remaining = math.floor((tolerance[1] - left) / interval[1])
    end
    scope, wait, reset = 0, remaining, left
  end
  out[#out + 1] = scope
  out[#out + 1] = wait
  out[#out + 1] = reset
end
for k in pairs(changed) do
  local tat = tats[k]
  redis.call('SET', KEYS[k], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return out
"""

SCOPES = ("client", "card")


class Quota(msgspec.Struct, frozen=True):
    """Where a client or card stands against its limit after a request (header material)."""

    limit: Limit
    remaining: int
    reset_us: int  # until the key is full again


class RateLimited(Exception):
    """A request over its client's or its card's limit (429); nothing of it was recorded."""

    def __init__(self, scope: str, quota: Quota, retry_after_us: int) -> None:
        self.scope = scope
        self.code = f"{scope}_rate_limited"
        self.quota = quota
        self.retry_after_s = whole_seconds(retry_after_us)
        limit = quota.limit
        super().__init__(f"the {scope} rate limit ({limit.per_s:g}/s, burst {limit.burst}) "
                         f"is exhausted; retry in {self.retry_after_s} s")


class RateLimitCheck(msgspec.Struct):
    """What the edge submits: the screening, and (once allowed) its client's quota."""

    screening: Screening
    quota: Quota | None = None  # stays None without a client limit, or when Redis failed


class RateLimitStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Requests the stage decided since it started, by outcome."""

    allowed: int
    client_denied: int
    card_denied: int
    failed_open: int  # requests let through unchecked because Redis failed


class RateLimiter:
    """The Redis side: one EVALSHA of `GCRA_SCRIPT` for a whole batch."""

    def __init__(self, client: redis.Redis, *, prefix: str, client_limit: Limit,
                 card_limit: Limit) -> None:
        self.limits = (client_limit, card_limit)
        self._prefix = prefix
        self._script = client.register_script(GCRA_SCRIPT)
        self._limit_args = [client_limit.interval_us, client_limit.tolerance_us,
                            card_limit.interval_us, card_limit.tolerance_us]

    @property
    def enabled(self) -> bool:
        return self.limits[0].enabled or self.limits[1].enabled

    def key(self, scope: str, value: str) -> str:
        return f"{self._prefix}:rl:{scope}:{value}"

    async def check(self, requests: Sequence[tuple[str, str]], *,
                    now_us: int | None = None) -> list[int]:
        """(client id, card id) of every request -> three integers each (see GCRA_SCRIPT).
        `now_us` replaces Redis's clock (tests only)."""
        client_on, card_on = self.limits[0].enabled, self.limits[1].enabled
        keys: list[str] = []
        clients: dict[str, int] = {}  # id -> its key's 1-based index in KEYS
        cards: dict[str, int] = {}
        args: list[int | str] = ["" if now_us is None else now_us, *self._limit_args]

        def index_of(ids: dict[str, int], scope: str, value: str) -> int:
            index = ids.get(value)
            if index is None:
                keys.append(self.key(scope, value))
                index = ids[value] = len(keys)
            return index

        for client_id, card_id in requests:
            args.append(index_of(clients, "client", client_id) if client_on else 0)
            args.append(index_of(cards, "card", card_id) if card_on else 0)
        return list(await self._script(keys=keys, args=args))


class RateLimitStage:
    """Pipeline handler: RateLimitCheck in, its Screening (or RateLimited) out."""

    def __init__(self, limiter: RateLimiter, *, retry_after_failure_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = limiter
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._redis_failed_s = -float("inf")  # when Redis last failed us
        self._allowed = self._failed_open = 0
        self._denied = {"client": 0, "card": 0}

    def statistics(self) -> RateLimitStatistics:
        return RateLimitStatistics(allowed=self._allowed, client_denied=self._denied["client"],
                                   card_denied=self._denied["card"],
                                   failed_open=self._failed_open)

    async def __call__(self, batch: list[RateLimitCheck]) -> list[object]:
        if not self._limiter.enabled:
            return [check.screening for check in batch]
        if self._clock() - self._redis_failed_s < self._retry_after_failure_s:
            self._failed_open += len(batch)
            return [check.screening for check in batch]
        try:
            flat = await self._limiter.check(
                [(c.screening.request.client_id, c.screening.request.card_id) for c in batch])
        except RedisError as exc:
            self._redis_failed_s = self._clock()
            log.warning("rate limiter unavailable, letting requests through unlimited for "
                        "%g s: %s", self._retry_after_failure_s, exc)
            self._failed_open += len(batch)
            return [check.screening for check in batch]
        return [self._decide(check, flat[3 * i:3 * i + 3]) for i, check in enumerate(batch)]

    def _decide(self, check: RateLimitCheck, result: list[int]) -> object:
        scope, first, reset_us = result
        if scope == 0:
            self._allowed += 1
            client_limit = self._limiter.limits[0]
            if client_limit.enabled:
                check.quota = Quota(client_limit, first, reset_us)
            return check.screening
        name = SCOPES[scope - 1]
        self._denied[name] += 1
        return RateLimited(name, Quota(self._limiter.limits[scope - 1], 0, reset_us), first)
