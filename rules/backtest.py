"""Backtest: how often would a rule have matched recorded transactions, and how well.

Replays the ledger in event-time order, rebuilding each card's and account's history as it
goes, so velocity features are what live screening would have seen (the window before each
transaction, the transaction itself excluded). Where transactions carry labels (the latest
one counts) it reports frauds caught, good payments caught, precision and recall.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from ledger.geo import distance_km
from ledger.money import exponent
from rules import CompiledRule, RuleContext, VelocityKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded transaction with what a rule may read about it."""

    transaction_id: str
    account_id: str
    card_id: str
    merchant_id: str
    merchant_category: str
    amount_minor: int
    currency: str
    country: str
    lat: float | None
    lon: float | None
    event_time: datetime
    home_country: str | None
    home_lat: float | None
    home_lon: float | None
    account_created_at: datetime
    risk_score: float
    label: str | None  # latest label: fraud | legit | None


class BacktestResult(msgspec.Struct, kw_only=True):
    transactions: int = 0
    matched: int = 0
    sample: list[str] = msgspec.field(default_factory=list)
    labelled: int = 0
    fraud_caught: int = 0
    legit_caught: int = 0
    fraud_missed: int = 0

    @property
    def match_rate(self) -> float:
        return self.matched / self.transactions if self.transactions else 0.0

    @property
    def precision(self) -> float | None:
        caught = self.fraud_caught + self.legit_caught
        return self.fraud_caught / caught if caught else None

    @property
    def recall(self) -> float | None:
        frauds = self.fraud_caught + self.fraud_missed
        return self.fraud_caught / frauds if frauds else None


class EntityHistory:
    """One entity's recent transactions: (event ms, amount minor, country), oldest first."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: deque[tuple[int, int, str]] = deque()

    def features(self, now_ms: int, window_ms: int) -> tuple[int, int, int]:
        count = total = 0
        countries: set[str] = set()
        for at, amount, country in self.events:
            if now_ms - window_ms <= at < now_ms:
                count += 1
                total += amount
                countries.add(country)
        return count, total, len(countries)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def velocity_features(row: HistoryRow, wanted: frozenset[VelocityKey],
                      histories: dict[tuple[str, str], EntityHistory]) -> dict[VelocityKey, object]:
    now = _ms(row.event_time)
    scale = Decimal(1).scaleb(-exponent(row.currency))
    out: dict[VelocityKey, object] = {}
    for vk in wanted:
        entity = row.card_id if vk.entity == "card" else row.account_id
        history = histories.get((vk.entity, entity))
        count, total, distinct = history.features(now, vk.window_s * 1000) if history else (
            0, 0, 0)
        if vk.function == "count":
            out[vk] = count
        elif vk.function == "sum":
            out[vk] = total * scale
        elif vk.function == "avg_amount":
            out[vk] = total * scale / count if count else None
        else:
            out[vk] = distinct
    return out


def context(row: HistoryRow, velocity: dict[VelocityKey, object],
            lists: dict[str, frozenset[str]]) -> RuleContext:
    distance = None
    if (row.lat is not None and row.lon is not None and row.home_lat is not None
            and row.home_lon is not None):
        distance = distance_km(row.lat, row.lon, row.home_lat, row.home_lon)
    return RuleContext(
        amount=Decimal(row.amount_minor).scaleb(-exponent(row.currency)), currency=row.currency,
        country=row.country, merchant_id=row.merchant_id,
        merchant_category=row.merchant_category, card_id=row.card_id,
        account_id=row.account_id, hour=row.event_time.astimezone(UTC).hour, lat=row.lat,
        lon=row.lon, account_home_country=row.home_country,
        account_age_days=max(0, (row.event_time - row.account_created_at).days),
        account_currency=row.currency, distance_km_from_home=distance,
        risk_score=row.risk_score, velocity=velocity, lists=lists)


def remember(row: HistoryRow, histories: dict[tuple[str, str], EntityHistory],
              horizon_ms: int) -> None:
    now = _ms(row.event_time)
    for key in (("card", row.card_id), ("account", row.account_id)):
        history = histories.setdefault(key, EntityHistory())
        history.events.append((now, row.amount_minor, row.country))
        while history.events and history.events[0][0] < now - horizon_ms:
            history.events.popleft()


async def backtest(rule: CompiledRule, rows: AsyncIterable[HistoryRow], *, start: datetime,
                   lists: dict[str, frozenset[str]], sample_size: int = 20) -> BacktestResult:
    """Evaluate `rule` on every row from `start` on; earlier rows only build history.

    Rows must come in event-time order and begin early enough to cover the rule's widest
    window before `start` (see `lookback`).
    """
    result = BacktestResult()
    histories: dict[tuple[str, str], EntityHistory] = {}
    horizon_ms = lookback(rule) // timedelta(milliseconds=1)
    async for row in rows:
        if row.event_time >= start:
            velocity = velocity_features(row, rule.velocity, histories)
            matched = rule.evaluate(context(row, velocity, lists))
            _count(result, row, matched, sample_size)
        if rule.velocity:
            remember(row, histories, horizon_ms)
    return result


def _count(result: BacktestResult, row: HistoryRow, matched: bool, sample_size: int) -> None:
    result.transactions += 1
    if matched:
        result.matched += 1
        if len(result.sample) < sample_size:
            result.sample.append(row.transaction_id)
    if row.label is None:
        return
    result.labelled += 1
    if row.label == "fraud":
        if matched:
            result.fraud_caught += 1
        else:
            result.fraud_missed += 1
    elif matched:
        result.legit_caught += 1


def lookback(rule: CompiledRule) -> timedelta:
    """How much history before the range the rule's velocity features need."""
    return timedelta(seconds=max((vk.window_s for vk in rule.velocity), default=0))
