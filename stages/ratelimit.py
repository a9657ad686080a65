"""GCRA per API client and per card, and the idempotency claims, in one Redis script call.

The admission stage (`stages/admit.py`) runs this script first in its one Redis pipeline per
batch. A request is allowed only when both its client's and its card's limits allow it, and
only then consumes from both and claims its Idempotency-Key: a limited request claims no key
(a retry after the wait goes through) and never reaches the ledger. The time is Redis's
(`TIME`), so every edge process shares one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from stages.gcra import Limit, whole_seconds
from stages.lua import LuaScript, ScriptKeys, run_pipeline
from stages.resp import Commands, RedisPipelines
from stages.screening import Screening

# The batch form of `stages.gcra.admit`, plus the claims. KEYS: the batch's distinct keys.
# ARGV: now in µs ('' = Redis TIME), the client limit's interval and tolerance in µs, the card
# limit's, the claim's TTL in ms, then per request the KEYS index of its client key and of its
# card key (0: that limit is off), the KEYS index of its idempotency key (0: no claim) and its
# in-flight marker. A request whose idempotency key already holds a value is answered from it
# (replay, 409 or 422) and consumes nothing; otherwise it is decided by the limits, and claims
# its key (the marker, with the TTL) only when allowed. Returns four values per request: 0,
# then the client limit's remaining and reset (µs) when allowed or answered from its key (-1
# and 0 with no client limit); 1 (client) or 2 (card), then that limit's retry-after and reset
# (µs) when denied; then what its idempotency key held (nil: none, or no claim asked). Each
# rate-limit key is read once and written once (with a TTL until its TAT) however often it
# occurs.
GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local tolerance = {tonumber(ARGV[3]), tonumber(ARGV[5])}
local claim_ttl = ARGV[6]
local tats, changed, out = {}, {}, {}
local function tat_of(k)
  local tat = tats[k]
  if not tat then
    tat = tonumber(redis.call('GET', KEYS[k])) or now
    tats[k] = tat
  end
  return tat
end
for i = 7, #ARGV, 4 do
  local keys = {tonumber(ARGV[i]), tonumber(ARGV[i + 1])}
  local claim = tonumber(ARGV[i + 2])
  local prior = false
  if claim > 0 then prior = redis.call('GET', KEYS[claim]) end
  local scope, wait, reset, new = 0, 0, 0, {}
  if prior then
    -- A known key answers the request (replay, 409 or 422) and consumes nothing: report
    -- the client limit as it stands.
    wait = -1
    if keys[1] > 0 then
      local tat = tat_of(keys[1])
      if tat > now then reset = tat - now end
      wait = math.floor((tolerance[1] - reset) / interval[1])
    end
  else
    for s = 1, 2 do
      local k = keys[s]
      if k > 0 then
        local tat = tat_of(k)
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
      if claim > 0 then
        redis.call('SET', KEYS[claim], ARGV[i + 3], 'PX', claim_ttl)
      end
    end
  end
  out[#out + 1] = scope
  out[#out + 1] = wait
  out[#out + 1] = reset
  out[#out + 1] = prior
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
    known_key: int  # answered from their Idempotency-Key (replay, 409, 422), consuming nothing


class Claim(NamedTuple):
    """An idempotency key to claim with an in-flight marker, if the request is allowed."""

    key: str
    marker: bytes


class RateLimiter:
    """The Redis side: one EVALSHA of `GCRA_SCRIPT` for a whole batch."""

    def __init__(self, *, prefix: str, client_limit: Limit, card_limit: Limit,
                 claim_ttl_ms: int = 60_000) -> None:
        self.limits = (client_limit, card_limit)
        self.script = LuaScript(GCRA_SCRIPT)
        self._prefix = prefix
        self._fixed_args = [client_limit.interval_us, client_limit.tolerance_us,
                            card_limit.interval_us, card_limit.tolerance_us, claim_ttl_ms]

    @property
    def enabled(self) -> bool:
        return self.limits[0].enabled or self.limits[1].enabled

    def key(self, scope: str, value: str) -> str:
        return f"{self._prefix}:rl:{scope}:{value}"

    def queue(self, pipe: Commands, requests: Sequence[tuple[str, str]],
              claims: Sequence[Claim | None] = (), *, now_us: int | None = None) -> None:
        """Queue the script for (client id, card id) of every request and, where given, its
        claim; its reply holds four values per request (see GCRA_SCRIPT). `now_us` replaces
        Redis's clock (tests only)."""
        client_on, card_on = self.limits[0].enabled, self.limits[1].enabled
        keys = ScriptKeys()
        args: list[object] = ["" if now_us is None else now_us, *self._fixed_args]
        for i, (client_id, card_id) in enumerate(requests):
            args.append(keys.index(self.key("client", client_id)) if client_on else 0)
            args.append(keys.index(self.key("card", card_id)) if card_on else 0)
            claim = claims[i] if i < len(claims) else None
            if claim is None:
                args += [0, ""]
            else:
                args += [keys.append(claim.key), claim.marker]
        self.script.queue(pipe, keys.keys, args)

    async def check(self, client: RedisPipelines, requests: Sequence[tuple[str, str]],
                    claims: Sequence[Claim | None] = (), *,
                    now_us: int | None = None) -> list[object]:
        """The script alone, in its own round trip (tests and tools)."""
        [reply] = await run_pipeline(
            client, lambda pipe: self.queue(pipe, requests, claims, now_us=now_us),
            [self.script])
        assert isinstance(reply, list)
        return reply
