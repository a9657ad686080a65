"""The rules stage: evaluates the live rule set before scoring into the payment's verdict."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from ledger.geo import distance_km
from ledger.money import exponent
from rules import RuleContext
from rules.engine import RuleSet, RuleSetHolder
from stages.screening import Screening


def rule_context(item: Screening, rule_set: RuleSet,
                 risk_score: float | None = None) -> RuleContext:
    request, account = item.request, item.account
    assert account is not None, "the admit stage runs first"
    distance = None
    if None not in (request.lat, request.lon, account.home_lat, account.home_lon):
        distance = distance_km(request.lat, request.lon,  # type: ignore[arg-type]
                               account.home_lat, account.home_lon)  # type: ignore[arg-type]
    age_days = max(0, (request.event_time - account.created_at).days)
    return RuleContext(
        amount=Decimal(request.amount_minor).scaleb(-exponent(request.currency)),
        currency=request.currency, country=request.country, merchant_id=request.merchant_id,
        merchant_category=request.merchant_category, card_id=request.card_id,
        account_id=request.account_id, hour=request.event_time.astimezone(UTC).hour,
        lat=request.lat, lon=request.lon, account_home_country=account.home_country,
        account_age_days=age_days, account_currency=account.currency,
        distance_km_from_home=distance, risk_score=risk_score,
        velocity=item.velocity, lists=rule_set.lists)


class RulesStage:
    def __init__(self, holder: RuleSetHolder) -> None:
        self._holder = holder

    async def __call__(self, batch: list[Screening]) -> list[object]:
        rule_set = self._holder.current  # one consistent set for the whole batch
        for item in batch:
            verdict = item.verdict
            if len(rule_set):
                rule_set.apply(rule_context(item, rule_set), verdict)
            item.rule_set = rule_set  # the scoring stage writes the decision into the request
        return list(batch)
