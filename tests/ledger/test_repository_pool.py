"""The ledger's pool skips asyncpg's per-release reset query but never hands out a
connection inside a transaction."""

from __future__ import annotations

import pytest

from ledger.repository import open_pool

pytestmark = pytest.mark.integration


async def test_a_connection_released_mid_transaction_comes_back_clean(database):
    pool = await open_pool(database.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_behind (x int) ON COMMIT DROP")
            assert conn.is_in_transaction()
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_behind')") is None
    finally:
        await pool.close()
