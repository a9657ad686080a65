"""What happened to a merchant's webhooks: delivery attempts, an event's status, replays.

    DeliveryError
    ├── EventNotFound       event_not_found
    ├── ReplayRefused       no_webhook_url | delivery_disabled
    └── InvalidCursor       invalid_cursor
(an unknown merchant is `webhooks.merchants.MerchantNotFound`, merchant_not_found)

The workers append `webhook_attempts`; this module only reads them. Its one write is a
replay: a committed `webhook_replays` row that the outbox relay publishes, so a replay
accepted while the broker is down is still delivered.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from webhooks import events
from webhooks.attempts import COLUMNS, Attempt
from webhooks.merchants import MerchantNotFound

OUTCOMES = ("delivered", "retry", "failed", "gone", "skipped")
# The latest attempt's outcome -> the event's status (see event_status).
_STATUS_BY_OUTCOME = {"delivered": "delivered", "retry": "retrying", "failed": "failed",
                      "gone": "failed", "skipped": "skipped"}

_COLUMNS = ", ".join(("attempt_id", *COLUMNS))


class DeliveryError(Exception):
    """Root of the delivery API's errors; leaves carry a stable `code`."""

    code = "delivery_error"


class EventNotFound(DeliveryError):
    code = "event_not_found"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id[:80]!r} does not exist (event ids are "
                         f"'{events.EVENT_PREFIX}<transaction_id>')")
        self.event_id = event_id


class ReplayRefused(DeliveryError):
    """The merchant would not receive the replay; `code` says why."""

    def __init__(self, code: str, detail: str, *, merchant_id: str) -> None:
        super().__init__(detail)
        self.code = code
        self.merchant_id = merchant_id


class InvalidCursor(DeliveryError):
    code = "invalid_cursor"

    def __init__(self, cursor: str) -> None:
        super().__init__(f"cursor {cursor[:80]!r} is not one this API returned")


class DeliveryAttempt(Attempt, frozen=True, kw_only=True):
    """An attempt as recorded: the worker's Attempt plus the id it got in the table."""

    attempt_id: int


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[DeliveryAttempt]
    next_cursor: str | None


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the merchant receives it, with where its delivery stands."""

    event: events.Event
    merchant_id: str
    status: str
    attempts: list[DeliveryAttempt]


class Replay(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    replay_id: int
    requested_by: str
    requested_at: datetime


def _attempt(row: asyncpg.Record) -> DeliveryAttempt:
    return DeliveryAttempt(**dict(row))


def encode_cursor(attempt_id: int) -> str:
    return base64.urlsafe_b64encode(f"d{attempt_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("d"):
            raise ValueError(text)
        attempt_id = int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if attempt_id < 1:
        raise InvalidCursor(cursor)
    return attempt_id


def event_status(attempts: list[DeliveryAttempt], *, webhook_url: str | None,
                 delivery_enabled: bool | None) -> str:
    """`pending` | `not_sent` before any attempt, then the latest attempt's outcome."""
    if not attempts:
        return "pending" if webhook_url is not None and delivery_enabled else "not_sent"
    latest = max(attempts, key=lambda a: a.attempt_id)
    return _STATUS_BY_OUTCOME[latest.outcome]


class DeliveryLog:
    """The delivery history of merchants' events, and replay requests."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def deliveries(self, merchant_id: str, *, limit: int, cursor: str | None = None,
                         outcome: str | None = None,
                         event_id: str | None = None) -> DeliveryPage:
        """A merchant's attempts, newest first, by keyset on attempt_id."""
        # Conditions are fixed fragments; only their values are bound.
        conditions = ["merchant_id = $1"]
        args: list[Any] = [merchant_id]
        if cursor:
            args.append(decode_cursor(cursor))
            conditions.append(f"attempt_id < ${len(args)}")
        if outcome is not None:
            args.append(outcome)
            conditions.append(f"outcome = ${len(args)}")
        if event_id is not None:
            # By transaction_id too, so the planner can take the per-event index.
            args.append(events.transaction_id_of(event_id))
            conditions.append(f"transaction_id = ${len(args)}")
            args.append(event_id)
            conditions.append(f"event_id = ${len(args)}")
        args.append(limit + 1)
        async with self._pool.acquire() as conn:
            if await conn.fetchval("SELECT 1 FROM merchants WHERE merchant_id = $1",
                                   merchant_id) is None:
                raise MerchantNotFound(merchant_id)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM webhook_attempts WHERE {' AND '.join(conditions)} "
                f"ORDER BY attempt_id DESC LIMIT ${len(args)}", *args)
        more = len(rows) > limit
        rows = rows[:limit]
        return DeliveryPage(items=[_attempt(r) for r in rows],
                            next_cursor=encode_cursor(rows[-1]["attempt_id"]) if more else None)

    async def event(self, event_id: str) -> EventRecord:
        """The event, its attempts oldest first, and its status."""
        async with self._pool.acquire() as conn:
            row = await _load_event(conn, event_id)
            attempts = [_attempt(r) for r in await conn.fetch(
                f"SELECT {_COLUMNS} FROM webhook_attempts WHERE transaction_id = $1 "
                f"ORDER BY attempt_id", row["transaction_id"])]
        status = event_status(attempts, webhook_url=row["webhook_url"],
                              delivery_enabled=row["delivery_enabled"])
        return EventRecord(event=events.event_of(row), merchant_id=row["merchant_id"],
                           status=status, attempts=attempts)

    async def replay(self, event_id: str, *, requested_by: str) -> Replay:
        """Queue the event for delivery again, or refuse when the merchant would not get it."""
        async with self._pool.acquire() as conn:
            row = await _load_event(conn, event_id)
            _check_deliverable(row)
            replay = await conn.fetchrow(
                "INSERT INTO webhook_replays (transaction_id, requested_by) VALUES ($1, $2) "
                "RETURNING replay_id, requested_by, requested_at", row["transaction_id"],
                requested_by)
        assert replay is not None  # INSERT ... RETURNING returns the row
        return Replay(event_id=event_id, **dict(replay))


async def _load_event(conn: PoolConnectionProxy, event_id: str) -> asyncpg.Record:
    """The event's row (see `events.load_event`), or EventNotFound."""
    transaction_id = events.transaction_id_of(event_id)
    row = None if transaction_id is None else await events.load_event(conn, transaction_id)
    if row is None:
        raise EventNotFound(event_id)
    return row


def _check_deliverable(row: asyncpg.Record) -> None:
    """Refuse a replay nobody would receive (the worker would only record it `skipped`)."""
    merchant_id = row["merchant_id"]
    if row["delivery_enabled"] is None:  # no merchants row (the LEFT JOIN found none)
        raise ReplayRefused(
            "no_webhook_url", f"merchant {merchant_id!r} is not registered, so it has no "
            f"webhook URL; register it with POST /v1/merchants", merchant_id=merchant_id)
    if row["webhook_url"] is None:
        raise ReplayRefused(
            "no_webhook_url", f"merchant {merchant_id!r} has no webhook URL; set one with "
            f"PATCH /v1/merchants/{merchant_id} {{\"webhook_url\": ...}}",
            merchant_id=merchant_id)
    if not row["delivery_enabled"]:
        raise ReplayRefused(
            "delivery_disabled", f"delivery to merchant {merchant_id!r} is disabled; re-enable "
            f"it with PATCH /v1/merchants/{merchant_id} {{\"delivery_enabled\": true}}",
            merchant_id=merchant_id)
