"""The ledger repository: every SQL statement the serving process runs against PostgreSQL.

Writes go through the set-based functions of `002_posting.sql`, so a micro-batch of payments
is one round trip and one commit. asyncpg and OS errors are converted here into
`LedgerUnavailable`; nothing above this module sees an asyncpg exception.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from ledger.errors import (
    AccountExists,
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidCursor,
    LedgerError,
    LedgerUnavailable,
    TransactionExists,
    TransactionNotFound,
    UnknownAccount,
)
from ledger.records import (
    AccountSpec,
    AccountState,
    DepositRecord,
    HistoryPage,
    PaymentRecord,
    PaymentRequest,
    TransactionView,
)

_encode_batch = msgspec.json.Encoder().encode

_TRANSACTION_COLUMNS = """
    t.transaction_id, t.account_id, t.card_id, t.merchant_id, t.amount_minor, a.currency,
    t.merchant_category, t.country, t.lat, t.lon, t.event_time, t.decision, t.risk_score,
    t.reasons, t.balance_after_minor, t.rules_version, t.model_version, t.recorded_at, t.id
"""


@asynccontextmanager
async def converting_errors() -> AsyncIterator[None]:
    """Turn a lost database into LedgerUnavailable; let real bugs surface as they are."""
    try:
        yield
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError) as exc:
        raise LedgerUnavailable(type(exc).__name__) from exc


def _one(row: asyncpg.Record | None, what: str) -> asyncpg.Record:
    if row is None:  # the SQL always returns a row here; None means a broken schema
        raise LedgerError(f"{what} returned no row")
    return row


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _view(row: asyncpg.Record) -> TransactionView:
    return TransactionView(
        transaction_id=row["transaction_id"], account_id=row["account_id"],
        card_id=row["card_id"], merchant_id=row["merchant_id"],
        amount_minor=row["amount_minor"], currency=row["currency"].strip(),
        merchant_category=row["merchant_category"], country=row["country"],
        lat=_float(row["lat"]), lon=_float(row["lon"]), event_time=row["event_time"],
        decision=row["decision"], risk_score=float(row["risk_score"]),
        reasons=list(row["reasons"]), balance_after_minor=row["balance_after_minor"],
        rules_version=row["rules_version"], model_version=row["model_version"],
        recorded_at=row["recorded_at"],
    )


def _account(row: asyncpg.Record) -> AccountState:
    return AccountState(
        account_id=row["account_id"], currency=row["currency"],
        home_country=row["home_country"], home_lat=_float(row["home_lat"]),
        home_lon=_float(row["home_lon"]), overdraft_limit_minor=row["overdraft_limit_minor"],
        balance_minor=row["balance_minor"], created_at=row["created_at"],
    )


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"t{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("t"):
            raise ValueError(text)
        row_id = int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if row_id < 1:
        raise InvalidCursor(cursor)
    return row_id


def _payment_outcome(request: PaymentRequest, row: asyncpg.Record) -> PaymentRecord | LedgerError:
    status = row["status"]
    if status in ("recorded", "replay"):
        return PaymentRecord(
            transaction_id=row["transaction_id"], decision=row["decision"],
            risk_score=float(row["risk_score"]), reasons=list(row["reasons"]),
            balance_after_minor=row["balance_after_minor"], currency=row["currency"],
            rules_version=row["rules_version"], model_version=row["model_version"],
            recorded_at=row["recorded_at"], replayed=status == "replay",
        )
    if status == "unknown_account":
        return UnknownAccount(request.account_id)
    if status == "currency_mismatch":
        return CurrencyMismatch(request.account_id, row["currency"], request.currency)
    if status == "transaction_exists":
        return TransactionExists(request.transaction_id)
    if status == "idempotency_mismatch":
        return IdempotencyKeyReused()
    raise AssertionError(f"ledger_post_payments returned unknown status {status!r}")


class Ledger:
    """Reads and writes the ledger through one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def pool_state(self) -> tuple[int, int]:
        """(connections open, of which idle) in the pool."""
        return self._pool.get_size(), self._pool.get_idle_size()

    async def ping(self) -> None:
        async with converting_errors():
            await self._pool.fetchval("SELECT 1")

    async def create_account(self, spec: AccountSpec) -> tuple[AccountState, bool]:
        """Create a cardholder account (and its currency's funding account).

        Returns the account and whether it was created now; an existing account with the
        same attributes is returned as is, one with other attributes is AccountExists.
        """
        async with converting_errors(), self._pool.acquire() as conn, conn.transaction():
            # Settlement accounts are made by the posting function, per shard.
            await conn.execute(
                "INSERT INTO accounts (account_id, kind, currency) "
                "VALUES ('funding:' || $1, 'funding', $1) ON CONFLICT DO NOTHING", spec.currency)
            row = await conn.fetchrow(
                "INSERT INTO accounts (account_id, kind, currency, home_country, home_lat, "
                "home_lon, overdraft_limit_minor) VALUES ($1, 'cardholder', $2, $3, $4, $5, $6) "
                "ON CONFLICT DO NOTHING RETURNING *",
                spec.account_id, spec.currency, spec.home_country, spec.home_lat,
                spec.home_lon, spec.overdraft_limit_minor)
            if row is not None:
                return _account(row), True
            existing = _account(_one(await conn.fetchrow(
                "SELECT * FROM accounts WHERE account_id = $1", spec.account_id), "accounts"))
        same = (existing.currency, existing.home_country, existing.home_lat, existing.home_lon,
                existing.overdraft_limit_minor) == (
                spec.currency, spec.home_country, spec.home_lat, spec.home_lon,
                spec.overdraft_limit_minor)
        if not same:
            raise AccountExists(spec.account_id)
        return existing, False

    async def get_account(self, account_id: str) -> AccountState:
        async with converting_errors():
            row = await self._pool.fetchrow(
                "SELECT * FROM accounts WHERE account_id = $1 AND kind = 'cardholder'",
                account_id)
        if row is None:
            raise UnknownAccount(account_id)
        return _account(row)

    async def get_accounts(self, account_ids: Sequence[str]) -> list[AccountState]:
        """The cardholder accounts among account_ids (unknown ones are left out)."""
        async with converting_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM accounts WHERE account_id = ANY($1::text[]) "
                "AND kind = 'cardholder'", list(account_ids))
        return [_account(r) for r in rows]

    async def post_payments(
        self, requests: Sequence[PaymentRequest]
    ) -> list[PaymentRecord | LedgerError]:
        """Record a micro-batch in one round trip and one commit; one outcome per request."""
        batch = _encode_batch(requests).decode()
        async with converting_errors():
            try:
                rows = await self._pool.fetch("SELECT * FROM ledger_post_payments($1::jsonb)",
                                              batch)
            except asyncpg.DeadlockDetectedError:
                # Only twin requests racing in two batches can cross their key locks; the
                # batch was rolled back whole, so running it again is safe.
                rows = await self._pool.fetch("SELECT * FROM ledger_post_payments($1::jsonb)",
                                              batch)
        by_ord = {row["ord"]: row for row in rows}
        return [_payment_outcome(request, by_ord[i])
                for i, request in enumerate(requests, start=1)]

    async def post_deposit(self, *, client_id: str, idem_key: str, fingerprint: bytes,
                           account_id: str, amount_minor: int, currency: str) -> DepositRecord:
        async with converting_errors():
            row = _one(await self._pool.fetchrow(
                "SELECT * FROM ledger_post_deposit($1, $2, $3, $4, $5, $6)",
                client_id, idem_key, fingerprint, account_id, amount_minor, currency),
                "ledger_post_deposit")
        status = row["status"]
        if status == "unknown_account":
            raise UnknownAccount(account_id)
        if status == "currency_mismatch":
            raise CurrencyMismatch(account_id, row["currency"], currency)
        if status == "idempotency_mismatch":
            raise IdempotencyKeyReused()
        return DepositRecord(
            entry_id=row["entry_id"], account_id=account_id, amount_minor=row["amount_minor"],
            currency=row["currency"], balance_after_minor=row["balance_after_minor"],
            replayed=status == "replay")

    async def get_transaction(self, transaction_id: str) -> TransactionView:
        async with converting_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_TRANSACTION_COLUMNS} FROM transactions t "
                "JOIN accounts a USING (account_id) WHERE t.transaction_id = $1",
                transaction_id)
        if row is None:
            raise TransactionNotFound(transaction_id)
        return _view(row)

    async def history(self, account_id: str, *, limit: int,
                      cursor: str | None = None) -> HistoryPage:
        """Newest first, by keyset on the row id: stable while new rows arrive."""
        before = decode_cursor(cursor) if cursor else None
        args: list[Any] = [account_id, limit + 1]
        condition = ""
        if before is not None:
            condition = "AND t.id < $3"
            args.append(before)
        async with converting_errors(), self._pool.acquire() as conn:
            exists = await conn.fetchval(
                "SELECT 1 FROM accounts WHERE account_id = $1 AND kind = 'cardholder'",
                account_id)
            if exists is None:
                raise UnknownAccount(account_id)
            rows = await conn.fetch(
                f"SELECT {_TRANSACTION_COLUMNS} FROM transactions t "
                f"JOIN accounts a USING (account_id) WHERE t.account_id = $1 {condition} "
                "ORDER BY t.id DESC LIMIT $2", *args)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["id"]) if more else None
        return HistoryPage(items=[_view(r) for r in rows], next_cursor=next_cursor)


async def _end_open_transaction(conn: asyncpg.Connection) -> None:
    """On release, only what this service can leave behind: an open transaction.

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: one more round trip per pool call (SELECT 1 through the pool: 234-286 us
    with it, 91-147 us without, BENCHMARKS.md). Pool connections here never LISTEN, SET, hold
    cursors or session advisory locks (the rule reloader and the relay use their own
    connections), so there is nothing else to reset.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def open_pool(dsn: str, *, min_size: int, max_size: int, connect_timeout_s: float = 2.0,
                    command_timeout_s: float = 10.0) -> asyncpg.Pool:
    async with converting_errors():
        # A short connect timeout: with PostgreSQL down the edge must answer 503 fast.
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=connect_timeout_s,
            command_timeout=command_timeout_s, reset=_end_open_transaction)
    return pool
