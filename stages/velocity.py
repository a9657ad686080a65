"""Per-card and per-account history in Redis, in event time, for velocity features.

Each entity has a sorted set scored by event time (ms) whose members are
`<transaction_id>|<amount_minor>|<country>|<category>|<local_hour>`. A micro-batch reads with
one call of `READ_SCRIPT` per READ_CHUNK requests and records with one call of
`RECORD_SCRIPT` (calls per batch, not per entity and request: BENCHMARKS.md, session 4). For
each entity the script counts every window with ZCOUNT, fetches the most recent members once
(without scores: Redis formats every score as text, which cost half the read) and parses each
member once for all windows and, on the card, for the model's card-history summary
(`model/history.py`). Every window ends just before the transaction's event time, so the
transaction itself is excluded (it is recorded only after its commit). Every screened
transaction is recorded, declines included: card-testing shows up as attempts, not as
approvals.

A call's keys span cards and accounts, so under Redis Cluster the calls must be grouped by
hash slot (docs/scaling.md), as must the admission script's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import numpy as np

from ledger.money import exponent
from ledger.records import PaymentRequest
from model.history import (
    BURST_WINDOW_MS,
    HISTORY_FIELDS,
    MAX_PROFILE_PAYMENTS,
    PROFILE_WINDOW_MS,
    RETENTION_MS,
    local_hour,
    member,
    parse_summary,
)
from rules import VelocityKey
from stages.lua import LuaScript, ScriptKeys, run_pipeline
from stages.resp import Commands, RedisPipelines

HISTORY_S = RETENTION_MS // 1000  # the longest window a rule may use
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HISTORY_ARGS = (BURST_WINDOW_MS, PROFILE_WINDOW_MS, RETENTION_MS, MAX_PROFILE_PAYMENTS)
# Requests per read-script call. Redis runs a script whole, with every other client waiting:
# a call costs ~30 us per request for ordinary cards and up to ~0.2 ms for one at the
# profile cap, so 32 bound the wait to a few ms while still sharing each call's overhead.
READ_CHUNK = 32
assert BURST_WINDOW_MS <= PROFILE_WINDOW_MS <= RETENTION_MS  # READ_SCRIPT relies on it

# KEYS: the batch's distinct entity keys. ARGV[1]: '1' when the card-history summary is
# wanted; ARGV[2..5]: its burst window, profile window, retention (ms) and profile cap; then
# the number of card windows and their widths (ms, ascending), the same for the account; then
# per request: its event time (ms), the KEYS index of its card (0: not read) and of its
# account (0: not read), its merchant category. Returns per request one flat list: (count,
# sum of amounts in minor units, distinct countries) per card window, then (when wanted) the
# card's summary as `model.history.parse_summary` takes it, then the account's windows. The
# summary reads the card's last `cap` payments in the profile window, as offline.
READ_SCRIPT = """
local find, log, tonumber, call = string.find, math.log, tonumber, redis.call
local FIELDS = '^[^|]*|(%d+)|([^|]*)|?([^|]*)|?(%d*)'  -- amount, country, category, hour
local history = ARGV[1] == '1'
local burst, profile = tonumber(ARGV[2]), tonumber(ARGV[3])
local retention, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local widths, at = {}, 6
for e = 1, 2 do
  local list = {}
  for i = 1, tonumber(ARGV[at]) do list[i] = tonumber(ARGV[at + i]) end
  widths[e] = list
  at = at + #list + 1
end

local function read(key, now, spans, category, out)
  local upto = '(' .. now
  local counts, fetch = {}, 0
  for w = 1, #spans do
    counts[w] = call('ZCOUNT', key, now - spans[w], upto)
    if counts[w] > fetch then fetch = counts[w] end
  end
  local profiled, recent = 0, 0
  if category then
    profiled = call('ZCOUNT', key, now - profile, upto)
    if profiled > cap then profiled = cap end
    recent = call('ZCOUNT', key, now - burst, upto)
    if recent > profiled then recent = profiled end
    if profiled > fetch then fetch = profiled end
  end
  local rows = {}
  if fetch > 0 then rows = call('ZREVRANGEBYSCORE', key, upto, '-inf', 'LIMIT', 0, fetch) end
  local base, w = #out, 1
  local total, distinct, seen = 0, 0, {}
  local ln_sum, same, night = 0.0, 0, 0
  for j = 0, fetch do
    while w <= #spans and counts[w] == j do
      out[base + 3 * w - 2] = j
      out[base + 3 * w - 1] = total
      out[base + 3 * w] = distinct
      w = w + 1
    end
    if j == fetch then break end
    local _, _, amount, country, cat, hour = find(rows[j + 1], FIELDS)
    amount = tonumber(amount)
    total = total + amount
    if not seen[country] then
      seen[country] = true
      distinct = distinct + 1
    end
    if j < profiled then
      ln_sum = ln_sum + log(amount)
      if cat == category then same = same + 1 end
      if j < recent then
        hour = tonumber(hour)
        if hour ~= nil and (hour >= 22 or hour <= 3) then night = night + 1 end
      end
    end
  end
  if category then
    local last = -1
    local previous = call('ZREVRANGEBYSCORE', key, upto, now - retention, 'WITHSCORES',
                          'LIMIT', 0, 1)
    if #previous == 2 then last = tonumber(previous[2]) end
    local n = #out
    out[n + 1], out[n + 2], out[n + 3] = recent, night, last
    out[n + 4], out[n + 5], out[n + 6] = profiled, string.format('%.17g', ln_sum), same
  end
end

local replies = {}
for i = at, #ARGV, 4 do
  local now, card, account = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local out = {}
  if card > 0 then read(KEYS[card], now, widths[1], history and ARGV[i + 3], out) end
  if account > 0 then read(KEYS[account], now, widths[2], false, out) end
  replies[#replies + 1] = out
end
return replies
"""

# KEYS: the batch's distinct entity keys. ARGV[1]: their TTL (ms); ARGV[1 + k]: what KEYS[k]
# keeps (members scored at or below it are trimmed); then per payment: its key's index, its
# event time (ms) and its member. One ZADD per payment, one trim and PEXPIRE per key.
RECORD_SCRIPT = """
local n = #KEYS
for i = n + 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for k = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', ARGV[k + 1])
  redis.call('PEXPIRE', KEYS[k], ARGV[1])
end
return n
"""


def event_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def utc_offset_min(moment: datetime) -> int:
    offset = moment.utcoffset()
    return 0 if offset is None else offset // timedelta(minutes=1)


def entity_id(request: PaymentRequest, entity: str) -> str:
    return request.card_id if entity == "card" else request.account_id


class ReadPlan:
    """What a batch reads: the windows per entity the rules' velocity keys need, and whether
    the model's card-history summaries are wanted; parses the script's reply."""

    def __init__(self, by_entity: dict[str, list[VelocityKey]], history: bool) -> None:
        self.by_entity = by_entity
        self.card_spans = sorted({vk.window_s for vk in by_entity.get("card", ())})
        self.account_spans = sorted({vk.window_s for vk in by_entity.get("account", ())})
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

    def parse(self, replies: Sequence[Sequence[Sequence[Any]]],
              requests: Sequence[PaymentRequest]
              ) -> tuple[list[dict[VelocityKey, object]], np.ndarray]:
        """Features per request and the summaries (no rows without `history`), from the
        replies of the read script's calls, in order (`VelocityStore.queue_reads`)."""
        reply = [values for chunk in replies for values in chunk]
        summaries = np.empty((len(requests) if self.history else 0, len(HISTORY_FIELDS)))
        card = {span: 3 * k for k, span in enumerate(self.card_spans)}
        summary = 3 * len(self.card_spans)  # the card's windows, its summary, the account's
        after = summary + (len(HISTORY_FIELDS) if self.history else 0)
        account = {span: after + 3 * k for k, span in enumerate(self.account_spans)}
        keys = [(vk, (card if vk.entity == "card" else account)[vk.window_s])
                for vks in self.by_entity.values() for vk in vks]
        out = []
        for i, request in enumerate(requests):
            values = reply[i] if reply else ()
            if keys:
                scale = Decimal(1).scaleb(-exponent(request.currency))
                out.append({vk: _feature(vk.function, values[at:at + 3], scale)
                            for vk, at in keys})
            else:
                out.append({})
            if self.history:
                summaries[i] = parse_summary(values[summary:after])
        return out, summaries


class VelocityStore:
    def __init__(self, client: RedisPipelines, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._read = LuaScript(READ_SCRIPT)
        self._record = LuaScript(RECORD_SCRIPT)
        self.scripts = (self._read, self._record)

    def key(self, entity: str, value: str) -> str:
        return f"{self._prefix}:vel:{entity}:{value}"

    async def read(self, requests: Sequence[PaymentRequest], wanted: Iterable[VelocityKey],
                   *, history: bool) -> tuple[list[dict[VelocityKey, object]], np.ndarray]:
        """The rules' velocity features and (with `history`) the model's card summaries
        (rows of `model.history.HISTORY_FIELDS`), in one Redis round trip."""
        plan = ReadPlan.of(wanted, history=history)
        if plan.empty or not requests:
            return plan.parse((), requests)
        replies = await run_pipeline(
            self._client, lambda pipe: self.queue_reads(pipe, requests, plan), self.scripts)
        return plan.parse(cast(list[list[list[Any]]], replies), requests)

    def queue_reads(self, pipe: Commands, requests: Sequence[PaymentRequest],
                    plan: ReadPlan) -> None:
        """Queue READ_SCRIPT for `requests`, one call per READ_CHUNK of them (read-only:
        safe to run twice); `plan.parse` takes their replies. Nothing for an empty plan."""
        if plan.empty:
            return
        for start in range(0, len(requests), READ_CHUNK):
            self._queue_read(pipe, requests[start:start + READ_CHUNK], plan)

    def _queue_read(self, pipe: Commands, requests: Sequence[PaymentRequest],
                    plan: ReadPlan) -> None:
        keys = ScriptKeys()
        card_read = bool(plan.card_spans) or plan.history
        args: list[object] = ["1" if plan.history else "0", *_HISTORY_ARGS,
                              len(plan.card_spans), *(s * 1000 for s in plan.card_spans),
                              len(plan.account_spans), *(s * 1000 for s in plan.account_spans)]
        for request in requests:
            args += [event_ms(request.event_time),
                     keys.index(self.key("card", request.card_id)) if card_read else 0,
                     keys.index(self.key("account", request.account_id))
                     if plan.account_spans else 0,
                     request.merchant_category]
        self._read.queue(pipe, keys.keys, args)

    def queue_record(self, pipe: Commands, requests: Sequence[PaymentRequest]) -> None:
        """Queue the adding of committed transactions to their card's and account's history,
        one RECORD_SCRIPT call (idempotent: the same member and score again change nothing).
        Each key keeps HISTORY_S before the newest of its batch's payments."""
        if not requests:
            return
        keys = ScriptKeys()
        newest: list[int] = []  # per key, by index: its batch's newest event (ms)
        entries: list[object] = []
        for request in requests:
            now = event_ms(request.event_time)
            entry = member(request.transaction_id, request.amount_minor, request.country,
                           request.merchant_category,
                           local_hour(now, utc_offset_min(request.event_time)))
            for entity in ("card", "account"):
                at = keys.index(self.key(entity, entity_id(request, entity)))
                if at > len(newest):
                    newest.append(now)
                elif now > newest[at - 1]:
                    newest[at - 1] = now
                entries += [at, now, entry]
        ttl_ms = (HISTORY_S + 86_400) * 1000
        self._record.queue(pipe, keys.keys,
                           [ttl_ms, *(ms - HISTORY_S * 1000 for ms in newest), *entries])

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
