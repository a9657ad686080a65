"""Per-card and per-account history in Redis, in event time, for velocity features.

Each entity has a sorted set scored by event time (ms) whose members are
`<transaction_id>|<amount_minor>|<country>`. Reading is one Lua call per entity, all of a
micro-batch's calls in one pipeline: the script scans the widest window once and returns
(count, sum, distinct countries) for every window asked, excluding the transaction itself
(it is recorded only after its commit). Every screened transaction is recorded, declines
included: card-testing shows up as attempts, not as approvals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis.asyncio as redis

from ledger.money import exponent
from ledger.records import PaymentRequest
from rules import VelocityKey

HISTORY_S = 90 * 86_400  # the longest window a rule may use
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_WINDOWS_SCRIPT = """
local now = tonumber(ARGV[1])
local widest = 0
for i = 2, #ARGV do
  local w = tonumber(ARGV[i])
  if w > widest then widest = w end
end
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], now - widest, '(' .. now, 'WITHSCORES')
local out = {}
for i = 2, #ARGV do
  local from = now - tonumber(ARGV[i])
  local count, total, distinct, seen = 0, 0, 0, {}
  for j = 1, #rows, 2 do
    if tonumber(rows[j + 1]) >= from then
      local _, _, amount, country = string.find(rows[j], '|(%d+)|(%w*)$')
      count = count + 1
      total = total + tonumber(amount)
      if not seen[country] then
        seen[country] = true
        distinct = distinct + 1
      end
    end
  end
  out[#out + 1] = count
  out[#out + 1] = string.format('%.0f', total)
  out[#out + 1] = distinct
end
return out
"""

Window = tuple[int, str, str]  # (count, sum in minor units as text, distinct countries)


def event_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def entity_id(request: PaymentRequest, entity: str) -> str:
    return request.card_id if entity == "card" else request.account_id


class VelocityStore:
    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._windows = client.register_script(_WINDOWS_SCRIPT)

    def key(self, entity: str, value: str) -> str:
        return f"{self._prefix}:vel:{entity}:{value}"

    async def features(self, requests: Sequence[PaymentRequest],
                       wanted: Iterable[VelocityKey]) -> list[dict[VelocityKey, object]]:
        """The wanted features of every request, in one Redis round trip."""
        by_entity: dict[str, list[VelocityKey]] = {}
        for vk in wanted:
            by_entity.setdefault(vk.entity, []).append(vk)
        if not by_entity:
            return [{} for _ in requests]
        windows = {entity: sorted({vk.window_s for vk in keys})
                   for entity, keys in by_entity.items()}
        pipe = self._client.pipeline(transaction=False)
        for request in requests:
            now = event_ms(request.event_time)
            for entity, spans in windows.items():
                await self._windows(keys=[self.key(entity, entity_id(request, entity))],
                                    args=[now, *(s * 1000 for s in spans)], client=pipe)
        replies = iter(await pipe.execute())
        out = []
        for request in requests:
            features: dict[VelocityKey, object] = {}
            scale = Decimal(1).scaleb(-exponent(request.currency))
            for entity, spans in windows.items():
                flat = next(replies)
                per_window = {span: flat[i * 3:i * 3 + 3] for i, span in enumerate(spans)}
                for vk in by_entity[entity]:
                    features[vk] = _feature(vk.function, per_window[vk.window_s], scale)
            out.append(features)
        return out

    async def record(self, requests: Sequence[PaymentRequest]) -> None:
        """Add committed transactions to their card's and account's history."""
        pipe = self._client.pipeline(transaction=False)
        for request in requests:
            now = event_ms(request.event_time)
            member = f"{request.transaction_id}|{request.amount_minor}|{request.country}"
            for entity in ("card", "account"):
                key = self.key(entity, entity_id(request, entity))
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", now - HISTORY_S * 1000)
                pipe.pexpire(key, (HISTORY_S + 86_400) * 1000)
        await pipe.execute()


def _feature(function: str, window: Sequence[object], scale: Decimal) -> object:
    count, total = int(_text(window[0])), Decimal(_text(window[1]))
    distinct = int(_text(window[2]))
    if function == "count":
        return count
    if function == "sum":
        return total * scale
    if function == "avg_amount":
        return total * scale / count if count else None
    return distinct


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
