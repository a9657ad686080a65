"""Rate limits through the real edge: 429 with Retry-After and RateLimit-* headers, nothing
recorded, the Idempotency-Key still free for the retry; Redis down fails open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

from ops.application import Application
from ops.settings import Settings
from tests.conftest import Server, unique, wait_for

# A slow client limit (one request every 2 s, 3 at once) so that a test's three quick
# requests are one burst on any machine; the card limit allows one payment per card at once.
LIMITS = {"rate_limit_client_per_s": 0.5, "rate_limit_client_burst": 3,
          "rate_limit_card_per_s": 0.5, "rate_limit_card_burst": 1}


async def started(settings: Settings, session: aiohttp.ClientSession) -> Server:
    app = Application(settings)
    await app.startup()
    return Server(app, session)


@pytest.fixture(scope="module")
async def limited(database: Settings, server: Server) -> AsyncIterator[Server]:
    edge = await started(msgspec.structs.replace(database, **LIMITS), server.session)
    yield edge
    await edge.app.shutdown()


async def pay(edge: Server, body: dict[str, Any], key: str, sub: str) -> tuple[int, Any, Any]:
    return await edge.call("POST", "/v1/transactions", json=body, sub=sub,
                           headers={"Idempotency-Key": key})


async def recorded(pool, transaction_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM transactions WHERE transaction_id = $1",
                               transaction_id)


async def test_over_the_client_limit_429_then_the_same_key_succeeds(
        limited, make_account, make_transaction, pool):
    sub, account = unique("gw"), await make_account(deposit="100.00")
    answers = []
    for _ in range(3):
        status, body, headers = await pay(limited, make_transaction(account, card_id=unique("c")),
                                          unique("k"), sub)
        assert status == 200, body
        answers.append(headers)
    assert [h["RateLimit-Remaining"] for h in answers] == ["2", "1", "0"]
    assert answers[0]["RateLimit-Limit"] == "3"
    assert answers[0]["RateLimit-Policy"] == "1;w=2;burst=3"
    assert 1 <= int(answers[0]["RateLimit-Reset"]) <= 2

    body, key = make_transaction(account, card_id=unique("c")), unique("k")
    status, problem, headers = await pay(limited, body, key, sub)
    assert status == 429, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["code"] == "client_rate_limited" and problem["status"] == 429
    assert problem["type"].endswith("/client_rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 2
    assert (headers["RateLimit-Limit"], headers["RateLimit-Remaining"]) == ("3", "0")
    assert int(headers["RateLimit-Reset"]) >= int(headers["Retry-After"])
    assert headers["RateLimit-Policy"] == "1;w=2;burst=3"
    assert headers["X-Request-Id"]
    assert await recorded(pool, body["transaction_id"]) == 0

    # The limited request claimed no Idempotency-Key: once a cell frees, the retry is new work.
    async def retried() -> bool:
        nonlocal status, headers
        status, _, headers = await pay(limited, body, key, sub)
        return status == 200
    await wait_for(retried, timeout_s=10)
    assert "Idempotent-Replayed" not in headers
    assert await recorded(pool, body["transaction_id"]) == 1


async def test_over_the_card_limit_429_without_charging_the_client(
        limited, make_account, make_transaction, pool):
    sub, account, card = unique("gw"), await make_account(deposit="100.00"), unique("card")
    first_body, first_key = make_transaction(account, card_id=card), unique("k")
    status, _, first = await pay(limited, first_body, first_key, sub)
    assert status == 200 and first["RateLimit-Remaining"] == "2"
    body = make_transaction(account, card_id=card)
    status, problem, headers = await pay(limited, body, unique("k"), sub)
    assert status == 429
    assert problem["code"] == "card_rate_limited"
    assert headers["RateLimit-Policy"] == "1;w=2;burst=1"  # the card's limit, which denied it
    assert await recorded(pool, body["transaction_id"]) == 0
    # The card is over its limit, but the retry of the answered payment gets its answer.
    status, _, again = await pay(limited, first_body, first_key, sub)
    assert status == 200 and again["Idempotent-Replayed"] == "true"
    status, _, other = await pay(limited, make_transaction(account, card_id=unique("card")),
                                 unique("k"), sub)
    assert status == 200
    assert other["RateLimit-Remaining"] in ("1", "2")  # 1 unless a cell freed meanwhile


async def test_default_limits_add_headers_to_allowed_answers(server, make_account,
                                                             make_transaction):
    account = await make_account(deposit="100.00")
    status, _, headers = await pay(server, make_transaction(account), unique("k"), unique("gw"))
    assert status == 200
    assert headers["RateLimit-Policy"] == "5000;w=1;burst=5000"
    assert int(headers["RateLimit-Remaining"]) == 4999


async def test_redis_down_fails_open(database, server, make_account, make_transaction, pool):
    settings = msgspec.structs.replace(database, redis_url="redis://127.0.0.1:1/0", **LIMITS)
    edge = await started(settings, server.session)
    try:
        account, card, sub = await make_account(deposit="100.00"), unique("card"), unique("gw")
        bodies = [make_transaction(account, card_id=card) for _ in range(2)]
        for body in bodies:  # the card limit would refuse the second
            status, answer, headers = await pay(edge, body, unique("k"), sub)
            assert status == 200, answer
            assert "RateLimit-Limit" not in headers
            assert await recorded(pool, body["transaction_id"]) == 1
        assert edge.app.admission.statistics().failed_open == 2
    finally:
        await edge.app.shutdown()
