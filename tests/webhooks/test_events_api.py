"""Deliveries, events and replays API against the real PostgreSQL and edge.

The delivery workers are simulated: attempt rows are inserted with the service role, as the
workers' `AttemptLog` does. The real relay and worker may be running too (the session-wide
`delivery` fixture of tests/webhooks/conftest.py, once any test has used it): each test here
that creates a merchant pauses the relay, so no real attempt joins the simulated ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.conftest import Server, unique
from webhooks import events
from webhooks.deliveries import (
    DeliveryAttempt,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    event_status,
)

pytestmark = pytest.mark.integration

READ = ("merchants:read",)
WRITE = ("merchants:write",)


@pytest.fixture
async def paused_relay(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Hold back a running relay for the test: it publishes only rows whose writing
    transaction is older than every transaction still open (migration 006), and this one
    stays open with an id taken before the test writes anything."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchval("SELECT pg_current_xact_id()")
        try:
            yield
        finally:
            await transaction.rollback()


@pytest.fixture
async def create_merchant(server: Server,
                          paused_relay: None) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Register a merchant through the API. Its delivery is stopped after the test (before
    the relay resumes), so the relay publishes none of its events and a worker only records
    replays as skipped: nothing leaves the machine."""
    created: list[str] = []

    async def create(**overrides: object) -> str:
        # Port 9 (discard) refuses at once, should anything be delivered after all.
        body = {"merchant_id": unique("shop"), "name": "Corner Shop",
                "webhook_url": "http://127.0.0.1:9/hooks"}
        body.update(overrides)
        status, answer, _ = await server.call("POST", "/v1/merchants", json=body, scopes=WRITE)
        assert status == 201, answer
        created.append(str(answer["merchant_id"]))
        return created[-1]
    yield create
    for merchant_id in created:
        await disable(server, merchant_id)


async def disable(server: Server, merchant_id: str) -> None:
    status, body, _ = await server.call("PATCH", f"/v1/merchants/{merchant_id}",
                                        json={"delivery_enabled": False}, scopes=WRITE)
    assert status == 200, body


@pytest.fixture
def screen(server: Server, make_account, make_transaction):
    """Screen a payment at `merchant_id` through the API; its transaction id."""
    accounts: list[str] = []

    async def make(merchant_id: str) -> str:
        if not accounts:
            accounts.append(await make_account(deposit="1000.00"))
        txn = make_transaction(accounts[0], merchant_id=merchant_id)
        status, body, _ = await server.call(
            "POST", "/v1/transactions", json=txn, headers={"Idempotency-Key": unique("k")},
            scopes=("transactions:write",))
        assert status == 200, body
        return str(txn["transaction_id"])
    return make


async def record_attempt(pool: asyncpg.Pool, transaction_id: str, merchant_id: str,
                         outcome: str, *, attempt: int = 1,
                         replay_id: int | None = None) -> int:
    """What a delivery worker writes after one POST; the new attempt_id."""
    now = datetime.now(UTC)
    delivered = outcome == "delivered"
    attempt_id: int = await pool.fetchval(
        "INSERT INTO webhook_attempts (event_id, transaction_id, merchant_id, replay_id, "
        "attempt, url, attempted_at, status_code, latency_ms, error, outcome, next_attempt_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING attempt_id",
        events.event_id(transaction_id), transaction_id, merchant_id, replay_id, attempt,
        None if outcome == "skipped" else "https://shop.example/hooks", now,
        200 if delivered else (410 if outcome == "gone" else 500), 12.5,
        None if delivered else "HTTP 500", outcome,
        now + timedelta(seconds=30) if outcome == "retry" else None)
    return attempt_id


async def get_event(server: Server, transaction_id: str) -> dict[str, Any]:
    status, body, _ = await server.call("GET", f"/v1/events/evt_{transaction_id}", scopes=READ)
    assert status == 200, body
    return dict(body)


async def test_the_event_is_what_the_merchant_receives(server: Server, pool, screen,
                                                       create_merchant):
    merchant_id = await create_merchant()
    transaction_id = await screen(merchant_id)
    body = await get_event(server, transaction_id)
    row = await events.load_event(pool, transaction_id)
    assert row is not None
    assert body["event"] == msgspec.json.decode(events.encode(events.event_of(row)))
    assert body["event"]["id"] == f"evt_{transaction_id}"
    assert body["event"]["type"] == "transaction.approved"
    assert body["merchant_id"] == merchant_id
    assert (body["status"], body["attempts"]) == ("pending", [])


async def test_the_status_follows_the_latest_attempt(server: Server, pool, screen,
                                                     create_merchant):
    merchant_id = await create_merchant()
    transaction_id = await screen(merchant_id)
    ids = [await record_attempt(pool, transaction_id, merchant_id, "retry")]
    assert (await get_event(server, transaction_id))["status"] == "retrying"
    ids.append(await record_attempt(pool, transaction_id, merchant_id, "retry", attempt=2))
    ids.append(await record_attempt(pool, transaction_id, merchant_id, "failed", attempt=3))
    assert (await get_event(server, transaction_id))["status"] == "failed"
    status, replay, _ = await server.call("POST", f"/v1/events/evt_{transaction_id}/replay",
                                          scopes=WRITE)
    assert status == 202, replay
    ids.append(await record_attempt(pool, transaction_id, merchant_id, "delivered",
                                    replay_id=replay["replay_id"]))
    body = await get_event(server, transaction_id)
    assert body["status"] == "delivered"
    attempts = body["attempts"]
    assert [a["attempt_id"] for a in attempts] == ids  # oldest first
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 1]
    assert [a["replay_id"] for a in attempts] == [None, None, None, replay["replay_id"]]
    assert attempts[0]["next_attempt_at"] is not None and attempts[0]["status_code"] == 500
    assert attempts[-1]["event_id"] == f"evt_{transaction_id}"
    assert set(attempts[0]) == set(DeliveryAttempt.__struct_fields__)


@pytest.mark.parametrize(("outcome", "expected"), [
    ("delivered", "delivered"), ("retry", "retrying"), ("failed", "failed"),
    ("gone", "failed"), ("skipped", "skipped")])
async def test_each_outcome_gives_a_status(server: Server, pool, screen, create_merchant,
                                           outcome, expected):
    merchant_id = await create_merchant()
    transaction_id = await screen(merchant_id)
    await record_attempt(pool, transaction_id, merchant_id, outcome)
    assert (await get_event(server, transaction_id))["status"] == expected


async def test_events_nobody_will_receive_are_not_sent(server: Server, screen, create_merchant):
    no_url = await create_merchant(webhook_url=None)
    disabled = await create_merchant()
    await disable(server, disabled)
    unregistered = unique("unregistered")
    for merchant_id in (no_url, disabled, unregistered):
        body = await get_event(server, await screen(merchant_id))
        assert (body["status"], body["merchant_id"]) == ("not_sent", merchant_id)


async def test_unknown_and_malformed_events_are_404(server: Server):
    for event_id in ("evt_" + unique("nope"), "txn-1", "evt_", "EVT_txn-1"):
        for method, suffix, scopes in (("GET", "", READ), ("POST", "/replay", WRITE)):
            status, body, _ = await server.call(method, f"/v1/events/{event_id}{suffix}",
                                                scopes=scopes)
            assert (status, body["code"]) == (404, "event_not_found"), (event_id, method)


async def test_deliveries_are_paged_newest_first_without_duplicates(server: Server, pool,
                                                                    screen, create_merchant):
    merchant_id = await create_merchant()
    transactions = [await screen(merchant_id) for _ in range(3)]
    ids = [await record_attempt(pool, transactions[i % 3], merchant_id, "retry")
           for i in range(7)]
    other = await create_merchant()  # someone else's attempts never show
    await record_attempt(pool, await screen(other), other, "delivered")
    path = f"/v1/merchants/{merchant_id}/deliveries"

    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        status, page, _ = await server.call("GET", f"{path}?limit=3{cursor}", scopes=READ)
        assert status == 200, page
        assert len(page["items"]) <= 3
        seen += [item["attempt_id"] for item in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert pages == 3
    assert seen == ids[::-1]
    status, page, _ = await server.call("GET", path, scopes=READ)
    assert [item["attempt_id"] for item in page["items"]] == ids[::-1]
    assert page["next_cursor"] is None
    assert {item["merchant_id"] for item in page["items"]} == {merchant_id}


async def test_an_attempt_written_between_pages_does_not_shift_them(server: Server, pool,
                                                                     screen, create_merchant):
    merchant_id = await create_merchant()
    transaction_id = await screen(merchant_id)
    ids = [await record_attempt(pool, transaction_id, merchant_id, "retry", attempt=n)
           for n in range(1, 5)]
    path = f"/v1/merchants/{merchant_id}/deliveries?limit=2"
    _, first, _ = await server.call("GET", path, scopes=READ)
    await record_attempt(pool, transaction_id, merchant_id, "delivered", attempt=5)
    _, second, _ = await server.call("GET", f"{path}&cursor={first['next_cursor']}",
                                     scopes=READ)
    assert [i["attempt_id"] for i in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


async def test_deliveries_filter_by_outcome_and_event(server: Server, pool, screen,
                                                      create_merchant):
    merchant_id = await create_merchant()
    one, two = await screen(merchant_id), await screen(merchant_id)
    retry_one = await record_attempt(pool, one, merchant_id, "retry")
    retry_two = await record_attempt(pool, two, merchant_id, "retry")
    delivered_one = await record_attempt(pool, one, merchant_id, "delivered", attempt=2)
    skipped_two = await record_attempt(pool, two, merchant_id, "skipped", attempt=2)
    path = f"/v1/merchants/{merchant_id}/deliveries"

    async def ids(query: str) -> list[int]:
        status, page, _ = await server.call("GET", f"{path}?{query}", scopes=READ)
        assert status == 200, page
        return [item["attempt_id"] for item in page["items"]]

    assert await ids("outcome=retry") == [retry_two, retry_one]
    assert await ids("outcome=delivered") == [delivered_one]
    assert await ids("outcome=skipped") == [skipped_two]
    assert await ids("outcome=gone") == []
    assert await ids(f"event_id=evt_{one}") == [delivered_one, retry_one]
    assert await ids(f"event_id=evt_{two}&outcome=retry") == [retry_two]
    assert await ids(f"event_id=evt_{unique('nope')}") == []
    # A filter pages like the full list.
    status, page, _ = await server.call("GET", f"{path}?outcome=retry&limit=1", scopes=READ)
    assert [i["attempt_id"] for i in page["items"]] == [retry_two]
    status, page, _ = await server.call(
        "GET", f"{path}?outcome=retry&limit=1&cursor={page['next_cursor']}", scopes=READ)
    assert [i["attempt_id"] for i in page["items"]] == [retry_one]
    assert page["next_cursor"] is None


async def test_deliveries_of_an_unknown_merchant_are_404(server: Server):
    status, body, _ = await server.call("GET", f"/v1/merchants/{unique('nobody')}/deliveries",
                                        scopes=READ)
    assert (status, body["code"]) == (404, "merchant_not_found")
    status, body, _ = await server.call("GET", f"/v1/merchants/{'x' * 65}/deliveries",
                                        scopes=READ)
    assert (status, body["code"]) == (400, "invalid_query")


@pytest.mark.parametrize(("query", "code"), [
    ("limit=0", "invalid_query"), ("limit=501", "invalid_query"), ("limit=ten", "invalid_query"),
    ("outcome=lost", "invalid_outcome"), ("outcome=", "invalid_outcome"),
    ("event_id=txn-1", "invalid_event_id"), ("event_id=evt_bad%20id", "invalid_event_id"),
    ("cursor=bogus!", "invalid_cursor"), ("cursor=dDE", "invalid_cursor"),
    ("cursor=ZDA", "invalid_cursor")])
async def test_bad_query_values_are_400_with_a_code(server: Server, create_merchant, query,
                                                   code):
    merchant_id = await create_merchant()
    status, body, _ = await server.call(
        "GET", f"/v1/merchants/{merchant_id}/deliveries?{query}", scopes=READ)
    assert (status, body["code"]) == (400, code), body


async def test_a_replay_is_committed_for_the_relay(server: Server, pool, screen,
                                                   create_merchant):
    merchant_id = await create_merchant()
    transaction_id = await screen(merchant_id)
    path = f"/v1/events/evt_{transaction_id}/replay"
    status, body, _ = await server.call("POST", path, scopes=WRITE, sub="ops-alice")
    assert status == 202, body
    assert body["event_id"] == f"evt_{transaction_id}" and body["status"] == "queued"
    row = await pool.fetchrow(
        "SELECT transaction_id, requested_by FROM webhook_replays WHERE replay_id = $1",
        body["replay_id"])
    assert dict(row) == {"transaction_id": transaction_id, "requested_by": "ops-alice"}

    status, again, _ = await server.call("POST", path, json={}, scopes=WRITE)
    assert status == 202 and again["replay_id"] > body["replay_id"]
    assert await pool.fetchval("SELECT count(*) FROM webhook_replays WHERE transaction_id = $1",
                               transaction_id) == 2


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b'{"force": true}', 422, "unknown_field"), (b"[]", 422, "invalid_body"),
    (b"null", 422, "invalid_body"), (b"{", 400, "malformed_json")])
async def test_a_replay_with_a_body_other_than_empty_is_refused(server: Server, pool, screen,
                                                                create_merchant, raw, status,
                                                                code):
    transaction_id = await screen(await create_merchant())
    answer, body, _ = await server.call("POST", f"/v1/events/evt_{transaction_id}/replay",
                                        raw=raw, scopes=WRITE)
    assert (answer, body["code"]) == (status, code), body
    assert await pool.fetchval("SELECT count(*) FROM webhook_replays WHERE transaction_id = $1",
                               transaction_id) == 0


async def test_a_replay_nobody_would_receive_is_refused(server: Server, pool, screen,
                                                        create_merchant):
    no_url = await create_merchant(webhook_url=None)
    disabled = await create_merchant()
    await disable(server, disabled)
    cases = [(no_url, "no_webhook_url"), (unique("unregistered"), "no_webhook_url"),
             (disabled, "delivery_disabled")]
    for merchant_id, code in cases:
        transaction_id = await screen(merchant_id)
        status, body, _ = await server.call(
            "POST", f"/v1/events/evt_{transaction_id}/replay", scopes=WRITE)
        assert (status, body["code"]) == (409, code), body
        assert await pool.fetchval(
            "SELECT count(*) FROM webhook_replays WHERE transaction_id = $1",
            transaction_id) == 0
    assert '"delivery_enabled": true' in body["detail"]
    status, _, _ = await server.call("PATCH", f"/v1/merchants/{disabled}",
                                     json={"delivery_enabled": True}, scopes=WRITE)
    status, body, _ = await server.call(
        "POST", f"/v1/events/evt_{transaction_id}/replay", scopes=WRITE)
    assert status == 202, body


async def test_scopes(server: Server, screen, create_merchant):
    merchant_id = await create_merchant()
    event_id = f"evt_{await screen(merchant_id)}"
    for method, path, scopes in (
            ("GET", f"/v1/merchants/{merchant_id}/deliveries", WRITE),
            ("GET", f"/v1/events/{event_id}", ("transactions:read",)),
            ("POST", f"/v1/events/{event_id}/replay", READ)):
        status, body, _ = await server.call(method, path, scopes=scopes)
        assert (status, body["code"]) == (403, "insufficient_scope"), path
        status, body, _ = await server.call(method, path, scopes=())
        assert (status, body["code"]) == (401, "missing_token"), path


def _attempt(attempt_id: int, outcome: str) -> DeliveryAttempt:
    return DeliveryAttempt(
        attempt_id=attempt_id, event_id="evt_t", transaction_id="t", merchant_id="m",
        replay_id=None, attempt=1, url="https://m.example", attempted_at=datetime.now(UTC),
        status_code=None, latency_ms=None, error=None, outcome=outcome, next_attempt_at=None)


def test_the_status_is_the_highest_attempt_ids_outcome():
    assert event_status([], webhook_url="https://m.example", delivery_enabled=True) == "pending"
    for url, enabled in (("https://m.example", False), (None, True), (None, None)):
        assert event_status([], webhook_url=url, delivery_enabled=enabled) == "not_sent"
    # Listed out of order on purpose: the highest attempt_id wins, not the last in the list.
    attempts = [_attempt(9, "delivered"), _attempt(3, "retry")]
    assert event_status(attempts, webhook_url=None, delivery_enabled=False) == "delivered"


def test_cursors_round_trip_and_refuse_anything_else():
    assert decode_cursor(encode_cursor(12345)) == 12345
    for bad in ("", "!!", "dA", encode_cursor(0), "dDE"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
