"""A fixed sample transaction for the rule tests, and a factory to vary it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rules import RuleContext, VelocityKey

VELOCITY: dict[VelocityKey, object] = {
    VelocityKey("count", "card", 600): 6,
    VelocityKey("count", "card", 3_600): 9,
    VelocityKey("count", "account", 600): None,  # velocity unavailable
    VelocityKey("sum", "card", 3_600): Decimal("1500.50"),
    VelocityKey("avg_amount", "card", 30 * 86_400): Decimal("1500"),
    VelocityKey("avg_amount", "account", 30 * 86_400): None,  # no history
    VelocityKey("distinct_countries", "account", 3_600): 3,
    VelocityKey("distinct_countries", "card", 90 * 86_400): 0,
}
LISTS = {"high_risk_merchants": frozenset({"m-42", "m-7"}), "empty": frozenset[str]()}


def make_context(**overrides: Any) -> RuleContext:
    """amount 6000.00 EUR in FR at 03h, home DE, 880.5 km away, risk 0.9; `overrides`
    replace any field."""
    fields: dict[str, Any] = {
        "amount": Decimal("6000.00"), "currency": "EUR", "country": "FR",
        "merchant_id": "m-42", "merchant_category": "electronics", "card_id": "card-1",
        "account_id": "acct-1", "hour": 3, "lat": 48.85, "lon": 2.35,
        "account_home_country": "DE", "account_age_days": 12, "account_currency": "EUR",
        "distance_km_from_home": 880.5, "risk_score": 0.9, "velocity": VELOCITY,
        "lists": LISTS,
    }
    fields.update(overrides)
    return RuleContext(**fields)


NULLS = make_context(lat=None, lon=None, account_home_country=None, account_age_days=None,
                     distance_km_from_home=None, risk_score=None)
