"""Idempotency against the real Redis and PostgreSQL: replays, conflicts, Redis wiped."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec

from http_edge.schemas import TransactionIn
from http_edge.validation import payment_request
from stages.idempotency import IdempotencyCache
from tests.conftest import unique


async def _count(pool, account):
    return await pool.fetchval("SELECT count(*) FROM transactions WHERE account_id = $1", account)


async def test_fifty_simultaneous_identical_requests_record_once(server, pool, make_account,
                                                                 make_transaction):
    account = await make_account(deposit="100.00")
    txn = make_transaction(account, amount="1.00")
    key = unique("k")
    results = await asyncio.gather(*[
        server.call("POST", "/v1/transactions", json=txn, headers={"Idempotency-Key": key})
        for _ in range(50)])
    statuses = Counter(status for status, _, _ in results)
    assert set(statuses) <= {200, 409}, statuses
    originals = [r for r in results if r[0] == 200 and "Idempotent-Replayed" not in r[2]]
    assert len(originals) <= 1
    assert statuses[200] >= 1
    for status, body, _ in results:
        if status == 409:
            assert body["code"] == "request_in_flight"
        else:
            assert body["transaction_id"] == txn["transaction_id"]
            assert body["balance_after"] == "99.00"
    assert await _count(pool, account) == 1
    assert await pool.fetchval(
        "SELECT balance_minor FROM accounts WHERE account_id = $1", account) == 9900


async def test_same_key_other_body_is_422(server, pool, make_account, make_transaction):
    account = await make_account(deposit="100.00")
    key = unique("k")
    txn = make_transaction(account)
    status, _, _ = await server.call("POST", "/v1/transactions", json=txn,
                                     headers={"Idempotency-Key": key})
    assert status == 200
    status, body, _ = await server.call("POST", "/v1/transactions",
                                        json={**txn, "amount": "11.00"},
                                        headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (422, "idempotency_key_reused")
    assert await _count(pool, account) == 1


async def test_keys_are_scoped_per_client(server, pool, make_account, make_transaction):
    account = await make_account(deposit="100.00")
    key = unique("k")
    status, _, _ = await server.call("POST", "/v1/transactions", json=make_transaction(account),
                                     headers={"Idempotency-Key": key}, sub="gateway-a")
    assert status == 200
    status, body, headers = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account),
        headers={"Idempotency-Key": key}, sub="gateway-b")
    assert status == 200 and "Idempotent-Replayed" not in headers
    assert await _count(pool, account) == 2


async def test_retry_while_in_flight_is_409(server, redis_client, make_account, make_transaction):
    account = await make_account(deposit="100.00")
    key = unique("k")
    txn = make_transaction(account)
    cache = IdempotencyCache(redis_client, prefix=server.app.settings.redis_prefix,
                             ttl_s=60, inflight_ttl_s=60)
    request = payment_request(msgspec.convert(txn, TransactionIn, strict=False),
                              client_id="gateway", idem_key=key)
    # The first request is mid-pipeline: its in-flight marker is in Redis.
    await redis_client.set(cache.key("gateway", key), cache.new_marker(request.fingerprint))
    status, body, headers = await server.call("POST", "/v1/transactions", json=txn,
                                              headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (409, "request_in_flight")
    status, body, _ = await server.call("POST", "/v1/transactions",
                                        json={**txn, "amount": "99.00"},
                                        headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (422, "idempotency_key_reused")


async def test_redis_wiped_between_identical_requests_still_one_record(
        server, pool, redis_client, make_account, make_transaction):
    account = await make_account(deposit="100.00")
    txn = make_transaction(account, amount="3.00")
    key = unique("k")
    status, first, _ = await server.call("POST", "/v1/transactions", json=txn,
                                         headers={"Idempotency-Key": key})
    assert status == 200
    async for k in redis_client.scan_iter(match=f"{server.app.settings.redis_prefix}:*",
                                          count=1000):
        await redis_client.delete(k)
    status, second, headers = await server.call("POST", "/v1/transactions", json=txn,
                                                headers={"Idempotency-Key": key})
    assert status == 200
    assert headers["Idempotent-Replayed"] == "true"
    assert second["balance_after"] == first["balance_after"] == "97.00"
    assert await _count(pool, account) == 1
    # Same key, other body: PostgreSQL refuses it too without Redis' help.
    async for k in redis_client.scan_iter(match=f"{server.app.settings.redis_prefix}:*",
                                          count=1000):
        await redis_client.delete(k)
    status, body, _ = await server.call("POST", "/v1/transactions",
                                        json={**txn, "amount": "4.00"},
                                        headers={"Idempotency-Key": key})
    assert (status, body["code"]) == (422, "idempotency_key_reused")
    assert await _count(pool, account) == 1
