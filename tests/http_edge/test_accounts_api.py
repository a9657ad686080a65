"""Accounts and deposits through the API."""

from __future__ import annotations

from tests.conftest import unique


async def test_create_account_is_safe_to_retry_but_not_to_change(server):
    account_id = unique("acct")
    spec = {"account_id": account_id, "currency": "JPY", "home_country": "JP",
            "home_lat": 35.6762, "home_lon": 139.6503, "overdraft_limit": "500"}
    status, body, headers = await server.call("POST", "/v1/accounts", json=spec,
                                              scopes=("accounts:write",))
    assert status == 201, body
    assert headers["Location"] == f"/v1/accounts/{account_id}"
    assert body["balance"] == "0" and body["overdraft_limit"] == "500"
    status, again, _ = await server.call("POST", "/v1/accounts", json=spec)
    assert status == 200 and again == body
    status, conflict, _ = await server.call("POST", "/v1/accounts",
                                            json={**spec, "overdraft_limit": "0"})
    assert (status, conflict["code"]) == (409, "account_exists")
    status, fetched, _ = await server.call("GET", f"/v1/accounts/{account_id}",
                                           scopes=("accounts:read",))
    assert status == 200 and fetched == body


async def test_deposits_are_idempotent(server, make_account):
    account = await make_account()
    key = unique("dep")
    path = f"/v1/accounts/{account}/deposits"
    status, first, headers = await server.call("POST", path, json={"amount": "25.5", "currency": "EUR"},
                                               headers={"Idempotency-Key": key})
    assert status == 201 and first["balance_after"] == "25.50"
    status, replay, headers = await server.call("POST", path, json={"amount": "25.50", "currency": "EUR"},
                                                headers={"Idempotency-Key": key})
    assert status == 200 and headers["Idempotent-Replayed"] == "true" and replay == first
    status, body, _ = await server.call("POST", path, json={"amount": "30.00", "currency": "EUR"},
                                        headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (422, "idempotency_key_reused")
    status, body, _ = await server.call("POST", path, json={"amount": "1.00", "currency": "USD"},
                                        headers={"Idempotency-Key": unique("dep")})
    assert (status, body["code"]) == (422, "currency_mismatch")
    status, body, _ = await server.call("POST", "/v1/accounts/ghost/deposits",
                                        json={"amount": "1.00", "currency": "EUR"},
                                        headers={"Idempotency-Key": unique("dep")})
    assert (status, body["code"]) == (404, "account_not_found")
    status, balance, _ = await server.call("GET", f"/v1/accounts/{account}/balance")
    assert balance["balance"] == "25.50"
