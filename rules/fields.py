"""The fields a rule may name, and the value types of the language.

A rule names a field as an analyst knows it (`account.home_country`); `FIELDS` maps that
name to its `RuleContext` attribute and type. This table is also the whitelist of attributes
the generated fast path may read.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    NUMBER = "a number"
    TEXT = "text"
    BOOL = "a condition"
    LIST = "a list"
    DURATION = "a duration"
    WORD = "a word"


@dataclass(frozen=True, slots=True)
class ValueType:
    """A node's type. `floating`: its raw value may be a Python float (lat, risk_score...),
    which the fast path compares without converting to Decimal when that is exact."""

    kind: Kind
    nullable: bool = False
    floating: bool = False


CONDITION = ValueType(Kind.BOOL)
NUMBER = ValueType(Kind.NUMBER)
MAYBE_NUMBER = ValueType(Kind.NUMBER, nullable=True)
MAYBE_FLOAT = ValueType(Kind.NUMBER, nullable=True, floating=True)
TEXT = ValueType(Kind.TEXT)
MAYBE_TEXT = ValueType(Kind.TEXT, nullable=True)
LIST = ValueType(Kind.LIST)
DURATION = ValueType(Kind.DURATION)
WORD = ValueType(Kind.WORD)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # as written in a rule
    attribute: str  # on RuleContext
    type: ValueType


FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in (
    FieldSpec("amount", "amount", NUMBER),
    FieldSpec("currency", "currency", TEXT),
    FieldSpec("country", "country", TEXT),
    FieldSpec("merchant_id", "merchant_id", TEXT),
    FieldSpec("merchant_category", "merchant_category", TEXT),
    FieldSpec("card_id", "card_id", TEXT),
    FieldSpec("account_id", "account_id", TEXT),
    FieldSpec("hour", "hour", NUMBER),
    FieldSpec("lat", "lat", MAYBE_FLOAT),
    FieldSpec("lon", "lon", MAYBE_FLOAT),
    FieldSpec("account.home_country", "account_home_country", MAYBE_TEXT),
    FieldSpec("account.age_days", "account_age_days", MAYBE_NUMBER),
    FieldSpec("account.currency", "account_currency", TEXT),
    FieldSpec("distance_km_from_home", "distance_km_from_home", MAYBE_FLOAT),
    FieldSpec("risk_score", "risk_score", MAYBE_FLOAT),
)}

CONTEXT_ATTRIBUTES = frozenset(spec.attribute for spec in FIELDS.values()) | {
    "velocity", "lists"}


def did_you_mean(name: str, known: list[str]) -> str | None:
    """A hint naming the closest known names, or None when nothing is close."""
    same_letters = [k for k in known if k.lower() == name.lower()]
    close = same_letters or difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
