"""Request and response bodies of the HTTP API, as strict msgspec Structs.

Decoders reject unknown fields and wrong types; the rules msgspec cannot express (currency and
country tables, decimal places per currency) are checked in `http_edge/validation.py`.
Money is a decimal string on the wire, never a JSON number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

Identifier = Annotated[str, Meta(
    pattern=r"^[A-Za-z0-9._:-]{1,64}$",
    description="1-64 characters of A-Z a-z 0-9 . _ : -")]
AccountId = Annotated[str, Meta(
    pattern=r"^[A-Za-z0-9._-]{1,64}$",
    description="1-64 characters of A-Z a-z 0-9 . _ - (':' is reserved for system accounts)")]
Amount = Annotated[str, Meta(
    max_length=24, examples=["12.34"],
    description="Positive decimal string in the currency's minor-unit precision")]
Currency = Annotated[str, Meta(max_length=8, examples=["EUR"],
                               description="ISO 4217 alphabetic code")]
Country = Annotated[str, Meta(max_length=8, examples=["DE"],
                              description="ISO 3166-1 alpha-2 code")]
Category = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$", examples=["grocery_pos"])]
Latitude = Annotated[float, Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, Meta(ge=-180.0, le=180.0)]
EventTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with offset")]


class StrictBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class TransactionIn(StrictBody, frozen=True):
    transaction_id: Identifier
    account_id: AccountId
    card_id: Identifier
    merchant_id: Identifier
    amount: Amount
    currency: Currency
    merchant_category: Category
    country: Country
    timestamp: EventTime
    lat: Latitude | None = None
    lon: Longitude | None = None


class TransactionOut(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    decision: str
    risk_score: float
    reasons: list[str]
    balance_after: str
    currency: str
    processed_in_ms: float
    rules_version: int | None
    model_version: str | None


class TransactionDetail(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    account_id: str
    card_id: str
    merchant_id: str
    amount: str
    currency: str
    merchant_category: str
    country: str
    lat: float | None
    lon: float | None
    timestamp: datetime
    decision: str
    risk_score: float
    reasons: list[str]
    balance_after: str
    rules_version: int | None
    model_version: str | None
    recorded_at: datetime


class TransactionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TransactionDetail]
    next_cursor: str | None


class AccountIn(StrictBody, frozen=True):
    account_id: AccountId
    currency: Currency
    home_country: Country
    home_lat: Latitude | None = None
    home_lon: Longitude | None = None
    overdraft_limit: Amount = "0"


class AccountOut(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    home_country: str | None
    home_lat: float | None
    home_lon: float | None
    overdraft_limit: str
    balance: str
    created_at: datetime


class DepositIn(StrictBody, frozen=True):
    amount: Amount
    currency: Currency


class DepositOut(msgspec.Struct, frozen=True, kw_only=True):
    deposit_id: int
    account_id: str
    amount: str
    currency: str
    balance_after: str


class BalanceOut(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    balance: str
    available: str
    overdraft_limit: str


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details, with our stable `code`."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    instance: str | None = None
    pointer: str | None = None
    column: int | None = None  # where in a rule expression the error is (1-based)
    request_id: str | None = None
