"""What a rule reads: one transaction with its account, velocity features and lists.

The admit stage builds one `RuleContext` per transaction; every rule of the set then reads
the same object, so it is a slotted msgspec Struct (fast attribute reads, no dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import msgspec

VELOCITY_FUNCTIONS = ("count", "sum", "avg_amount", "distinct_countries")
ENTITIES = ("card", "account")


class VelocityKey(msgspec.Struct, frozen=True, cache_hash=True):
    """One velocity feature a rule needs, e.g. `VelocityKey("count", "card", 600)`.

    `function` is one of VELOCITY_FUNCTIONS, `entity` one of ENTITIES; the window ends just
    before the transaction's event time and excludes the transaction itself.
    """

    function: str
    entity: str
    window_s: int


class RuleContext(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction as the rules see it.

    `velocity` must hold every key of the rule set's `velocity` (value None when unknown,
    e.g. with Redis down) and `lists` every list it names; a missing one raises KeyError,
    since it is a bug of the caller. Velocity values are int (count, distinct_countries) or
    Decimal (sum, avg_amount), never float.
    """

    amount: Decimal
    currency: str
    country: str
    merchant_id: str
    merchant_category: str
    card_id: str
    account_id: str
    hour: int
    lat: float | None
    lon: float | None
    account_home_country: str | None
    account_age_days: int | None
    account_currency: str
    distance_km_from_home: float | None
    risk_score: float | None
    # `object` values (documented above as int | Decimal | None) because callers build these
    # dicts as dict[VelocityKey, object] and Mapping's value type is covariant-only.
    velocity: Mapping[VelocityKey, object]
    lists: Mapping[str, frozenset[str]]
