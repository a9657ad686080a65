"""Records that cross the ledger's boundary: what is posted and what comes back.

Money is integer minor units here; the edge turns it into decimal strings.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class AccountSpec(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    home_country: str
    home_lat: float | None = None
    home_lon: float | None = None
    overdraft_limit_minor: int = 0


class AccountState(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    currency: str
    home_country: str | None
    home_lat: float | None
    home_lon: float | None
    overdraft_limit_minor: int
    balance_minor: int
    created_at: datetime


class RuleHit(msgspec.Struct, frozen=True):
    """A rule version that matched a transaction; shadow hits never change the decision."""

    change_id: int
    shadow: bool


class PaymentRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A screened payment ready to be recorded; decision may still become a decline."""

    client_id: str
    idem_key: str
    fingerprint: str  # hex sha256 of the canonical request
    transaction_id: str
    account_id: str
    card_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    merchant_category: str
    country: str
    lat: float | None
    lon: float | None
    event_time: datetime
    decision: str = "approve"
    risk_score: float = 0.0
    reasons: list[str] = []
    rules_version: int | None = None
    model_version: str | None = None
    hits: list[RuleHit] = []


class PaymentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The recorded outcome of one payment, as first committed (also on a replay)."""

    transaction_id: str
    decision: str
    risk_score: float
    reasons: list[str]
    balance_after_minor: int
    currency: str
    rules_version: int | None
    model_version: str | None
    recorded_at: datetime
    replayed: bool = False


class DepositRecord(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    account_id: str
    amount_minor: int
    currency: str
    balance_after_minor: int
    replayed: bool = False


class TransactionView(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded transaction as the read APIs show it."""

    transaction_id: str
    account_id: str
    card_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    merchant_category: str
    country: str
    lat: float | None
    lon: float | None
    event_time: datetime
    decision: str
    risk_score: float
    reasons: list[str]
    balance_after_minor: int
    rules_version: int | None
    model_version: str | None
    recorded_at: datetime


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TransactionView]
    next_cursor: str | None
