"""Status events: what a merchant's webhook and the fraud team's alert say about a transaction.

An event is derived from its committed ledger row, never stored apart from it: its id is
`evt_<transaction_id>` (stable across retries and replays, so merchants de-duplicate on it)
and its body is built by one function from the row, so the relay, a replay and
`GET /v1/events/{id}` produce the same bytes.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from ledger.money import format_amount

EVENT_PREFIX = "evt_"
TYPES = {"approve": "transaction.approved", "flag": "transaction.flagged",
         "decline": "transaction.declined"}

# The columns every event query selects (alias `t` = transactions, `a` = accounts).
COLUMNS = ("t.id, t.transaction_id, t.account_id, t.card_id, t.merchant_id, t.amount_minor, "
           "a.currency, t.merchant_category, t.country, t.event_time, t.decision, "
           "t.risk_score, t.reasons, t.rules_version, t.model_version, t.recorded_at")


class TransactionData(msgspec.Struct, frozen=True, kw_only=True):
    """What the merchant learns: its own payment's outcome, not the cardholder's account."""

    transaction_id: str
    merchant_id: str
    amount: str
    currency: str
    decision: str
    risk_score: float
    reasons: list[str]
    event_time: datetime
    recorded_at: datetime


class Event(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    created_at: datetime
    data: TransactionData


class AlertData(msgspec.Struct, frozen=True, kw_only=True):
    """What the fraud team needs to review a flagged or declined payment."""

    event_id: str
    type: str
    transaction_id: str
    account_id: str
    card_id: str
    merchant_id: str
    merchant_category: str
    country: str
    amount: str
    currency: str
    decision: str
    risk_score: float
    reasons: list[str]
    rules_version: int | None
    model_version: str | None
    event_time: datetime
    recorded_at: datetime


_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)
alert_decoder = msgspec.json.Decoder(AlertData)


def event_id(transaction_id: str) -> str:
    return EVENT_PREFIX + transaction_id


def transaction_id_of(event_id_: str) -> str | None:
    """The transaction an event id names, or None when it is not an event id."""
    if not event_id_.startswith(EVENT_PREFIX) or len(event_id_) == len(EVENT_PREFIX):
        return None
    return event_id_[len(EVENT_PREFIX):]


def event_of(row: asyncpg.Record) -> Event:
    """The merchant's event for a row selected with COLUMNS."""
    return Event(
        id=event_id(row["transaction_id"]), type=TYPES[row["decision"]],
        created_at=row["recorded_at"],
        data=TransactionData(
            transaction_id=row["transaction_id"], merchant_id=row["merchant_id"],
            amount=format_amount(row["amount_minor"], row["currency"]),
            currency=row["currency"], decision=row["decision"],
            risk_score=float(row["risk_score"]), reasons=list(row["reasons"]),
            event_time=row["event_time"], recorded_at=row["recorded_at"]))


def alert_of(row: asyncpg.Record) -> AlertData:
    """The fraud team's alert for a row selected with COLUMNS."""
    return AlertData(
        event_id=event_id(row["transaction_id"]), type=TYPES[row["decision"]],
        transaction_id=row["transaction_id"], account_id=row["account_id"],
        card_id=row["card_id"], merchant_id=row["merchant_id"],
        merchant_category=row["merchant_category"], country=row["country"],
        amount=format_amount(row["amount_minor"], row["currency"]), currency=row["currency"],
        decision=row["decision"], risk_score=float(row["risk_score"]),
        reasons=list(row["reasons"]), rules_version=row["rules_version"],
        model_version=row["model_version"], event_time=row["event_time"],
        recorded_at=row["recorded_at"])


def encode(value: Event | AlertData) -> bytes:
    return _encoder.encode(value)


async def load_event(conn: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
                     transaction_id: str) -> asyncpg.Record | None:
    """The row of one transaction's event (COLUMNS plus the merchant's delivery state)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {COLUMNS}, m.webhook_url, m.delivery_enabled "
        f"FROM transactions t JOIN accounts a USING (account_id) "
        f"LEFT JOIN merchants m ON m.merchant_id = t.merchant_id "
        f"WHERE t.transaction_id = $1", transaction_id)
    return row
