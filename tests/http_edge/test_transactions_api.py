"""The screening API end to end: edge -> pipeline -> ledger -> answer, on real services."""

from __future__ import annotations

from tests.conftest import unique


async def test_screening_is_recorded_replayed_and_visible(server, make_account, make_transaction):
    account = await make_account(deposit="100.00")
    txn = make_transaction(account, amount="12.34")
    key = unique("key")

    status, body, headers = await server.call(
        "POST", "/v1/transactions", json=txn, headers={"Idempotency-Key": key},
        scopes=("transactions:write",))
    assert status == 200, body
    assert body["decision"] == "approve"
    assert body["balance_after"] == "87.66"
    assert body["currency"] == "EUR"
    assert body["reasons"] == []
    assert 0.0 <= body["risk_score"] <= 1.0
    assert body["rules_version"] >= 5  # the default pack
    assert body["model_version"] == server.app.models.current.version
    assert body["processed_in_ms"] > 0
    timing = headers["Server-Timing"]
    for stage in ("admit", "ledger", "respond", "total"):
        assert f"{stage};dur=" in timing
    assert "Idempotent-Replayed" not in headers

    status, again, headers = await server.call(
        "POST", "/v1/transactions", json=txn, headers={"Idempotency-Key": f'"{key}"'},
        scopes=("transactions:write",))
    assert status == 200
    assert headers["Idempotent-Replayed"] == "true"
    assert {k: v for k, v in again.items() if k != "processed_in_ms"} == {
        k: v for k, v in body.items() if k != "processed_in_ms"}

    status, balance, _ = await server.call("GET", f"/v1/accounts/{account}/balance",
                                           scopes=("accounts:read",))
    assert status == 200
    assert balance == {"account_id": account, "currency": "EUR", "balance": "87.66",
                       "available": "87.66", "overdraft_limit": "0.00"}

    status, detail, _ = await server.call("GET", f"/v1/transactions/{txn['transaction_id']}",
                                          scopes=("transactions:read",))
    assert status == 200
    assert detail["amount"] == "12.34" and detail["decision"] == "approve"
    assert detail["timestamp"].startswith("2026-11-29T10:00:00")

    status, history, _ = await server.call("GET", f"/v1/accounts/{account}/transactions",
                                           scopes=("transactions:read",))
    assert status == 200
    assert [item["transaction_id"] for item in history["items"]] == [txn["transaction_id"]]
    assert history["next_cursor"] is None


async def test_insufficient_funds_declines_and_posts_nothing(server, make_account,
                                                             make_transaction):
    account = await make_account(deposit="5.00", overdraft_limit="1.00")
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account, amount="6.01"),
        headers={"Idempotency-Key": unique("k")})
    assert status == 200
    assert body["decision"] == "decline"
    assert body["reasons"] == ["insufficient_funds"]
    assert body["balance_after"] == "5.00"

    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account, amount="6.00"),
        headers={"Idempotency-Key": unique("k")})
    assert body["decision"] == "approve"
    assert body["balance_after"] == "-1.00"

    status, balance, _ = await server.call("GET", f"/v1/accounts/{account}/balance")
    assert balance["balance"] == "-1.00" and balance["available"] == "0.00"


async def test_unknown_account_and_currency_mismatch(server, make_account, make_transaction):
    refused_key = unique("k")
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction("no-such-account"),
        headers={"Idempotency-Key": refused_key})
    assert (status, body["code"]) == (404, "account_not_found")

    account = await make_account(deposit="50.00")
    # The 404's key was released: it is free for a corrected request (not 409, not 422).
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account),
        headers={"Idempotency-Key": refused_key})
    assert status == 200 and body["decision"] == "approve"
    key = unique("k")
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account, currency="USD"),
        headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (422, "currency_mismatch")
    # A refused request is not remembered: the same key works once the body is fixed.
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account),
        headers={"Idempotency-Key": key})
    assert status == 200 and body["decision"] == "approve"


async def test_transaction_id_reused_under_another_key_is_a_conflict(server, make_account,
                                                                    make_transaction):
    account = await make_account(deposit="50.00")
    txn = make_transaction(account)
    status, _, _ = await server.call("POST", "/v1/transactions", json=txn,
                                     headers={"Idempotency-Key": unique("k")})
    assert status == 200
    status, body, _ = await server.call("POST", "/v1/transactions", json=txn,
                                        headers={"Idempotency-Key": unique("k")})
    assert (status, body["code"]) == (409, "transaction_exists")


async def test_history_pages_newest_first_and_stable_under_inserts(server, make_account,
                                                                   make_transaction):
    account = await make_account(deposit="1000.00")
    ids = []
    for _ in range(7):
        txn = make_transaction(account, amount="1.00")
        ids.append(txn["transaction_id"])
        status, _, _ = await server.call("POST", "/v1/transactions", json=txn,
                                         headers={"Idempotency-Key": unique("k")})
        assert status == 200
    path = f"/v1/accounts/{account}/transactions?limit=3"
    status, page1, _ = await server.call("GET", path)
    assert [i["transaction_id"] for i in page1["items"]] == ids[::-1][:3]
    # A payment landing between pages must not shift what the next page shows.
    await server.call("POST", "/v1/transactions", json=make_transaction(account, amount="1.00"),
                      headers={"Idempotency-Key": unique("k")})
    status, page2, _ = await server.call("GET", f"{path}&cursor={page1['next_cursor']}")
    status, page3, _ = await server.call("GET", f"{path}&cursor={page2['next_cursor']}")
    seen = [i["transaction_id"] for p in (page1, page2, page3) for i in p["items"]]
    assert seen == ids[::-1]
    assert page3["next_cursor"] is None

    status, body, _ = await server.call("GET", f"{path}&cursor=bogus!")
    assert (status, body["code"]) == (400, "invalid_cursor")
    status, body, _ = await server.call("GET", f"/v1/accounts/{account}/transactions?limit=0")
    assert (status, body["code"]) == (400, "invalid_query")
    status, body, _ = await server.call("GET", "/v1/accounts/nobody/transactions")
    assert (status, body["code"]) == (404, "account_not_found")


async def test_unknown_transaction_is_404(server):
    status, body, headers = await server.call("GET", "/v1/transactions/nope")
    assert (status, body["code"]) == (404, "transaction_not_found")
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 404 and body["type"].endswith("transaction_not_found")
