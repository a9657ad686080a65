"""Webhooks end to end against the real services: edge -> ledger (outbox) -> relay ->
RabbitMQ -> worker -> a merchant's endpoint; retries, dead letters, 410, crashes, outages."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import msgspec
import pytest

from ops.workers import run_alert_worker, webhook_queues
from tests.conftest import Server, unique, wait_for
from tests.webhooks.conftest import SCHEDULE, DeliverySystem, MailServer, MerchantSite
from webhooks import events, topology
from webhooks.attempts import Attempt, AttemptLog
from webhooks.http_client import WebhookClient
from webhooks.jobs import Job, publish
from webhooks.schedule import parse_schedule
from webhooks.signing import verify

pytestmark = pytest.mark.integration


async def register(server: Server, site: MerchantSite, name: str | None = None) -> tuple[str, str]:
    """A merchant whose endpoint is `site`'s /hooks/<merchant_id>; (id, signing secret)."""
    merchant_id = name or unique("shop")
    status, body, _ = await server.call("POST", "/v1/merchants", json={
        "merchant_id": merchant_id, "name": "Test shop", "webhook_url": site.url(merchant_id)})
    assert status == 201, body
    return merchant_id, body["signing_secret"]


async def pay(server: Server, make_account: Callable[..., Awaitable[str]],
              make_transaction: Callable[..., dict[str, Any]], merchant_id: str,
              account_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    account_id = account_id or await make_account(deposit="1000.00")
    body = make_transaction(account_id, merchant_id=merchant_id, **overrides)
    status, answer, _ = await server.call("POST", "/v1/transactions", json=body,
                                          headers={"Idempotency-Key": unique("k")})
    assert status == 200, answer
    return answer


async def attempts(pool: asyncpg.Pool, transaction_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM webhook_attempts WHERE transaction_id = $1 "
                            "ORDER BY attempt_id", transaction_id)


def outcomes_are(pool: asyncpg.Pool, transaction_id: str,
                 expected: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return [r["outcome"] for r in await attempts(pool, transaction_id)] == expected
    return check


async def test_a_payment_reaches_its_merchant_signed(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, secret = await register(server, merchant_site)
    answer = await pay(server, make_account, make_transaction, merchant_id)
    event_id = "evt_" + answer["transaction_id"]

    await wait_for(lambda: _true(merchant_site.of(merchant_id)), timeout_s=10)
    [got] = merchant_site.of(merchant_id)
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-id"] == event_id
    verify(secret, event_id, headers["webhook-timestamp"], got.body,
           headers["webhook-signature"])
    event = events.event_decoder.decode(got.body)
    assert event.type == events.TYPES[answer["decision"]]
    assert event.data.transaction_id == answer["transaction_id"]
    assert event.data.amount == "10.00" and event.data.merchant_id == merchant_id
    # The body is the one GET /v1/events/{id} rebuilds from the ledger.
    row = await events.load_event(pool, answer["transaction_id"])
    assert row is not None and events.encode(events.event_of(row)) == got.body

    await wait_for(outcomes_are(pool, answer["transaction_id"], ["delivered"]))
    [attempt] = await attempts(pool, answer["transaction_id"])
    assert attempt["status_code"] == 200 and attempt["attempt"] == 1
    assert attempt["url"] == merchant_site.url(merchant_id) and attempt["latency_ms"] >= 0


async def test_a_merchant_without_url_gets_nothing(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    quiet = unique("quiet")
    status, _, _ = await server.call("POST", "/v1/merchants",
                                     json={"merchant_id": quiet, "name": "No hooks"})
    assert status == 201
    merchant_id, _ = await register(server, merchant_site)
    silent = await pay(server, make_account, make_transaction, quiet)
    loud = await pay(server, make_account, make_transaction, merchant_id)
    # The second payment committed after the first: once it arrived, the first was relayed.
    await wait_for(outcomes_are(pool, loud["transaction_id"], ["delivered"]))
    assert merchant_site.of(quiet) == []
    assert await attempts(pool, silent["transaction_id"]) == []


async def test_a_merchant_down_is_retried_on_schedule_until_it_answers(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, _ = await register(server, merchant_site)
    merchant_site.answers[merchant_id] = lambda n: 503 if n < 2 else 200
    answer = await pay(server, make_account, make_transaction, merchant_id)

    await wait_for(outcomes_are(pool, answer["transaction_id"], ["retry", "retry", "delivered"]))
    got = merchant_site.of(merchant_id)
    assert len({r.headers["webhook-id"] for r in got}) == 1 and len(got) == 3
    # The same bytes every time; the gaps follow the schedule (minus at most the jitter).
    assert {r.body for r in got} == {got[0].body}
    delays_s = [ms / 1000 for ms in parse_schedule(SCHEDULE)]
    gaps_s = [b.at_s - a.at_s for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.9 * delay for gap, delay in zip(gaps_s, delays_s, strict=False)), gaps_s
    rows = await attempts(pool, answer["transaction_id"])
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    assert rows[0]["status_code"] == 503 and rows[0]["error"].startswith("HTTP 503")
    assert rows[0]["next_attempt_at"] > rows[0]["attempted_at"]


async def test_a_stopped_merchant_server_gets_the_event_when_it_is_back(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    away = MerchantSite()
    await away.start()
    port = away.port
    merchant_id = unique("away")
    status, _, _ = await server.call("POST", "/v1/merchants", json={
        "merchant_id": merchant_id, "name": "Away", "webhook_url": away.url(merchant_id)})
    assert status == 201
    await away.stop()
    answer = await pay(server, make_account, make_transaction, merchant_id)

    await wait_for(outcomes_are(pool, answer["transaction_id"], ["retry"]))
    [first] = await attempts(pool, answer["transaction_id"])
    assert first["status_code"] is None and first["error"]
    await away.start(port)
    try:
        await wait_for(lambda: _true(away.of(merchant_id)), timeout_s=10)
        await wait_for(outcomes_are(pool, answer["transaction_id"], ["retry", "delivered"]))
    finally:
        await away.stop()


async def test_a_merchant_always_failing_ends_in_the_dead_letter_queue(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool, settings):
    merchant_id, _ = await register(server, merchant_site)
    merchant_site.answers[merchant_id] = lambda n: 500
    answer = await pay(server, make_account, make_transaction, merchant_id)

    attempts_total = len(parse_schedule(SCHEDULE)) + 1
    expected = ["retry"] * (attempts_total - 1) + ["failed"]
    await wait_for(outcomes_are(pool, answer["transaction_id"], expected), timeout_s=15)
    assert len(merchant_site.of(merchant_id)) == attempts_total
    dead = await dead_letters(delivery)
    assert "evt_" + answer["transaction_id"] in dead


async def test_retries_stop_when_the_merchant_disables_delivery(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, _ = await register(server, merchant_site)
    merchant_site.answers[merchant_id] = lambda n: 503
    answer = await pay(server, make_account, make_transaction, merchant_id)
    await wait_for(lambda: _true(merchant_site.of(merchant_id)))
    status, _, _ = await server.call("PATCH", f"/v1/merchants/{merchant_id}",
                                     json={"delivery_enabled": False})
    assert status == 200

    async def settled() -> bool:
        rows = await attempts(pool, answer["transaction_id"])
        return bool(rows) and rows[-1]["outcome"] == "skipped"
    await wait_for(settled, timeout_s=15)
    outcomes = [r["outcome"] for r in await attempts(pool, answer["transaction_id"])]
    # Queued retries read the merchant afresh (within the worker's 1 s cache).
    assert outcomes[-1] == "skipped" and set(outcomes[:-1]) == {"retry"}
    assert len(merchant_site.of(merchant_id)) == len(outcomes) - 1


async def dead_letters(delivery: DeliverySystem) -> list[str]:
    """Event ids in the dead-letter queue (read and put back)."""
    connection = await aio_pika.connect(delivery.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(webhook_queues(delivery.settings).dead)
        seen = []
        while (message := await queue.get(fail=False)) is not None:
            seen.append(message.message_id or "")
        return seen  # closing the channel requeues what was read


async def test_410_gone_disables_the_merchant(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, _ = await register(server, merchant_site)
    merchant_site.answers[merchant_id] = lambda n: 410
    answer = await pay(server, make_account, make_transaction, merchant_id)

    await wait_for(outcomes_are(pool, answer["transaction_id"], ["gone"]))
    status, merchant, _ = await server.call("GET", f"/v1/merchants/{merchant_id}")
    assert status == 200 and merchant["delivery_enabled"] is False
    assert "410" in merchant["disabled_reason"]
    assert len(merchant_site.of(merchant_id)) == 1


async def test_a_worker_killed_mid_delivery_redelivers_the_same_event(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool, tmp_path):
    merchant_id, _ = await register(server, merchant_site)
    hold = merchant_site.holds[merchant_id] = asyncio.Event()
    await delivery.halt_worker()
    process = await start_process(delivery, "worker", "webhooks")
    try:
        answer = await pay(server, make_account, make_transaction, merchant_id)
        # The other worker has the message and waits on the merchant's answer: kill it.
        await wait_for(lambda: _true(merchant_site.of(merchant_id)), timeout_s=30)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    hold.set()
    delivery.start_worker()
    await wait_for(outcomes_are(pool, answer["transaction_id"], ["delivered"]), timeout_s=15)
    got = merchant_site.of(merchant_id)
    assert len(got) == 2
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == (
        "evt_" + answer["transaction_id"])


async def start_process(delivery: DeliverySystem, *command: str) -> asyncio.subprocess.Process:
    """`sentinel <command>` against this run's database and queues (schedule included)."""
    s = delivery.settings
    env = {**os.environ, "SENTINEL_DATABASE_URL": s.database_url,
           "SENTINEL_AMQP_URL": s.amqp_url, "SENTINEL_AMQP_PREFIX": s.amqp_prefix,
           "SENTINEL_WEBHOOK_RETRY_SCHEDULE": s.webhook_retry_schedule,
           "SENTINEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "SENTINEL_RELAY_POLL_MS": "10"}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ops.cli", *command,
                                                env=env)


async def test_a_broker_outage_delays_events_and_loses_none(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, _ = await register(server, merchant_site)
    account_id = await make_account(deposit="1000.00")
    sent = [await pay(server, make_account, make_transaction, merchant_id, account_id)
            for _ in range(5)]
    failures_before = delivery.relay_object.statistics().failures
    connections_before = delivery.proxy.connections
    delivery.proxy.cut()
    try:
        # Payments keep being screened and committed while the broker is unreachable.
        sent += [await pay(server, make_account, make_transaction, merchant_id, account_id)
                 for _ in range(20)]
        await asyncio.sleep(0.5)  # let the relay and the worker notice and fail
    finally:
        delivery.proxy.restore()
    sent += [await pay(server, make_account, make_transaction, merchant_id, account_id)
             for _ in range(5)]
    expected = {"evt_" + a["transaction_id"] for a in sent}

    async def all_arrived() -> bool:
        return expected <= {r.headers["webhook-id"] for r in merchant_site.of(merchant_id)}
    await wait_for(all_arrived, timeout_s=30)
    ids = [r.headers["webhook-id"] for r in merchant_site.of(merchant_id)]
    assert set(ids) == expected  # duplicates possible, only of these ids
    # The outage was real: the relay failed to publish and both sides reconnected.
    assert delivery.relay_object.statistics().failures > failures_before
    assert delivery.proxy.connections >= connections_before + 2


async def test_another_relay_takes_over_when_the_leader_dies(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, _ = await register(server, merchant_site)
    await delivery.halt_relay()
    process = await start_process(delivery, "relay")
    try:
        first = await pay(server, make_account, make_transaction, merchant_id)
        await wait_for(outcomes_are(pool, first["transaction_id"], ["delivered"]), timeout_s=30)
        delivery.start_relay()  # a standby: the process holds the lead
        await asyncio.sleep(0.3)
        assert not delivery.relay_object.statistics().leader
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    await asyncio.wait_for(delivery.relay_object.wait_leader(), 10)
    second = await pay(server, make_account, make_transaction, merchant_id)
    await wait_for(outcomes_are(pool, second["transaction_id"], ["delivered"]), timeout_s=10)


async def _true(value: object) -> bool:
    return bool(value)


async def test_a_replay_is_delivered_again_with_the_same_id(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    merchant_id, secret = await register(server, merchant_site)
    answer = await pay(server, make_account, make_transaction, merchant_id)
    event_id = "evt_" + answer["transaction_id"]
    await wait_for(outcomes_are(pool, answer["transaction_id"], ["delivered"]))

    status, body, _ = await server.call("POST", f"/v1/events/{event_id}/replay",
                                        scopes=("merchants:write",))
    assert status == 202, body
    await wait_for(outcomes_are(pool, answer["transaction_id"], ["delivered", "delivered"]))
    first, second = merchant_site.of(merchant_id)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event_id
    assert first.body == second.body
    verify(secret, event_id, second.headers["webhook-timestamp"], second.body,
           second.headers["webhook-signature"])
    rows = await attempts(pool, answer["transaction_id"])
    assert [r["replay_id"] for r in rows] == [None, body["replay_id"]]
    status, shown, _ = await server.call("GET", f"/v1/events/{event_id}",
                                         scopes=("merchants:read",))
    assert status == 200 and shown["status"] == "delivered" and len(shown["attempts"]) == 2


async def test_a_declined_payment_mails_the_fraud_team(
        server: Server, delivery: DeliverySystem, make_account, make_transaction,
        pool: asyncpg.Pool):
    mail = MailServer()
    await mail.start()
    settings = msgspec.structs.replace(
        delivery.settings, smtp_port=mail.port, alert_to="fraud@bank.test",
        alert_digest_window_s=0.2)
    stop = asyncio.Event()
    worker = asyncio.ensure_future(run_alert_worker(settings, stop))
    try:
        account_id = await make_account()  # no money: the ledger declines
        body = make_transaction(account_id, merchant_id=unique("shop"))
        status, answer, _ = await server.call("POST", "/v1/transactions", json=body,
                                              headers={"Idempotency-Key": unique("k")})
        assert status == 200 and answer["decision"] == "decline", answer

        async def mailed() -> bool:
            return any(answer["transaction_id"] in m.get_content() for m in mail.mails)
        await wait_for(mailed, timeout_s=15)
        [message] = [m for m in mail.mails if answer["transaction_id"] in m.get_content()]
        assert "insufficient_funds" in message.get_content()
        assert message["To"] == "fraud@bank.test"


        async def recorded() -> bool:  # written once the SMTP server has accepted the mail
            return await pool.fetchval(
                "SELECT count(*) FROM alert_mails WHERE $1 = ANY(event_ids)",
                "evt_" + answer["transaction_id"]) == 1
        await wait_for(recorded)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await mail.stop()


async def test_messages_that_are_no_jobs_of_ours_are_dead_lettered(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite,
        make_account, make_transaction, pool: asyncpg.Pool):
    queues = webhook_queues(delivery.settings)
    ghost = Job(event_id="evt_" + unique("ghost"), transaction_id=unique("ghost"),
                merchant_id=unique("nobody"), attempt=1, body=b"{}")
    connection = await aio_pika.connect(delivery.settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await topology.declare(channel, queues)
        await channel.default_exchange.publish(
            aio_pika.Message(b"not a job", message_id="no-headers"), routing_key=queues.work,
            mandatory=True)
        await publish(channel, queues.work, ghost)  # names no transaction: cannot be recorded

    async def both_dead() -> bool:
        return {"no-headers", ghost.event_id} <= set(await dead_letters(delivery))
    await wait_for(both_dead, timeout_s=15)
    # The worker goes on delivering.
    merchant_id, _ = await register(server, merchant_site)
    answer = await pay(server, make_account, make_transaction, merchant_id)
    await wait_for(outcomes_are(pool, answer["transaction_id"], ["delivered"]))


async def test_one_bad_attempt_does_not_fail_its_batch(
        server: Server, make_account, make_transaction, pool: asyncpg.Pool):
    good = [await pay(server, make_account, make_transaction, unique("shop")) for _ in range(3)]
    log = AttemptLog(pool, batch_wait_s=0.05)

    def attempt(transaction_id: str) -> Attempt:
        return Attempt(event_id="evt_" + transaction_id, transaction_id=transaction_id,
                       merchant_id="m", replay_id=None, attempt=1, url=None,
                       attempted_at=datetime.now(UTC), status_code=None, latency_ms=None,
                       error="test", outcome="skipped")

    results = await asyncio.gather(
        *(log.record(attempt(a["transaction_id"])) for a in good),
        log.record(attempt(unique("missing"))), return_exceptions=True)
    assert results[:3] == [None, None, None]
    assert isinstance(results[3], asyncpg.ForeignKeyViolationError)
    assert log.written == 3
    for a in good:
        assert [r["outcome"] for r in await attempts(pool, a["transaction_id"])] == ["skipped"]


async def test_private_addresses_are_refused_unless_allowed(
        server: Server, delivery: DeliverySystem, merchant_site: MerchantSite):
    async with WebhookClient(connections=2, timeout_s=2) as client:
        for url in (merchant_site.url("x"), "http://10.1.2.3/hook", "http://[::1]:9/hook",
                    "http://169.254.169.254/latest/meta-data"):
            answer = await client.post(url, event_id="evt_x", body=b"{}",
                                       secrets=["whsec_" + "A" * 32])
            assert answer.status_code is None and "not a public address" in (answer.error or "")
        # A name is checked after it resolves, at connect time.
        answer = await client.post(f"http://localhost:{merchant_site.port}/hooks/x",
                                   event_id="evt_x", body=b"{}", secrets=["whsec_" + "A" * 32])
        assert answer.status_code is None and "no public address" in (answer.error or "")
    assert merchant_site.of("x") == []
    async with WebhookClient(connections=2, timeout_s=2, allow_private_networks=True) as client:
        answer = await client.post(merchant_site.url("x"), event_id="evt_x", body=b"{}",
                                   secrets=["whsec_" + "A" * 32])
        assert answer.ok
    assert len(merchant_site.of("x")) == 1
