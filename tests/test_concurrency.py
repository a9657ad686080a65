"""Many simultaneous payments on one account: the balance never crosses the limit."""

from __future__ import annotations

import asyncio
from collections import Counter

from ledger.verify import verify_ledger
from tests.conftest import unique


async def test_two_hundred_payments_on_one_account(server, pool, make_account, make_transaction):
    # 50.00 + 5.00 overdraft covers exactly 55 payments of 1.00 out of 200.
    account = await make_account(deposit="50.00", overdraft_limit="5.00")
    results = await asyncio.gather(*[
        server.call("POST", "/v1/transactions",
                    json=make_transaction(account, amount="1.00", card_id=f"card-{i % 7}"),
                    headers={"Idempotency-Key": unique("k")})
        for i in range(200)])
    assert all(status == 200 for status, _, _ in results), [b for s, b, _ in results if s != 200]
    decisions = Counter(body["decision"] for _, body, _ in results)
    assert decisions == {"approve": 55, "decline": 145}
    balances = sorted(int(body["balance_after"].replace(".", "").replace("-", "")) *
                      (-1 if body["balance_after"].startswith("-") else 1)
                      for _, body, _ in results if body["decision"] == "approve")
    assert min(balances) == -500
    assert await pool.fetchval(
        "SELECT balance_minor FROM accounts WHERE account_id = $1", account) == -500
    assert await pool.fetchval(
        "SELECT count(*) FROM transactions WHERE account_id = $1", account) == 200
    async with pool.acquire() as conn:
        report = await verify_ledger(conn)
    assert report.ok, report.problems
