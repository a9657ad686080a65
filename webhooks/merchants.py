"""Merchants and their webhook signing secrets, in PostgreSQL.

A merchant's secret is shown once, when it is created or rotated. Rotation keeps the previous
secrets valid for `grace_s` (24 h by default): meanwhile deliveries carry one signature per
valid secret, so a merchant can switch at its own pace.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from webhooks.signing import new_secret

ROTATION_GRACE_S = 86_400


class MerchantError(Exception):
    """Root of the merchant store's errors; leaves carry a stable `code`."""

    code = "merchant_error"


class MerchantNotFound(MerchantError):
    code = "merchant_not_found"

    def __init__(self, merchant_id: str) -> None:
        super().__init__(f"merchant {merchant_id!r} does not exist")


class MerchantExists(MerchantError):
    code = "merchant_exists"

    def __init__(self, merchant_id: str) -> None:
        super().__init__(f"merchant {merchant_id!r} already exists; its secret was shown when "
                         f"it was created (rotate it to get a new one)")


class Merchant(msgspec.Struct, frozen=True, kw_only=True):
    merchant_id: str
    name: str
    category: str | None
    webhook_url: str | None
    delivery_enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = ("merchant_id, name, category, webhook_url, delivery_enabled, disabled_reason, "
            "created_at, updated_at")


def _merchant(row: asyncpg.Record) -> Merchant:
    return Merchant(**dict(row))


class MerchantStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, merchant_id: str, name: str, *, webhook_url: str | None,
                     category: str | None) -> tuple[Merchant, str]:
        """The new merchant and its first signing secret (shown to the caller once)."""
        secret = new_secret()
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO merchants (merchant_id, name, category, webhook_url) "
                    f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                    merchant_id, name, category, webhook_url)
            except asyncpg.UniqueViolationError:
                raise MerchantExists(merchant_id) from None
            await conn.execute(
                "INSERT INTO merchant_secrets (merchant_id, secret) VALUES ($1, $2)",
                merchant_id, secret)
        assert row is not None  # INSERT ... RETURNING returns the row
        return _merchant(row), secret

    async def get(self, merchant_id: str) -> Merchant:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM merchants WHERE merchant_id = $1", merchant_id)
        if row is None:
            raise MerchantNotFound(merchant_id)
        return _merchant(row)

    async def update(self, merchant_id: str, changes: dict[str, object]) -> Merchant:
        """Apply `changes` (keys: name, category, webhook_url, delivery_enabled)."""
        values: dict[str, object] = {name: changes[name] for name in
                  ("name", "category", "webhook_url", "delivery_enabled") if name in changes}
        if "delivery_enabled" in values:
            # Re-enabling clears the reason (e.g. a 410 Gone); disabling by hand records it.
            values["disabled_reason"] = None if values["delivery_enabled"] else "disabled by API"
        # Column names come from the fixed tuple above, never from the request.
        sets = [f"{name} = ${i + 2}" for i, name in enumerate(values)]
        row = await self._pool.fetchrow(
            f"UPDATE merchants SET {', '.join([*sets, 'updated_at = now()'])} "
            f"WHERE merchant_id = $1 RETURNING {_COLUMNS}", merchant_id, *values.values())
        if row is None:
            raise MerchantNotFound(merchant_id)
        return _merchant(row)

    async def rotate_secret(self, merchant_id: str, *,
                            grace_s: int = ROTATION_GRACE_S) -> str:
        """A new secret; the ones still valid now stay valid for `grace_s` more seconds."""
        secret = new_secret()
        async with self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "SELECT 1 FROM merchants WHERE merchant_id = $1 FOR NO KEY UPDATE",
                merchant_id)
            if found is None:
                raise MerchantNotFound(merchant_id)
            await conn.execute(
                "UPDATE merchant_secrets SET expires_at = now() + $2::interval "
                "WHERE merchant_id = $1 AND (expires_at IS NULL OR expires_at > now() + "
                "$2::interval)", merchant_id, timedelta(seconds=grace_s))
            await conn.execute(
                "INSERT INTO merchant_secrets (merchant_id, secret) VALUES ($1, $2)",
                merchant_id, secret)
        return secret

    async def signing_secrets(self, merchant_id: str, *,
                              at: datetime | None = None) -> list[str]:
        """The secrets valid at `at` (default: now), newest first."""
        rows = await self._pool.fetch(
            "SELECT secret FROM merchant_secrets WHERE merchant_id = $1 "
            "AND (expires_at IS NULL OR expires_at > coalesce($2, now())) "
            "ORDER BY secret_id DESC", merchant_id, at)
        return [row["secret"] for row in rows]
