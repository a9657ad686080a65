"""Bodies of the rules, lists and labels API (strict msgspec Structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from http_edge.schemas import StrictBody

RuleName = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,64}$",
                               description="lower-case letters, digits and _")]
ListName = Annotated[str, Meta(pattern=r"^[a-z0-9_]{1,64}$")]
Expression = Annotated[str, Meta(min_length=1, max_length=4000)]
Description = Annotated[str, Meta(max_length=2000)]
Action = Literal["flag", "decline", "allow"]
Status = Literal["draft", "shadow", "active", "disabled"]
Priority = Annotated[int, Meta(ge=-1_000_000, le=1_000_000)]


class RuleIn(StrictBody, frozen=True):
    name: RuleName
    expression: Expression
    action: Action
    description: Description = ""
    priority: Priority = 100
    status: Status = "draft"


class RuleUpdate(StrictBody, frozen=True):
    """PUT: the whole mutable part of a rule; it becomes a new version."""

    expression: Expression
    action: Action
    status: Status
    description: Description = ""
    priority: Priority = 100


class RuleOut(msgspec.Struct, frozen=True, kw_only=True):
    rule_id: int
    name: str
    version: int
    change_id: int
    description: str
    expression: str
    action: str
    priority: int
    status: str
    author: str
    created_at: datetime


class RuleList(msgspec.Struct, frozen=True, kw_only=True):
    rule_set_version: int
    items: list[RuleOut]


class ExpressionIn(StrictBody, frozen=True):
    expression: Expression


class Validation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    valid: bool
    code: str | None = None
    detail: str | None = None
    column: int | None = None
    velocity: list[str] = []
    lists: list[str] = []
    uses_risk_score: bool = False


class SampleTransaction(StrictBody, frozen=True):
    amount: Annotated[str, Meta(max_length=24)]
    currency: Annotated[str, Meta(max_length=8)]
    country: Annotated[str, Meta(max_length=8)]
    merchant_id: str = "merchant"
    merchant_category: str = "misc"
    card_id: str = "card"
    account_id: str = "account"
    timestamp: Annotated[datetime, Meta(tz=True)] | None = None
    lat: float | None = None
    lon: float | None = None


class SampleAccount(StrictBody, frozen=True):
    home_country: str | None = None
    age_days: int | None = None
    home_lat: float | None = None
    home_lon: float | None = None


class RuleTestIn(StrictBody, frozen=True):
    expression: Expression
    transaction: SampleTransaction
    account: SampleAccount = SampleAccount()
    # e.g. {"count(card, 10m)": 6}; features left out mean "no history"
    velocity: dict[str, float] = {}
    risk_score: float | None = None


class Step(msgspec.Struct, frozen=True):
    expression: str
    value: object


class RuleTestOut(msgspec.Struct, frozen=True, kw_only=True):
    matched: bool
    steps: list[Step]


class BacktestIn(StrictBody, frozen=True):
    expression: Expression
    start: Annotated[datetime, Meta(tz=True)]
    end: Annotated[datetime, Meta(tz=True)]
    sample_size: Annotated[int, Meta(ge=0, le=1000)] = 20


class BacktestOut(msgspec.Struct, frozen=True, kw_only=True):
    expression: str
    start: datetime
    end: datetime
    transactions: int
    matched: int
    match_rate: float
    sample: list[str]
    labelled: int
    fraud_caught: int
    legit_caught: int
    fraud_missed: int
    precision: float | None
    recall: float | None


class ListItemsIn(StrictBody, frozen=True):
    items: Annotated[list[Annotated[str, Meta(min_length=1, max_length=256)]],
                     Meta(min_length=1, max_length=10_000)]


class ListOut(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    items: list[str]


class ListChange(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    added: int = 0
    removed: int = 0


class LabelIn(StrictBody, frozen=True):
    label: Literal["fraud", "legit"]
    source: Literal["analyst", "chargeback"] = "analyst"
    note: Description = ""


class LabelOut(msgspec.Struct, frozen=True, kw_only=True):
    label_id: int
    transaction_id: str
    label: str
    source: str
    note: str
    author: str
    created_at: datetime
