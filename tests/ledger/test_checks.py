"""The identifier CHECK constraints (migrations 009/010) accept exactly what the bounded
patterns they replaced accepted: 1 to 64 (categories: 32) characters of the allowed set."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = pytest.mark.integration

ID_CHARS = "Az09._:-"


@pytest.mark.parametrize(("account_id", "accepted"), [
    ("a", True), ("x" * 64, True), (ID_CHARS, True), ("card:4f2a-9.b_c", True),
    ("", False), ("x" * 65, False), ("a b", False), ("a|b", False), ("é", False),
    ("a\n", False), ("\na", False),
])
async def test_account_ids(pool: asyncpg.Pool, account_id: str, accepted: bool):
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            insert = conn.execute("INSERT INTO accounts (account_id, kind, currency) "
                                  "VALUES ($1, 'cardholder', 'EUR')", account_id)
            if accepted:
                await insert
            else:
                with pytest.raises(asyncpg.CheckViolationError,
                                   match="accounts_account_id_check"):
                    await insert
        finally:
            await tx.rollback()  # nothing is left behind either way


@pytest.mark.parametrize(("category", "accepted"), [
    ("grocery_pos", True), ("x" * 32, True), ("a-b_9", True),
    ("x" * 33, False), ("", False), ("a.b", False), ("a:b", False),
])
async def test_category_check_alone(admin_pool: asyncpg.Pool, category: str, accepted: bool):
    # The constraint's own expression, evaluated by PostgreSQL on the value.
    expression = await admin_pool.fetchval(
        "SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint "
        "WHERE conname = 'transactions_merchant_category_check'")
    result = await admin_pool.fetchval(
        f"SELECT {expression.replace('merchant_category', '$1::text')}", category)
    assert bool(result) is accepted


async def test_every_swapped_constraint_is_validated(admin_pool: asyncpg.Pool):
    rows = await admin_pool.fetch(
        "SELECT conname, convalidated, pg_get_constraintdef(oid) AS definition "
        "FROM pg_constraint WHERE contype = 'c' AND conname IN ("
        "'accounts_account_id_check', 'transactions_transaction_id_check', "
        "'transactions_card_id_check', 'transactions_merchant_id_check', "
        "'transactions_merchant_category_check', 'merchants_merchant_id_check', "
        "'rules_name_check', 'list_items_list_name_check')")
    assert len(rows) == 8
    assert all(row["convalidated"] for row in rows)
    assert not [row["conname"] for row in rows if "{1," in row["definition"]]
