"""Per-card and per-account history in Redis, in event time, for velocity features.

Each entity has a sorted set scored by event time (ms) whose members are
`<transaction_id>|<amount_minor>|<country>|<category>|<local_hour>`. Reading is one Lua call
per entity, all of a micro-batch's calls in one pipeline: the script scans the widest window
once and returns (count, sum, distinct countries) for every window asked, excluding the
transaction itself (it is recorded only after its commit). The same pipeline carries the
model's card-history summaries (`model/history.py`). Every screened transaction is recorded,
declines included: card-testing shows up as attempts, not as approvals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from ledger.money import exponent
from ledger.records import PaymentRequest
from model.history import (
    BURST_WINDOW_MS,
    HISTORY_FIELDS,
    HISTORY_SCRIPT,
    MAX_PROFILE_PAYMENTS,
    PROFILE_WINDOW_MS,
    RETENTION_MS,
    local_hour,
    member,
    parse_summary,
)
from rules import VelocityKey
from stages.lua import LuaScript, run_pipeline
from stages.resp import Commands, RedisPipelines

HISTORY_S = RETENTION_MS // 1000  # the longest window a rule may use
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
      local _, _, amount, country = string.find(rows[j], '^[^|]*|(%d+)|(%w*)')
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


def utc_offset_min(moment: datetime) -> int:
    offset = moment.utcoffset()
    return 0 if offset is None else offset // timedelta(minutes=1)


def entity_id(request: PaymentRequest, entity: str) -> str:
    return request.card_id if entity == "card" else request.account_id


# Add a committed payment to one entity's history and trim it: one EVALSHA per entity
# instead of ZADD + ZREMRANGEBYSCORE + PEXPIRE (each a command to pack and parse).
_RECORD_SCRIPT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class ReadPlan:
    """What a batch reads: the windows per entity the rules' velocity keys need, and whether
    the model's card-history summaries are wanted; parses the replies in queue order."""

    def __init__(self, by_entity: dict[str, list[VelocityKey]], history: bool) -> None:
        self.by_entity = by_entity
        self.windows = {entity: sorted({vk.window_s for vk in keys})
                        for entity, keys in by_entity.items()}
        self.history = history

    @classmethod
    def of(cls, wanted: Iterable[VelocityKey], *, history: bool) -> ReadPlan:
        by_entity: dict[str, list[VelocityKey]] = {}
        for vk in wanted:
            by_entity.setdefault(vk.entity, []).append(vk)
        return cls(by_entity, history)

    @property
    def empty(self) -> bool:
        return not self.by_entity and not self.history

    def parse(self, replies: Iterator[Any], requests: Sequence[PaymentRequest]
              ) -> tuple[list[dict[VelocityKey, object]], np.ndarray]:
        """Features per request and the summaries (no rows without `history`)."""
        summaries = np.empty((len(requests) if self.history else 0, len(HISTORY_FIELDS)))
        out = []
        for i, request in enumerate(requests):
            features: dict[VelocityKey, object] = {}
            scale = Decimal(1).scaleb(-exponent(request.currency))
            for entity, spans in self.windows.items():
                flat = next(replies)
                per_window = {span: flat[k * 3:k * 3 + 3] for k, span in enumerate(spans)}
                for vk in self.by_entity[entity]:
                    features[vk] = _feature(vk.function, per_window[vk.window_s], scale)
            out.append(features)
            if self.history:
                summaries[i] = parse_summary(next(replies))
        return out, summaries


class VelocityStore:
    def __init__(self, client: RedisPipelines, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._windows = LuaScript(_WINDOWS_SCRIPT)
        self._history = LuaScript(HISTORY_SCRIPT)
        self._record = LuaScript(_RECORD_SCRIPT)
        self.scripts = (self._windows, self._history, self._record)

    def key(self, entity: str, value: str) -> str:
        return f"{self._prefix}:vel:{entity}:{value}"

    async def read(self, requests: Sequence[PaymentRequest], wanted: Iterable[VelocityKey],
                   *, history: bool) -> tuple[list[dict[VelocityKey, object]], np.ndarray]:
        """The rules' velocity features and (with `history`) the model's card summaries
        (rows of `model.history.HISTORY_FIELDS`), in one Redis round trip."""
        plan = ReadPlan.of(wanted, history=history)
        if plan.empty:
            return plan.parse(iter(()), requests)
        replies = await run_pipeline(
            self._client, lambda pipe: self.queue_reads(pipe, requests, plan), self.scripts)
        return plan.parse(iter(replies), requests)

    def queue_reads(self, pipe: Commands, requests: Sequence[PaymentRequest],
                    plan: ReadPlan) -> None:
        """Queue `plan`'s scripts for every request (read-only: safe to run twice)."""
        for request in requests:
            now = event_ms(request.event_time)
            for entity, spans in plan.windows.items():
                self._windows.queue(pipe, [self.key(entity, entity_id(request, entity))],
                                    [now, *(s * 1000 for s in spans)])
            if plan.history:
                self._history.queue(pipe, [self.key("card", request.card_id)],
                                    [now, request.merchant_category, BURST_WINDOW_MS,
                                     PROFILE_WINDOW_MS, RETENTION_MS, MAX_PROFILE_PAYMENTS])

    def queue_record(self, pipe: Commands, requests: Sequence[PaymentRequest]) -> None:
        """Queue the adding of committed transactions to their card's and account's history
        (idempotent: the same member and score again change nothing)."""
        ttl_ms = (HISTORY_S + 86_400) * 1000
        for request in requests:
            now = event_ms(request.event_time)
            entry = member(request.transaction_id, request.amount_minor, request.country,
                           request.merchant_category,
                           local_hour(now, utc_offset_min(request.event_time)))
            for entity in ("card", "account"):
                self._record.queue(pipe, [self.key(entity, entity_id(request, entity))],
                                   [entry, now, now - HISTORY_S * 1000, ttl_ms])

    async def record(self, requests: Sequence[PaymentRequest]) -> None:
        """Add committed transactions to their card's and account's history."""
        await run_pipeline(self._client, lambda pipe: self.queue_record(pipe, requests),
                           self.scripts)


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
